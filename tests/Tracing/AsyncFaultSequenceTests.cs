using KvmApf.Tracing;
using KvmApf.Vmm;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// One async page fault as its tracepoints tell it (patch 8, seeds/004): the fault path looks for
/// the page without I/O and finds it needs I/O (kvm_try_async_get_page, pfn -1), the guest is told
/// the page is not present, the worker completes the swap-in, the guest is told the page is ready;
/// the guest's own events sit between. Caught synchronously by an in-process listener.
/// </summary>
[TestFixture, NonParallelizable, Category("tracing"), Description("The tracepoints of one async fault, in order and with their fields")]
public sealed class AsyncFaultSequenceTests
{
    private List<TraceRecord> _events = [];
    private long _runId;

    [OneTimeSetUp]
    public void RunWithListener()
    {
        using var listener = new RecordingListener();
        BenchRunner.Run(TracingRig.SmallConfig);
        _runId = listener.LastRunId;
        _events = listener.Run(_runId);
    }

    [Test]
    public void AsyncFault_HostTracepoints_TryNotPresentCompletedReadyWithFields()
    {
        var host = _events.Where(e => e.Provider == TraceProviders.Kvm).ToList();
        int np = host.FindIndex(e => e.Name == "kvm_async_pf_not_present");
        Assert.That(np, Is.GreaterThanOrEqualTo(0), "the run had an async fault");
        var notPresent = host[np];
        int vcpu = notPresent.VcpuId;
        long token = notPresent.Long("Token");
        long gva = notPresent.Long("Gva");
        int tryAt = host.FindLastIndex(np, e => e.Name == "kvm_try_async_get_page" && e.VcpuId == vcpu);
        int completedAt = host.FindIndex(np, e => e.Name == "kvm_async_pf_completed" && e.VcpuId == vcpu && e.Long("Gva") == gva);
        int readyAt = host.FindIndex(np, e => e.Name == "kvm_async_pf_ready" && e.Long("Token") == token);
        Assert.That(new[] { tryAt, completedAt, readyAt }, Is.All.GreaterThanOrEqualTo(0), "every event of the fault is there");
        var sequence = new[] { host[tryAt], notPresent, host[completedAt], host[readyAt] };
        using (Assert.EnterMultipleScope())
        {
            Assert.That(tryAt < np && np < completedAt && completedAt < readyAt, Is.True, "try, not-present, completed, ready: in that order");
            Assert.That(sequence.Select(e => e.Name),
                Is.EqualTo(new[] { "kvm_try_async_get_page", "kvm_async_pf_not_present", "kvm_async_pf_completed", "kvm_async_pf_ready" }));
            Assert.That(host[tryAt].Flag("Async"), Is.True, "the page needed I/O");
            Assert.That(host[tryAt].Long("Pfn"), Is.EqualTo(-1), "no pfn without I/O");
            Assert.That(token & 0xfff, Is.EqualTo(vcpu), "token = (apf_id++ << 12) | vcpu_id (seeds/004)");
            Assert.That(host[completedAt].Long("Address"), Is.EqualTo((long)VmmBoot.GuestRamHva + (gva & ~0xfffL)), "the VMM's hva of the page");
            Assert.That(host[readyAt].Long("Gva"), Is.EqualTo(gva));
            Assert.That(sequence.Select(e => e.TimeNs), Is.Ordered, "virtual time does not go back");
            Assert.That(host[completedAt].TimeNs, Is.GreaterThan(notPresent.TimeNs), "the swap-in takes time");
            Assert.That(sequence.Select(e => (e.RunId, e.Kernel, e.VmId, e.VcpuId)), Is.All.EqualTo((_runId, "host", 0, vcpu)));
        }
    }

    [Test]
    public void AsyncFault_InjectAndQueue_AroundTheLinuxTracepoints()
    {
        var host = _events.Where(e => e.Provider == TraceProviders.Kvm).ToList();
        int np = host.FindIndex(e => e.Name == "kvm_async_pf_not_present");
        long token = host[np].Long("Token");
        int vcpu = host[np].VcpuId;
        int ready = host.FindIndex(np, e => e.Name == "kvm_async_pf_ready" && e.Long("Token") == token);
        int inject1 = host.FindIndex(np, e => e.Name == "kvm_async_pf_inject" && e.Long("Token") == token);
        int done = host.FindLastIndex(ready, e => e.Name == "kvm_async_pf_queued" && e.VcpuId == vcpu && e.Text("Change") == "done");
        int inject2 = host.FindIndex(ready, e => e.Name == "kvm_async_pf_inject" && e.Long("Token") == token && e.Int("Reason") == 2);
        using (Assert.EnterMultipleScope())
        {
            Assert.That((host[np - 1].Name, host[np - 1].Text("Change"), host[np - 1].VcpuId), Is.EqualTo(("kvm_async_pf_queued", "setup", vcpu)),
                "kvm_setup_async_pf counts the fault just before the not-present");
            Assert.That(host[np - 1].Int("Queued"), Is.GreaterThanOrEqualTo(1));
            Assert.That(host[inject1].Int("Reason"), Is.EqualTo(1), "the first injection for the token is the not-present");
            Assert.That(new[] { np - 1, np, inject1, done, ready, inject2 }, Is.Ordered.And.Unique.And.All.GreaterThanOrEqualTo(0),
                "setup, not-present, inject 1, done, ready, inject 2");
        }
    }

    [Test]
    public void AsyncFault_GuestTracepoints_SleepBetweenNotPresentAndReadyThenWoken()
    {
        var np = _events.First(e => e.Name == "kvm_async_pf_not_present");
        long token = np.Long("Token");
        var ready = _events.First(e => e.Name == "kvm_async_pf_ready" && e.Long("Token") == token);
        var guest = _events.Where(e => e.Provider == TraceProviders.KvmGuest && e.Long("Token") == token).ToList();
        int iNp = _events.IndexOf(np), iReady = _events.IndexOf(ready);
        var sleep = guest.FirstOrDefault(e => e.Name == "apf_task_sleep");
        var woken = guest.FirstOrDefault(e => e.Name == "apf_task_woken");
        Assert.That(sleep, Is.Not.Null, "the faulting task slept on the token");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(_events.IndexOf(sleep!), Is.InRange(iNp, iReady));
            Assert.That(woken, Is.Not.Null);
            Assert.That(_events.IndexOf(woken!), Is.GreaterThan(iReady));
            Assert.That(woken!.Int("Pid"), Is.EqualTo(sleep!.Int("Pid")));
            Assert.That((sleep.Kernel, sleep.VmId, sleep.VcpuId), Is.EqualTo(("guest", 0, np.VcpuId)), "the guest CPU is the vCPU that took the fault");
        }
    }
}
