using System.Diagnostics.Metrics;
using System.Text;
using KvmApf.Bench;
using KvmApf.Vmm;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// The live view of a run: the <c>KvmApf</c> meter's instruments (what <c>dotnet-counters monitor
/// --counters KvmApf</c> shows), and pacing, which ties simulated time to wall time between slices
/// of the event loop and so must leave the results alone.
/// </summary>
[TestFixture, NonParallelizable, Category("tracing"), Description("The KvmApf meter and paced runs")]
public sealed class MetricsAndPaceTests
{
    [Test]
    public void Meter_DuringRun_ObservesTheKeyFigures()
    {
        var last = new Dictionary<string, double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == MachineMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, value, _, _) => last[i.Name] = value);
        listener.SetMeasurementEventCallback<int>((i, value, _, _) => last[i.Name] = value);
        listener.SetMeasurementEventCallback<double>((i, value, _, _) => last[i.Name] = value);
        listener.Start();
        var progress = new SyncProgress(_ => listener.RecordObservableInstruments());
        BenchRunner.Run(TracingRig.SmallConfig, progress);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(last.Keys, Is.SupersetOf(new[]
            {
                "kvmapf.sim.time", "kvmapf.sim.events", "kvmapf.bm.measured", "kvmapf.vm.exits", "kvmapf.apf.not_present", "kvmapf.apf.page_ready",
                "kvmapf.apf.wake_all", "kvmapf.apf.sync_fallbacks", "kvmapf.apf.outstanding", "kvmapf.host.major_faults",
                "kvmapf.host.swap_reads", "kvmapf.host.swap_writes", "kvmapf.cgroup.usage",
            }));
            Assert.That(last["kvmapf.apf.not_present"], Is.Positive);
            Assert.That(last["kvmapf.sim.time"], Is.Positive);
            Assert.That(last["kvmapf.bm.measured"], Is.InRange(0.0, 1.0));
        }
    }

    [Test]
    public void Pace_ManySlices_SameJsonAsUnpacedRun()
    {
        // A pace this fast never sleeps, but a paced run advances the loop in 10 ms slices instead of 1 s ones.
        string paced = Json(BenchRunner.Run(TracingRig.SmallConfig, null, new RunOptions { Pace = 1e6 }));
        string plain = Json(BenchRunner.Run(TracingRig.SmallConfig));
        Assert.That(paced, Is.EqualTo(plain));
    }

    private static string Json(BenchResult result) =>
        Encoding.UTF8.GetString(JsonReport.Run(result with { Sim = result.Sim with { WallMs = 0 } }));

    /// <summary>Reports on the calling thread (unlike <see cref="Progress{T}"/>, which posts them).</summary>
    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
