using Hw;
using KvmApf.Guest;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// The kernel before the series: a guest access to a page the host swapped out is an EPT
/// violation (or a shadow #PF) that KVM resolves with get_user_pages on the vCPU thread, which
/// sleeps for the disk read while the whole vCPU waits (DESIGN section 2, "why it reproduces the
/// slides"). The swap-in scenarios are deterministic; each runs once per paging mode and the
/// tests read different sides of it.
/// </summary>
[TestFixture, Category("patch-00"), Description("Baseline kernel before the series: synchronous KVM faults on host swap")]
public sealed class Patch00BaselineTests
{
    private readonly Dictionary<PagingMode, SwapInScenario> _swapIns = [];

    private SwapInScenario SwapIn(PagingMode paging)
    {
        if (!_swapIns.TryGetValue(paging, out var run))
        {
            run = SwapInScenario.Run(tdp: paging == PagingMode.Tdp);
            _swapIns.Add(paging, run);
        }
        return run;
    }

    // ---- a fault on a swapped-out page stalls the vCPU ---------------------------------------

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmMmuPageFault_GuestPageOnHostSwap_VcpuStallsForTheDiskRead(PagingMode paging)
    {
        var s = SwapIn(paging);
        var read = s.ReadOfP;
        Assert.That(read, Is.Not.Null, "the store to P never read P's swap slot");
        var reads = s.Rig.Swap.Between(s.BeforeStore.AtNs, s.AfterStore.AtNs).ToList();
        long diskTime = read!.LatencyNs;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(reads, Is.EqualTo(new[] { read }), "the store to P was the only disk I/O of the measured store");
            Assert.That(diskTime, Is.GreaterThanOrEqualTo(20 * Ms), "a non-sequential read of the slow disk");
            Assert.That(s.AfterStore.DiskBusyNs - s.BeforeStore.DiskBusyNs, Is.EqualTo(diskTime),
                "the read was served alone: its latency is its service time");
            Assert.That(s.AfterStore.StallNs - s.BeforeStore.StallNs, Is.InRange(diskTime, diskTime + (100 * Us)),
                "the vCPU's stall grew by the disk time");
            Assert.That(s.ReadSubmitted.InGuestMode, Is.False);
            Assert.That(s.ReadCompleted.InGuestMode, Is.False);
            Assert.That(s.ReadCompleted.GuestModeNs, Is.EqualTo(s.ReadSubmitted.GuestModeNs), "no guest-mode time while the read was in flight");
            Assert.That(s.AfterStore.VcpuThreadMajFlt - s.BeforeStore.VcpuThreadMajFlt, Is.EqualTo(1), "the vCPU thread took one major fault");
            Assert.That(s.AfterStore.ToucherHostMajorFaults - s.BeforeStore.ToucherHostMajorFaults, Is.EqualTo(1),
                "the CPU counted the host major fault on the faulting context");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmMmuPageFault_VcpuStalledOnSwapIn_OtherRunnableTaskMakesNoProgress(PagingMode paging)
    {
        var s = SwapIn(paging);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(s.ReadSubmitted.HogRunnable, Is.True, "the hog was runnable on the stalled vCPU");
            Assert.That(s.ReadCompleted.HogRunnable, Is.True);
            Assert.That(s.ReadCompleted.HogUserNs, Is.EqualTo(s.BeforeStore.HogUserNs), "the hog computed nothing during the stall");
            Assert.That(s.ReadCompleted.HogKernelNs, Is.EqualTo(s.BeforeStore.HogKernelNs));
            Assert.That(s.ReadCompleted.ToucherUserNs, Is.EqualTo(s.BeforeStore.ToucherUserNs));
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void UpdateCurr_VcpuStalledOnSwapIn_ChargesStallToFaultingTask(PagingMode paging)
    {
        var s = SwapIn(paging);
        long stall = s.ReadOfP!.LatencyNs;
        Moment a = s.BeforeStore;
        Moment b = s.AfterStore;
        long toucherRan = b.ToucherUserNs + b.ToucherKernelNs - a.ToucherUserNs - a.ToucherKernelNs;
        long hogRan = b.HogUserNs + b.HogKernelNs - a.HogUserNs - a.HogKernelNs;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(b.ToucherVruntime - a.ToucherVruntime, Is.GreaterThanOrEqualTo(stall), "the stall went into the toucher's vruntime");
            // sum_exec_runtime at the first snapshot may lag by up to a tick of the toucher's own running.
            Assert.That(b.ToucherSumExec - a.ToucherSumExec - toucherRan, Is.InRange(stall, stall + (2 * Ms)),
                "the toucher was charged its guest time plus the stall");
            Assert.That(b.HogSumExec - a.HogSumExec - hogRan, Is.LessThan(Ms), "the hog was charged only what it ran");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void CheckPreemptTick_FaultingTaskChargedForStall_OtherTaskGetsFollowingSlices(PagingMode paging)
    {
        var s = SwapIn(paging);
        long stall = s.ReadOfP!.LatencyNs;
        Moment done = s.ReadCompleted;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(s.AfterStore.HogUserNs - done.HogUserNs, Is.GreaterThanOrEqualTo(stall / 2),
                "after the stall the hog ran next, for slices that add up to about the stall");
            Assert.That(s.AfterStore.ToucherUserNs - done.ToucherUserNs, Is.LessThanOrEqualTo(s.Rig.Options.Costs.FaultLoopIterationNs),
                "the toucher did nothing but its one store meanwhile");
            Assert.That(s.AfterCompute.AtNs - done.AtNs, Is.GreaterThanOrEqualTo((stall / 2) + Ms),
                "the toucher's next millisecond of work waited for the hog's catch-up");
        }
    }

    // ---- what reclaim evicts is what KVM zaps and what comes back ----------------------------

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void TryToUnmapOne_GuestPageEvicted_SpteZappedAndSameSlotReadBack(PagingMode paging)
    {
        var s = SwapIn(paging);
        var rig = s.Rig;
        ulong hva = rig.HvaOf(s.GfnP);
        ulong slot = s.SlotOfP;
        var zaps = rig.Notifier.Invalidations.Where(i => i.Hva == hva && i.AtNs < s.MeasureStartNs).ToList();
        var writes = rig.Swap.Requests.Where(r => r.Write && r.Covers(slot)).ToList();
        var reads = rig.Swap.Requests.Where(r => !r.Write && r.Covers(slot)).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Pgtable.PtePresent(s.HostPteBefore), Is.True, "P was resident in the host at first");
            Assert.That(s.SptePfnsBefore, Is.Not.Empty.And.All.EqualTo(Pgtable.PtePfn(s.HostPteBefore)), "and mapped by sptes to its host frame");
            Assert.That(Pgtable.PtePresent(s.HostPteEvicted), Is.False, "after the pressure P's host PTE is not present");
            Assert.That(Pgtable.PteNone(s.HostPteEvicted), Is.False, "but a swap entry");
            Assert.That(s.MappedAfterEviction, Is.False, "no spte maps P once it is evicted");
            Assert.That(zaps, Has.Count.EqualTo(1), "the notifier was called once for P's page");
            Assert.That(zaps.Select(z => z.StillMapped), Is.All.False, "KVM's notifier had zapped P's sptes before the next notifier ran");
            Assert.That(writes, Has.Count.EqualTo(1), "P's slot was written once");
            Assert.That(writes.Select(w => w.SubmittedNs), Is.All.GreaterThanOrEqualTo(zaps.Select(z => z.AtNs).DefaultIfEmpty(long.MaxValue).First()),
                "the write followed the unmap");
            Assert.That(writes.Select(w => w.CompletedNs), Is.All.InRange(0, s.MeasureStartNs), "and completed before P was touched again");
            Assert.That(reads, Is.EqualTo(new[] { s.ReadOfP }), "the next access read exactly P's slot, once");
            Assert.That(s.ReadOfP?.Count, Is.EqualTo(1));
            Assert.That(Pgtable.PtePresent(s.HostPteAfter), Is.True, "the swap-in restored the host mapping");
            Assert.That(s.SptePfnsAfter, Is.Not.Empty.And.All.EqualTo(Pgtable.PtePfn(s.HostPteAfter)), "and the spte points at the new frame");
            Assert.That(s.GfnPAfter, Is.EqualTo(s.GfnP), "the guest's view of P (its page tables, swapped too) is unchanged");
        }
    }

    // ---- a present page maps without sleeping ------------------------------------------------

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmMmuPageFault_PagePresentInHost_MapsWithoutSleeping(PagingMode paging)
    {
        var rig = new GuestRig(new RigOptions { Tdp = paging == PagingMode.Tdp });
        PresentProbe? before = null;
        PresentProbe? after = null;
        bool zapped = false;
        bool presentInHost = false;
        ulong gfn = 0;
        rig.Start(async (r, self) =>
        {
            var ctx = self.Context!;
            ulong p = await r.Libc.Malloc(Pgtable.PAGE_SIZE);
            await ctx.Store(p);
            await ctx.Compute(Ms);
            gfn = r.GfnOf(self, p);
            // An invalidation that leaves the host page in place (as KSM or a mprotect would).
            Kernel.__MmuNotifierInvalidatePage(r.VmmMm, r.HvaOf(gfn));
            zapped = !r.SecondaryMapped(gfn);
            presentInHost = Pgtable.PtePresent(r.HostPte(gfn));
            before = PresentProbe.Take(r, ctx);
            await ctx.Store(p);
            after = PresentProbe.Take(r, ctx);
        });
        rig.RunUntilFinished(10_000 * Ms);
        var a = before!.Value;
        var b = after!.Value;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(zapped, Is.True, "precondition: no spte maps the page");
            Assert.That(presentInHost, Is.True, "precondition: the host page is resident");
            Assert.That(b.VmExits - a.VmExits, Is.GreaterThanOrEqualTo(1), "the store exited to the host");
            Assert.That(b.SptesInstalled - a.SptesInstalled, Is.GreaterThanOrEqualTo(1), "which installed an spte");
            Assert.That(rig.SecondaryPfns(gfn), Is.Not.Empty.And.All.EqualTo(Pgtable.PtePfn(rig.HostPte(gfn))));
            Assert.That(b.StallNs, Is.EqualTo(a.StallNs), "the vCPU thread never slept");
            Assert.That(b.DiskRequests, Is.EqualTo(a.DiskRequests), "no disk I/O");
            Assert.That(b.HostPgFault, Is.EqualTo(a.HostPgFault), "get_user_pages_fast found the page: no host page fault");
            Assert.That(b.VcpuThreadMajFlt, Is.EqualTo(a.VcpuThreadMajFlt));
            Assert.That(b.ContextHostMajorFaults, Is.EqualTo(a.ContextHostMajorFaults), "the task's major faults are unchanged");
            Assert.That(b.AtNs - a.AtNs, Is.LessThan(50 * Us), "handled in CPU time, not disk time");
        }
    }

    private readonly record struct PresentProbe(
        long AtNs, long StallNs, long VmExits, long SptesInstalled, int DiskRequests, long HostPgFault, long VcpuThreadMajFlt, long ContextHostMajorFaults)
    {
        public static PresentProbe Take(GuestRig rig, GuestContext ctx) => new(
            rig.Loop.Now,
            rig.Cpus[0].Residency[VcpuState.Stall],
            rig.Cpus[0].VmExits,
            rig.Vm.Arch.SptesInstalled,
            rig.Swap.Requests.Count,
            rig.Host.PgFault,
            rig.Vcpus[0].Thread.MajFlt,
            ctx.HostMajorFaults);
    }

    // ---- reclaim keeps the cgroup within its limit -------------------------------------------

    [Test]
    public void TryToFreeMemCgroupPages_HeavyOvercommit_UsageNeverExceedsLimit()
    {
        const long limit = 80 * MiB;
        const ulong regionPages = 160 * MiB / 4096;
        var rig = new GuestRig(new RigOptions { Vcpus = 2, MemLimitBytes = limit, UsageSampleNs = 50 * Us });
        rig.Start(async (r, self) =>
        {
            ulong region = await r.Libc.Malloc(regionPages * Pgtable.PAGE_SIZE);
            var barrier = new PthreadBarrier(3);
            for (int i = 0; i < 2; i++)
            {
                ulong half = region + ((ulong)i * regionPages / 2 * Pgtable.PAGE_SIZE);
                var rng = new Rng((ulong)i + 1);
                await r.Libc.PthreadCreate($"toucher{i}", async t =>
                {
                    // First touch of its half, then random stores over the whole region: swap-ins that charge too.
                    await t.Context!.StoreLoop(GuestRig.Sequential(half), (long)regionPages / 2, r.Options.Costs.FaultLoopIterationNs);
                    await t.Context.StoreLoop(GuestRig.RandomPages(region, regionPages, rng), 200, r.Options.Costs.FaultLoopIterationNs);
                    await r.Libc.PthreadBarrierWait(barrier);
                });
            }
            await r.Libc.PthreadBarrierWait(barrier);
        });
        rig.RunUntilFinished(600_000 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.LimitExceeded, Is.Null, "no sample found the usage above the limit");
            Assert.That(rig.MaxSampledUsage, Is.LessThanOrEqualTo(limit));
            Assert.That(rig.Cgroup.MaxUsage, Is.LessThanOrEqualTo(limit), "max_usage_in_bytes");
            Assert.That(rig.Cgroup.MaxUsage, Is.GreaterThan(limit - (Kernel.SWAP_CLUSTER_MAX * 4096L)), "the cgroup did reach its limit");
            Assert.That(rig.Host.PgSteal, Is.GreaterThan((long)(regionPages - (ulong)(limit / 4096))), "reclaim freed the overcommitted pages");
            Assert.That(rig.Host.PswpIn, Is.GreaterThan(0), "swap-ins charged the cgroup too");
            Assert.That(rig.UsageSamples, Is.GreaterThan(10_000));
        }
    }

    [Test]
    public void DoSwapPage_PageLeavesTheSwapCacheWhileTheFaultWaitsForItsLock_FaultRetriesAndReadsTheSlot()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(0);
        rig.EvictToSwapCache(gfn);
        var entry = Pgtable.PteToSwpEntry(rig.HostPte(gfn));
        var cached = rig.Host.LookupSwapCache(entry)!;
        Assert.That(Kernel.TrylockPage(cached), Is.True, "precondition: the test holds the page's lock");
        Page? got = null;
        rig.HostThread("faulter", async self => got = await rig.Host.GetUserPages(self, rig.VmmMm, rig.HvaOf(gfn), write: true));
        rig.Run(Ms);
        Assert.That(got, Is.Null, "precondition: the fault waits for the lock");

        // What reclaim does to a clean swap-cache page it holds locked (__remove_mapping); the
        // page may be freed next, and its frame handed to another owner.
        rig.Host.DeleteFromSwapCache(cached);
        rig.Host.UnlockPage(cached);
        rig.RunUntil(() => got is not null);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(got, Is.Not.SameAs(cached), "do_swap_page does not map a page that left the swap cache");
            Assert.That(rig.ReadsOf(gfn), Has.Count.EqualTo(1), "the retried fault read the slot");
            Assert.That(rig.HostPfn(gfn), Is.EqualTo(got!.Pfn), "and mapped what it read");
        }
    }

    [Test]
    public void SwapIo_PswpinAndPswpout_CountWhenTheIoIsSubmitted()
    {
        // mm/page_io.c: swap_writepage() and swap_readpage() count PSWPOUT and PSWPIN as they submit
        // the bio, so a measured interval counts the reads its faults started.
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(0);
        long pswpout = rig.Host.PswpOut;
        rig.Evict(gfn);
        long pswpin = rig.Host.PswpIn;
        long diskReads = rig.Disk.Reads;
        long doneAt = -1;
        rig.HostThread("reader", async self =>
        {
            await rig.Host.GetUserPages(self, rig.VmmMm, rig.HvaOf(gfn), write: true);
            doneAt = rig.Loop.Now;
        });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Host.PswpOut, Is.EqualTo(pswpout + 1), "the eviction wrote the page");
            Assert.That(rig.Swap.Outstanding, Is.EqualTo(1), "precondition: the read is in flight");
            Assert.That(rig.Disk.Reads, Is.EqualTo(diskReads), "precondition: the disk has not finished it");
            Assert.That(rig.Host.PswpIn, Is.EqualTo(pswpin + 1), "counted at submission");
        }
        rig.RunUntil(() => doneAt >= 0);
        Assert.That(rig.Host.PswpIn, Is.EqualTo(pswpin + 1), "and not again at completion");
    }
}
