using Hw;
using KvmApf.Guest;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// DESIGN section 6's invariants after whole runs of the benchmark with async PF on, under
/// several seeds and a few variations (shadow paging, a cap of one outstanding fault, a
/// preemptible guest that takes async faults in kernel mode): every not-present answered by
/// exactly one page-ready or a wake-all, no task asleep for good, never more outstanding faults
/// than the cap, no spte of a page the host does not have, and the host's reason writes where
/// each guest CPU registered its area. Counted on the tracepoints of the run, so the fixture is
/// [NonParallelizable].
/// </summary>
[TestFixture, NonParallelizable, Category("scenario"), Description("Async PF invariants after bm runs under several seeds")]
public sealed class InvariantTests
{
    private static readonly TestCaseData[] Runs =
    [
        new TestCaseData(GuestBmRun.Small with { Seed = 1 }).SetArgDisplayNames("seed 1"),
        new TestCaseData(GuestBmRun.Small with { Seed = 2 }).SetArgDisplayNames("seed 2"),
        new TestCaseData(GuestBmRun.Small with { Seed = 3, Paging = PagingMode.Shadow }).SetArgDisplayNames("seed 3, shadow paging"),
        new TestCaseData(GuestBmRun.Small with { Seed = 4, ApfPerVcpu = 1 }).SetArgDisplayNames("seed 4, cap 1"),
        new TestCaseData(GuestBmRun.Small with { Seed = 5, GuestPreempt = true }).SetArgDisplayNames("seed 5, preemptible guest"),
    ];

    private GuestTraceRecorder _trace = null!;

    [OneTimeSetUp]
    public void Listen() => _trace = new GuestTraceRecorder();

    [OneTimeTearDown]
    public void StopListening() => _trace.Dispose();

    [TestCaseSource(nameof(Runs))]
    public void BenchRun_AsyncPfOn_KeepsEveryInvariant(BenchConfig config)
    {
        var run = new GuestBmRun(config);
        var m = run.Machine;
        _trace.Record(m.Host.TraceRunId);
        run.RunToEnd();
        var trace = _trace.Events;
        var apf = m.Host.ApfCounters;
        int notPresents = trace.Count(e => !e.Guest && e.Name == "kvm_async_pf_not_present");
        TestContext.Out.WriteLine($"{notPresents} not present, {apf.PageReady} page ready, {apf.WakeAll} wake all, {apf.SyncFallbacks} fallbacks, "
            + $"max outstanding {GuestBmRun.MaxOutstanding(trace)}; {trace.Count} trace events; finished at {run.FinishedNs} ns");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.Finished, Is.True, "bm finished");
            Assert.That(notPresents, Is.GreaterThan(0), "the run had async faults to check");
            Assert.That(GuestBmRun.UnansweredNotPresents(trace), Is.Empty, "every not-present answered once");
            Assert.That(GuestBmRun.SleepersNeverWoken(trace), Is.Empty, "every guest sleep or halt on a token ended");
            Assert.That(GuestBmRun.SleeperNodesLeft(m.Guest), Is.Empty, "nothing left in the guest's sleeper hash");
            Assert.That(m.Bm.FaultTasks.Concat(m.Bm.WorkTasks).Select(t => t.State), Is.All.AnyOf(TaskStates.TASK_RUNNING, TaskStates.TASK_DEAD),
                "every bm thread got past the final barrier: none asleep");
            Assert.That(GuestBmRun.MaxOutstanding(trace), Is.LessThanOrEqualTo(config.ApfPerVcpu), "outstanding faults within the cap");
            Assert.That(apf.MaxOutstanding, Is.LessThanOrEqualTo(config.ApfPerVcpu), "as the host counted them too");
            Assert.That(GuestBmRun.SptesOfAbsentPages(m.Vm!, m.VmmMm), Is.Empty, "no spte maps a page the host does not have");
            Assert.That(GuestBmRun.AreaProblems(m.Host, m.Vm!, m.VmmMm, m.Ram), Is.Empty, "the host writes each vCPU's reason into the area its CPU registered");
            Assert.That(GuestEvents(trace, "apf_task_sleep", "apf_cpu_halted", "apf_dummy_consumed"), Is.EqualTo(apf.NotPresent),
                "the guest read reason 1 for every not-present the host wrote");
            Assert.That(GuestEvents(trace, "apf_wake_all"), Is.EqualTo(apf.WakeAll), "and reason 2 for every wake-all");
            if (config.ApfPerVcpu == 1)
            {
                Assert.That(trace.Where(e => e.Name == "kvm_async_pf_sync_fallback").Select(e => e.Reason), Has.Member("cap"),
                    "the cap was reached, so the check above means something");
            }
            if (config.GuestPreempt)
            {
                Assert.That(m.Vcpus.Select(v => v.Arch.ApfSendUserOnly), Is.All.False, "the preemptible guest asked for send-always");
            }
        }
    }

    [Test]
    public void BenchOnRig_AsyncPfOn_HostWritesOnlyIntoTheRegisteredAreas()
    {
        var rig = new GuestApfRig(new GuestApfRigOptions
        {
            Vcpus = 2, GuestMemBytes = GuestBmRun.Small.GuestMemBytes, MemLimitBytes = GuestBmRun.Small.MemLimitBytes, Seed = 6,
        });
        var bm = new Bm(rig.Libc, new BmOptions(4, 4, (ulong)GuestBmRun.Small.ArrayBytes, GuestBmRun.Small.DurationNs), rig.Options.Costs);
        var stray = new List<string>();
        var stores = new List<(int Vcpu, ulong Value)>();
        rig.HostStored += (hpa, size, value) =>
        {
            // Which vCPU's registered area is backed by this host address now?
            var owner = rig.Vcpus.Where(v => v is not null && Kernel.ApfEnabled(v)).FirstOrDefault(v =>
            {
                ulong gpa = v.Arch.ApfMsrVal & ~0x3fUL;
                ulong hva = Kernel.GfnToHva(rig.Vm, gpa >> Pgtable.PAGE_SHIFT) + (gpa & (Pgtable.PAGE_SIZE - 1));
                ulong pte = rig.VmmMm.PageTable.PeekPte(hva) ?? 0;
                return Pgtable.PtePresent(pte) && hpa == ((Pgtable.PtePfn(pte) << Pgtable.PAGE_SHIFT) | (hva & (Pgtable.PAGE_SIZE - 1)));
            });
            if (owner is null || size != 4)
            {
                stray.Add($"{size}-byte store of {value} at hpa {hpa:x} at {rig.Loop.Now} ns");
            }
            else
            {
                stores.Add((owner.VcpuId, value));
            }
        };
        rig.Start((_, self) => bm.Main(self));
        rig.RunUntilFinished(600_000_000_000);
        var apf = rig.Host.ApfCounters;
        TestContext.Out.WriteLine($"{stores.Count} host stores into areas; {apf.NotPresent} not present, {apf.PageReady} page ready, {apf.WakeAll} wake all");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Console.Lines, Has.Some.StartsWith("total:"), "bm finished");
            Assert.That(stray, Is.Empty, "no host store outside a registered area");
            Assert.That(stores.Count(s => s.Value == ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT), Is.EqualTo(apf.NotPresent).And.GreaterThan(0),
                "one reason-1 store per not-present");
            Assert.That(stores.Count(s => s.Value == ApfAbi.KVM_PV_REASON_PAGE_READY), Is.EqualTo(apf.PageReady + apf.WakeAll), "one reason-2 store per page-ready");
            Assert.That(stores.Select(s => s.Vcpu).Distinct().Order(), Is.EqualTo(new[] { 0, 1 }), "into both vCPUs' areas");
            Assert.That(GuestBmRun.SptesOfAbsentPages(rig.Vm, rig.VmmMm), Is.Empty);
        }
    }

    private static int GuestEvents(IReadOnlyList<ApfTraceEvent> trace, params string[] names) => trace.Count(e => e.Guest && names.Contains(e.Name));
}
