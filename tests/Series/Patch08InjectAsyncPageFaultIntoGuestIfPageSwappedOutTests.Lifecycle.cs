using Hw;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 8 around the fault: the async PF code's init/exit pair (seeds/004: its own file with
/// kvm_async_pf_init/deinit), a reset or a triple fault dropping queued work and pending
/// injections (seeds/000: "after triple faults guest will reboot and this should clear all
/// pending async pf injections"), and the host behaving exactly as before the series when the
/// guest does not enable async PF, or faults in kernel mode without send-always.
/// </summary>
public sealed partial class Patch08InjectAsyncPageFaultIntoGuestIfPageSwappedOutTests
{
    // ---- init / exit ----------------------------------------------------------------------------

    [Test]
    public void KvmAsyncPfDeinit_GuestThenFaultsOnSwappedPage_SetupRefusesAndFaultIsSynchronous()
    {
        using var rig = RunTouchers(1, new HostRigOptions(), out _, r => r.Host.KvmAsyncPfDeinit());
        var read = rig.ReadsOf(HostApfRig.Gfn(0)).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guests[0].WakeAlls.Count(), Is.EqualTo(1), "the guest had async PF enabled");
            Assert.That(rig.Guests[0].NotPresents, Is.Empty, "setup refused: no cache to allocate the work item from");
            Assert.That(rig.Host.NrWorkers, Is.Zero);
            Assert.That(rig.Trace.SyncFallback.Select(e => e.Gva), Is.EqualTo(new[] { (long)HostApfRig.Gpa(0) }));
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.InRange(read.LatencyNs, read.LatencyNs + (100 * Us)), "the vCPU stalled");
        }
    }

    [Test]
    public void KvmAsyncPfInit_AfterDeinit_SetupAcceptsAgain()
    {
        using var rig = RunTouchers(1, new HostRigOptions(), out _, r =>
        {
            r.Host.KvmAsyncPfDeinit();
            Assert.That(r.Host.KvmAsyncPfInit(), Is.Zero, "module init again");
        });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guests[0].NotPresents.Count(), Is.EqualTo(1));
            Assert.That(rig.Trace.SyncFallback, Is.Empty);
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.Zero);
        }
    }

    // ---- the wake-all of an enabling -------------------------------------------------------------

    [Test]
    public void KvmAsyncPfWakeupAll_CompletionAlreadyQueued_QueuesNoSecondItem()
    {
        using var rig = new HostApfRig().Boot();
        var vcpu = rig.Vcpus[0];
        ulong value = HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        int first = rig.Host.KvmSetMsrCommon(vcpu, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, value);
        var afterFirst = vcpu.AsyncPfDone.ToList();
        int second = rig.Host.KvmSetMsrCommon(vcpu, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, value);
        var afterSecond = (Done: vcpu.AsyncPfDone.ToList(), vcpu.AsyncPfQueued);
        rig.Go();
        rig.RunUntil(() => vcpu.AsyncPfDone.Count == 0);
        rig.Run(5 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That((first, second), Is.EqualTo((0, 0)), "both writes accepted");
            Assert.That(afterFirst.Select(w => w.WakeupAll), Is.EqualTo(new[] { true }), "precondition: the first enabling queued a wake-all");
            Assert.That(afterSecond.Done, Is.EqualTo(afterFirst), "the second found the done list non-empty and queued nothing");
            Assert.That(afterSecond.AsyncPfQueued, Is.EqualTo(1));
            Assert.That(rig.Trace.Ready.Select(e => e.Token), Is.EqualTo(new[] { ApfAbi.WakeAllToken }), "one wake-all presented");
            Assert.That(rig.Host.ApfCounters.WakeAll, Is.EqualTo(1), "and injected");
            Assert.That(vcpu.AsyncPfQueued, Is.Zero);
        }
    }

    // ---- reset and triple fault -----------------------------------------------------------------

    [Test]
    public void KvmArchVcpuReset_PageReadyWaitingForInterruptWindow_DropsWorkAndInjection()
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped();
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        var vcpu = () => rig.Vcpus[0];
        guest.Spawn("toucher", ctx => ctx.Store(HostApfRig.Gva(0)));
        guest.Spawn("cli-loop", async ctx =>
        {
            // Runs while the toucher waits: interrupts off, so the page-ready cannot be injected.
            cpu.InterruptsEnabled = false;
            while (true)
            {
                await ctx.Compute(100 * Us);
            }
        });
        guest.RebootProgram = async ctx =>
        {
            guest.EnableAsyncPf();
            while (true)
            {
                await ctx.Compute(100 * Us);
            }
        };
        (int Done, int Queue, int Queued, bool ExceptionPending)? beforeReset = null;
        rig.Resetting += v => beforeReset = (v.AsyncPfDone.Count, v.AsyncPfQueue.Count, v.AsyncPfQueued, v.Arch.Exception.Pending);
        rig.Go();
        rig.RunUntil(() => guest.NotPresents.Any());
        long np = rig.Loop.Now;
        uint token = guest.NotPresents.Single().Token;
        rig.At(np + (3 * rig.Options.DiskSeekNs / 2), () => rig.RequestReset(0));
        rig.Run(20 * Ms);

        var read = rig.ReadsOf(gfn).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(read.CompletedNs, Is.LessThan(np + (3 * rig.Options.DiskSeekNs / 2)), "precondition: the page was in before the reset");
            Assert.That(beforeReset, Is.EqualTo((1, 1, 1, false)), "precondition: its page-ready waited in the done list");
            Assert.That(vcpu().AsyncPfDone, Is.Empty);
            Assert.That(vcpu().AsyncPfQueue, Is.Empty);
            Assert.That(vcpu().AsyncPfQueued, Is.Zero);
            Assert.That(guest.PageFaults.Where(f => f.Token == token && f.Reason != ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT), Is.Empty,
                "the rebooted guest never got the old token");
            Assert.That(guest.WakeAlls.Count(), Is.EqualTo(2), "only the wake-alls of its two enablings");
            Assert.That(rig.Trace.Ready.Where(e => e.Token == token), Is.Empty);
            Assert.That(rig.Host.ApfCounters.PageReady, Is.Zero);
        }
    }

    [Test]
    public void KvmArchVcpuReset_TripleFaultWhileSwapInInFlight_WorkerLeavesRebootedGuestAlone()
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped();
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        ulong oldArea = guest.AreaGpa;
        ulong newArea = HostApfRig.AreaGpaOf(0) + 0x100;
        guest.Spawn("toucher", ctx => ctx.Store(HostApfRig.Gva(0)));
        guest.Spawn("crasher", async ctx =>
        {
            await ctx.Compute(Ms);
            cpu.TripleFault();
            await ctx.Compute(Ms);
        });
        guest.RebootProgram = async ctx =>
        {
            guest.AreaGpa = newArea;
            guest.EnableAsyncPf();
            while (true)
            {
                await ctx.Compute(100 * Us);
            }
        };
        var afterReboot = new List<GuestPf>();
        rig.Resetting += _ => guest.Delivered += afterReboot.Add;
        rig.Go();
        rig.RunUntil(() => guest.NotPresents.Any());
        uint token = guest.NotPresents.Single().Token;
        rig.Run(20 * Ms);

        var read = rig.ReadsOf(gfn).Single();
        long shutdownAt = rig.RunReturns.Single(r => r.Exit == ExitReason.TripleFault).AtNs;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.RunReturns.Select(r => (r.Result, r.Exit)), Is.EqualTo(new[] { (0, ExitReason.TripleFault) }),
                "KVM_RUN returned once, for the shutdown");
            Assert.That(read.CompletedNs, Is.GreaterThan(shutdownAt), "precondition: the swap-in was still in flight at the reset");
            Assert.That(afterReboot.Select(f => (f.Reason, f.Token)), Is.EqualTo(new[] { (ApfAbi.KVM_PV_REASON_PAGE_READY, ApfAbi.WakeAllToken) }),
                "after the reboot the guest got the wake-all of its own enabling, nothing of the old fault");
            Assert.That(rig.PeekGuestU32(oldArea), Is.Zero, "the area the guest registered before the crash was not written");
            Assert.That(rig.PeekGuestU32(newArea), Is.Zero, "the new area holds nothing but the wake-all the guest consumed");
            Assert.That(rig.Trace.Ready.Where(e => e.Token == token), Is.Empty);
            Assert.That(rig.Vcpus[0].AsyncPfQueue, Is.Empty);
            Assert.That(rig.Vcpus[0].AsyncPfDone, Is.Empty);
            Assert.That(rig.Vcpus[0].AsyncPfQueued, Is.Zero);
        }
    }

    // ---- the host as before the series ----------------------------------------------------------

    /// <summary>One toucher and a hog sharing the vCPU; the guest never writes the MSR.</summary>
    private static (long Done, long Stall, long VmExits, long Halt, int Workers, List<(long, long, bool)> Disk, bool AnyPf, int ApfTraces)
        RunWithoutGuestEnabling(PagingMode paging, bool hostAsyncPf)
    {
        using var rig = new HostApfRig(Options(paging) with { AsyncPf = hostAsyncPf }).Boot();
        rig.Evict(HostApfRig.Gfn(0));
        var guest = rig.Guests[0];
        long done = -1;
        bool stop = false;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Compute(Ms);
            await ctx.Store(HostApfRig.Gva(0));
            done = rig.Loop.Now;
            stop = true;
        });
        var hog = guest.SpawnHog(() => stop);
        rig.Go();
        rig.RunUntil(() => done >= 0 && guest.Finished(hog));
        var cpu = rig.Cpus[0];
        bool anyPf = guest.Gates.ReceivedCalls().Any(c => c.GetMethodInfo().Name == nameof(HostGuestGates.DeliverException));
        return (done, cpu.Residency[VcpuState.Stall], cpu.VmExits, cpu.Residency[VcpuState.Halt], rig.Host.NrWorkers,
            rig.Swap.Requests.Select(r => (r.SubmittedNs, r.CompletedNs, r.Write)).ToList(), anyPf, rig.Trace.Events.Count);
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void TryAsyncPf_GuestNeverEnablesAsyncPf_HostBehavesAsBaseline(PagingMode paging)
    {
        var baseline = RunWithoutGuestEnabling(paging, hostAsyncPf: false);
        var series = RunWithoutGuestEnabling(paging, hostAsyncPf: true);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(baseline.Stall, Is.GreaterThanOrEqualTo(Ms), "precondition: the baseline stalls for the read");
            Assert.That(series.Stall, Is.EqualTo(baseline.Stall), "the same stall");
            Assert.That(series.Done, Is.EqualTo(baseline.Done), "the store completes at the same virtual time");
            Assert.That(series.VmExits, Is.EqualTo(baseline.VmExits), "with the same exits");
            Assert.That(series.Halt, Is.EqualTo(baseline.Halt));
            Assert.That(series.Disk, Is.EqualTo(baseline.Disk), "and the same disk requests");
            Assert.That(series.Workers, Is.Zero, "no work item");
            Assert.That(series.AnyPf, Is.False, "no #PF injected");
            Assert.That(series.ApfTraces, Is.Zero, "no async PF tracepoint fired");
        }
    }

    [Test]
    public void CanDoAsyncPf_KernelModeFaultWithoutSendAlways_StallsAsBaseline()
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped();
        var guest = rig.Guests[0];
        long done = -1;
        guest.Spawn("syscall", async ctx =>
        {
            ctx.SyscallDepth = 1; // copy_to_user in a system call: CPL 0
            await ctx.Store(HostApfRig.Gva(0));
            ctx.SyscallDepth = 0;
            done = rig.Loop.Now;
        });
        rig.Go();
        rig.RunUntil(() => done >= 0);
        var read = rig.ReadsOf(HostApfRig.Gfn(0)).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Vcpus[0].Arch.ApfSendUserOnly, Is.True, "precondition: the guest did not set send-always");
            Assert.That(guest.NotPresents, Is.Empty, "no async PF at CPL 0");
            Assert.That(rig.Trace.TryAsyncGetPage, Is.Empty, "can_do_async_pf said no before any lookup");
            Assert.That(rig.Trace.SyncFallback.Select(e => e.Reason), Is.EqualTo(new[] { "cpl" }));
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.InRange(read.LatencyNs, read.LatencyNs + (100 * Us)),
                "the vCPU stalled for the read, as in patch 0");
            Assert.That(rig.VcpuThreads[0].MajFlt, Is.EqualTo(1));
            Assert.That(rig.Host.NrWorkers, Is.Zero);
        }
    }
}
