using Hw;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 8, the heart of the series: a guest access to a page the host swapped out no longer
/// stalls the vCPU. The fault path asks for the page without I/O; when that fails it hands the
/// swap-in to a worker, writes reason 1 into the guest's area and injects a #PF whose CR2 is the
/// token; the vCPU keeps running guest code; when the worker has the page, reason 2 and the same
/// token follow. The fixture is split by theme: the injection itself (this file), the limits
/// (cap, allocation, token wrap-around) and the lifecycle (init/exit, reset, triple fault, a
/// guest that never enables it). The guest is a substitute behind the IDT (<see cref="HostPvGuest"/>).
/// </summary>
[TestFixture, Category("patch-08"), Description("Inject asynchronous page fault into a guest if page is swapped out.")]
public sealed partial class Patch08InjectAsyncPageFaultIntoGuestIfPageSwappedOutTests
{
    private static HostRigOptions Options(PagingMode paging, int vcpus = 1) => new() { Tdp = paging == PagingMode.Tdp, Vcpus = vcpus };

    /// <summary>The address the host sees for user page <paramref name="page"/>: a gpa under TDP, the gva under shadow paging.</summary>
    private static long FaultAddress(PagingMode paging, int page) =>
        (long)(paging == PagingMode.Tdp ? HostApfRig.Gpa(page) : HostApfRig.Gva(page));

    // ---- the not-present ----------------------------------------------------------------------

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmArchInjectAsyncPageNotPresent_SwappedPage_CarriesTokenInCr2AndReasonOne(PagingMode paging)
    {
        using var rig = new HostApfRig(Options(paging, vcpus: 2)).Boot();
        rig.Evict(HostApfRig.Gfn(0), HostApfRig.Gfn(1), HostApfRig.Gfn(2));
        foreach (var g in rig.Guests)
        {
            g.EnableAtBoot = true;
        }
        long done0 = -1;
        long done1 = -1;
        rig.Guests[0].Spawn("toucher0", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(2));
            done0 = rig.Loop.Now;
        });
        rig.Guests[1].Spawn("toucher1", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(0));
            await ctx.Store(HostApfRig.Gva(1));
            done1 = rig.Loop.Now;
        });
        rig.Go();
        rig.RunUntil(() => done0 >= 0 && done1 >= 0);

        var np0 = rig.Guests[0].NotPresents.ToList();
        var np1 = rig.Guests[1].NotPresents.ToList();
        var traced = rig.Trace.NotPresent.ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(np0.Select(f => f.Cr2), Is.EqualTo(new ulong[] { 0x000 }), "vCPU 0: (apf_id 0 << 12) | 0");
            Assert.That(np1.Select(f => f.Cr2), Is.EqualTo(new ulong[] { 0x001, 0x1001 }), "vCPU 1: (0 << 12) | 1, then (1 << 12) | 1");
            Assert.That(np0.Concat(np1).Select(f => (f.Vector, f.ErrorCode)), Is.All.EqualTo(((byte)Vectors.PageFault, 0u)),
                "a #PF with error code 0");
            Assert.That(np1.Select(f => f.Context), Is.All.EqualTo("toucher1"), "delivered on the faulting context");
            Assert.That(traced.Select(e => (e.VcpuId, e.Token, e.Gva)), Is.EquivalentTo(new[]
            {
                (0, 0x000u, FaultAddress(paging, 2)),
                (1, 0x001u, FaultAddress(paging, 0)),
                (1, 0x1001u, FaultAddress(paging, 1)),
            }), "kvm_async_pf_not_present names the token and the faulting address");
            Assert.That(rig.Host.ApfCounters.NotPresent, Is.EqualTo(3));
            Assert.That(rig.Vcpus[1].Arch.ApfId, Is.EqualTo(2u), "apf_id advanced once per async fault");
        }
    }

    // ---- the page-ready -----------------------------------------------------------------------

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmArchInjectAsyncPagePresent_WorkerHasPage_PageReadyWithSameTokenFollowsDiskRead(PagingMode paging)
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(paging);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        long done = rig.GoAndTouch(guest, page: 0);

        var np = guest.NotPresents.Single();
        var ready = guest.PageReadies.Single();
        var read = rig.ReadsOf(gfn).Single();
        var completed = rig.Trace.Completed.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ready.Token, Is.EqualTo(np.Token), "the page-ready names the not-present's token");
            Assert.That((ready.Vector, ready.ErrorCode), Is.EqualTo(((byte)Vectors.PageFault, 0u)));
            Assert.That(ready.Context, Is.EqualTo(guest.Idle.Name), "the guest had put the toucher aside and halted");
            Assert.That(read.SubmittedNs, Is.InRange(np.AtNs - (10 * Us), np.AtNs), "the worker started the read as the fault went async");
            Assert.That(read.LatencyNs, Is.GreaterThanOrEqualTo(rig.Options.DiskSeekNs), "a random read of the disk");
            Assert.That(completed.TimeNs, Is.EqualTo(read.CompletedNs), "kvm_async_pf_completed when the read is in");
            Assert.That(completed.Gva, Is.EqualTo(FaultAddress(paging, 0)));
            Assert.That(ready.AtNs, Is.GreaterThanOrEqualTo(read.CompletedNs), "never before the page is in");
            Assert.That(ready.AtNs - read.CompletedNs, Is.LessThan(100 * Us), "a halted vCPU is woken by the completion");
            Assert.That(rig.Cpus[0].Residency[VcpuState.Halt], Is.GreaterThanOrEqualTo(read.LatencyNs * 9 / 10),
                "and only then: until it, the vCPU thread slept in kvm_vcpu_block");
            Assert.That(done, Is.GreaterThan(ready.AtNs), "the toucher's store completed after its page-ready");
            Assert.That(guest.NotPresents.Count(), Is.EqualTo(1), "and its retry did not go async again");
            Assert.That(rig.Host.ApfCounters.PageReady, Is.EqualTo(1));
            Assert.That(rig.Vcpus[0].AsyncPfQueued, Is.Zero, "nothing outstanding once the guest was told");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void GfnToPfnAsync_PageInSwapCache_MappedWithoutAsyncFaultOrIo(PagingMode paging)
    {
        using var rig = new HostApfRig(Options(paging)).Boot();
        ulong gfn = HostApfRig.Gfn(0);
        rig.EvictToSwapCache(gfn);
        var guest = rig.Guests[0];
        guest.EnableAtBoot = true;
        rig.GoAndTouch(guest, page: 0);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Pgtable.PtePresent(rig.HostPte(gfn)), Is.True, "the swap-cache page was mapped again");
            Assert.That(guest.NotPresents, Is.Empty, "get_user_pages_noio had it without I/O: no async fault");
            Assert.That(rig.Trace.TryAsyncGetPage.Select(e => e.Async), Is.Not.Empty.And.All.False, "every lookup had its page at once");
            Assert.That(rig.ReadsOf(gfn), Is.Empty, "no read");
            Assert.That(rig.Host.NrWorkers, Is.Zero);
            Assert.That(rig.VcpuThreads[0].MinFlt, Is.EqualTo(1), "a minor fault, on the vCPU thread");
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.Zero);
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmSetupAsyncPf_SwapInInFlight_VcpuKeepsRunningGuestCode(PagingMode paging)
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(paging);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        long done = -1;
        bool stop = false;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(0));
            done = rig.Loop.Now;
            stop = true;
        });
        var hog = guest.SpawnHog(() => stop);
        var moments = new List<(long At, long Guest, long Stall, long Halt, long HogUser)>();
        guest.Delivered += pf =>
        {
            if (pf.Reason != 0 && pf.Token != ApfAbi.WakeAllToken)
            {
                moments.Add((rig.Loop.Now, cpu.Residency[VcpuState.Guest], cpu.Residency[VcpuState.Stall], cpu.Residency[VcpuState.Halt], hog.UserNs));
            }
        };
        rig.Go();
        rig.RunUntil(() => done >= 0 && guest.Finished(hog));

        Assert.That(moments, Has.Count.EqualTo(2), "one not-present, one page-ready");
        var (np, ready) = (moments[0], moments[1]);
        long interval = ready.At - np.At;
        var read = rig.ReadsOf(gfn).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(interval, Is.GreaterThanOrEqualTo(read.LatencyNs), "the page-ready came after the disk read");
            Assert.That(ready.At - read.CompletedNs, Is.LessThanOrEqualTo(rig.Options.TimerPeriodNs + (100 * Us)),
                "a running vCPU sees the completion at its next exit, the timer tick at the latest");
            Assert.That(ready.Stall - np.Stall, Is.Zero, "the vCPU thread never slept");
            Assert.That(ready.Halt - np.Halt, Is.Zero, "nor halted");
            Assert.That(ready.Guest - np.Guest, Is.GreaterThanOrEqualTo(interval * 9 / 10), "the vCPU stayed in guest mode");
            Assert.That(ready.HogUser - np.HogUser, Is.GreaterThanOrEqualTo(interval * 9 / 10), "running the other task");
            Assert.That(rig.VcpuThreads[0].MajFlt, Is.Zero, "the major fault was taken by the worker, not the vCPU thread");
            Assert.That(rig.Host.NrWorkers, Is.EqualTo(1), "one worker for the one async fault");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmSetupAsyncPf_SecondContextFaultsOnPageBeingReadIn_EachGetsItsOwnTokenAndOneRead(PagingMode paging)
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(paging);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var first = guest.Spawn("first", ctx => ctx.Store(HostApfRig.Gva(0)));
        var second = guest.Spawn("second", ctx => ctx.Store(HostApfRig.Gva(0)));
        rig.Go();
        rig.RunUntil(() => guest.Finished(first) && guest.Finished(second));

        var np = guest.NotPresents.ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(np.Select(f => f.Context), Is.EqualTo(new[] { "first", "second" }),
                "the page is locked for the first read: the second access cannot have it without waiting, so it goes async too");
            Assert.That(np.Select(f => f.Token), Is.Unique);
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EquivalentTo(np.Select(f => f.Token)), "both waiters were woken");
            Assert.That(rig.ReadsOf(gfn), Has.Count.EqualTo(1), "one read served both");
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.Zero);
            Assert.That(rig.SecondaryPfns(gfn), Is.Not.Empty.And.All.EqualTo(rig.HostPfn(gfn)));
        }
    }
}
