using System.Diagnostics.Metrics;

namespace KvmApf.Vmm;

/// <summary>
/// The key figures of a running machine as <see cref="System.Diagnostics.Metrics"/> instruments of
/// the meter <see cref="MeterName"/>, for <c>dotnet-counters monitor --counters KvmApf</c>. Every
/// instrument is observable: nothing is counted on the simulation's path, and a collector's
/// callback only reads counters the machine keeps anyway (from its own thread, so a value may be
/// a moment old; reading never changes the simulation). One meter per run, disposed with it.
/// </summary>
public sealed class MachineMetrics : IDisposable
{
    public const string MeterName = "KvmApf";

    private readonly Meter _meter;

    public MachineMetrics(Machine m, Func<double> measuredFraction)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(measuredFraction);
        _meter = new Meter(MeterName);
        var tags = new KeyValuePair<string, object?>[] { new("run", m.Host.TraceRunId) };
        _meter.CreateObservableCounter("kvmapf.sim.time", () => new Measurement<double>(m.Loop.Now / 1e9, tags), "s", "simulated time");
        _meter.CreateObservableCounter("kvmapf.sim.events", () => new Measurement<long>(m.Loop.EventsProcessed, tags), "{event}", "events the loop processed");
        _meter.CreateObservableGauge("kvmapf.bm.measured", () => new Measurement<double>(measuredFraction(), tags), "1", "fraction of bm's measured interval done");
        _meter.CreateObservableCounter("kvmapf.vm.exits", () => new Measurement<long>(m.Cpus.Sum(c => c.VmExits), tags), "{exit}", "VM exits of all vCPUs");
        _meter.CreateObservableCounter("kvmapf.apf.not_present", () => new Measurement<long>(m.Host.ApfCounters.NotPresent, tags), "{fault}", "not-present events injected");
        _meter.CreateObservableCounter("kvmapf.apf.page_ready", () => new Measurement<long>(m.Host.ApfCounters.PageReady, tags), "{fault}", "page-ready events injected");
        _meter.CreateObservableCounter("kvmapf.apf.wake_all", () => new Measurement<long>(m.Host.ApfCounters.WakeAll, tags), "{event}", "wake-all broadcasts injected");
        _meter.CreateObservableCounter("kvmapf.apf.sync_fallbacks", () => new Measurement<long>(m.Host.ApfCounters.SyncFallbacks, tags), "{fault}", "faults that went synchronous with async PF on");
        _meter.CreateObservableGauge("kvmapf.apf.outstanding", () => new Measurement<int>(Outstanding(m), tags), "{fault}", "outstanding async faults, all vCPUs");
        _meter.CreateObservableCounter("kvmapf.host.major_faults", () => new Measurement<long>(m.Host.PgMajFault, tags), "{fault}", "host page faults that needed swap I/O");
        _meter.CreateObservableCounter("kvmapf.host.swap_reads", () => new Measurement<long>(m.Host.PswpIn, tags), "{page}", "pages read from swap");
        _meter.CreateObservableCounter("kvmapf.host.swap_writes", () => new Measurement<long>(m.Host.PswpOut, tags), "{page}", "pages written to swap");
        _meter.CreateObservableGauge("kvmapf.cgroup.usage", () => new Measurement<long>(m.Cgroup.Usage, tags), "By", "the VMM cgroup's charge");
    }

    private static int Outstanding(Machine m)
    {
        int sum = 0;
        foreach (var vcpu in m.Vcpus)
        {
            sum += vcpu?.AsyncPfQueued ?? 0;
        }
        return sum;
    }

    public void Dispose() => _meter.Dispose();
}
