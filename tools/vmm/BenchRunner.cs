using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using Hw;
using Linux;

namespace KvmApf.Vmm;

/// <summary>How a run is watched (none of it changes what the run computes).</summary>
public sealed record RunOptions
{
    /// <summary>Simulated seconds per wall-clock second (1: real time); 0 runs as fast as it can.</summary>
    public double Pace { get; init; }
}

/// <summary>Runs the slides' benchmark in a freshly built machine.</summary>
public static class BenchRunner
{
    /// <summary>True once the async PF series is in: <c>--apf on</c> can run.</summary>
    public static bool SupportsApf => true;

    /// <summary>Simulated time allowed for boot and prefault before a run is declared stuck.</summary>
    private const long BootBudgetNs = 600_000_000_000;

    /// <summary>
    /// Builds the machine for <paramref name="config"/>, boots it, runs bm and returns the
    /// figures. <paramref name="progress"/> gets the fraction of the measured interval done
    /// (0..1), on the calling thread. Throws <see cref="ArgumentException"/> for a configuration
    /// that <see cref="BenchConfig.Validate"/> rejects, <see cref="NotSupportedException"/> for
    /// what this build cannot run yet.
    /// </summary>
    public static BenchResult Run(BenchConfig config, IProgress<double>? progress = null) => Run(config, progress, new RunOptions());

    /// <summary>
    /// <see cref="Run(BenchConfig, IProgress{double}?)"/> with <paramref name="options"/> that change
    /// how the run is watched, never what it computes: pacing (<see cref="RunOptions.Pace"/>) sleeps
    /// between slices of <see cref="EventLoop.Run"/>, outside the model. The machine's figures are
    /// <see cref="MachineMetrics"/> instruments while it runs, and the VMM's trace events
    /// (<see cref="VmmTrace"/>) mark the run and its measured interval.
    /// </summary>
    public static BenchResult Run(BenchConfig config, IProgress<double>? progress, RunOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        if (config.Validate() is { } problem)
        {
            throw new ArgumentException($"{problem.Option}: {problem.Message}", nameof(config));
        }
        bool noGcRegion = EnterNoGcRegion();
        try
        {
            return Simulate(config, progress, options);
        }
        finally
        {
            LeaveNoGcRegion(noGcRegion);
        }
    }

    /// <summary>
    /// What a run may allocate with the collector held off: the default configuration allocates
    /// about 70 MB, most of it the struct pages and tables that live as long as the machine.
    /// </summary>
    private const long NoGcBudgetBytes = 128L << 20;

    /// <summary>
    /// Before the clock starts: collects what earlier runs of the process left behind, so that a
    /// run's wall time is its own (the default job's second run, or a benchmark's rounds, would
    /// otherwise pay for the first run's machine), and holds the collector off for the run's
    /// first <see cref="NoGcBudgetBytes"/> of allocation, four fifths of which live until it ends:
    /// collecting them mostly moves them (GC.TryStartNoGCRegion). A run that allocates more is
    /// collected as usual from there on. False when the process could not enter the region (a
    /// concurrent run holds it, or the collector has no room for the budget).
    /// </summary>
    private static bool EnterNoGcRegion()
    {
        try
        {
            if (GC.TryStartNoGCRegion(NoGcBudgetBytes))
            {
                return true;
            }
        }
        catch (InvalidOperationException)
        {
            // Another run of this process is inside the region.
        }
        catch (ArgumentOutOfRangeException)
        {
            // A collector whose ephemeral space is smaller than the budget.
        }
        GC.Collect();
        return false;
    }

    private static void LeaveNoGcRegion(bool entered)
    {
        if (!entered || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion)
        {
            return; // never entered, or the run outgrew the budget and a collection ended the region
        }
        try
        {
            GC.EndNoGCRegion();
        }
        catch (InvalidOperationException)
        {
            // A collection ended the region meanwhile (another run's, in a test process).
        }
    }

    private static BenchResult Simulate(BenchConfig config, IProgress<double>? progress, RunOptions options)
    {
        var gcAtStart = (Allocated: GC.GetTotalAllocatedBytes(precise: true), Collections: GC.CollectionCount(0), Paused: GC.GetTotalPauseDuration());
        var wall = Stopwatch.StartNew();
        var m = new Machine(config);
        VmmTrace.Log.Run(m);
        var window = new Window(m);
        using var metrics = new MachineMetrics(m, () => window.StartNs < 0 ? 0 : Math.Clamp((m.Loop.Now - window.StartNs) / (double)config.DurationNs, 0, 1));
        var workers = new List<WorkerResult>();
        bool done = false;
        long setupMs = 0;
        m.Console.LineWritten = line =>
        {
            if (line == "start")
            {
                setupMs = wall.ElapsedMilliseconds;
                window.Begin();
                m.Loop.Arm(new SimTimer(window.End), m.Loop.Now + config.DurationNs);
            }
            else if (line.StartsWith("worker ", StringComparison.Ordinal))
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                workers.Add(new WorkerResult(line[..colon], long.Parse(line[(colon + 1)..], CultureInfo.InvariantCulture)));
            }
            else if (line.StartsWith("total:", StringComparison.Ordinal))
            {
                VmmTrace.Log.RunDone(m, workers.Sum(w => w.Counter));
                done = true;
                m.StopVcpus();
                m.Loop.Stop();
            }
        };
        m.Start();
        long slice = options.Pace > 0 ? PacedSliceNs : SliceNs;
        while (!done)
        {
            long limit = window.StartNs >= 0 ? window.StartNs + config.DurationNs + BootBudgetNs : BootBudgetNs;
            if (m.Loop.Now >= limit)
            {
                throw new InvalidOperationException($"the guest did not finish: simulated time {m.Loop.Now} ns, console: {string.Join(" | ", m.Console.Lines)}");
            }
            bool more = m.Loop.Run(m.Loop.Now + slice);
            if (!more && !done)
            {
                throw new InvalidOperationException("the machine went idle before bm finished");
            }
            if (window.StartNs >= 0)
            {
                progress?.Report(Math.Clamp((m.Loop.Now - window.StartNs) / (double)config.DurationNs, 0, 1));
            }
            if (options.Pace > 0)
            {
                KeepPace(wall, m.Loop.Now, options.Pace);
            }
        }
        wall.Stop();
        var gc = new GcFigures(
            GC.GetTotalAllocatedBytes(precise: true) - gcAtStart.Allocated,
            GC.CollectionCount(0) - gcAtStart.Collections,
            (long)(GC.GetTotalPauseDuration() - gcAtStart.Paused).TotalMilliseconds);
        return window.Result(workers, new SimResult(m.Loop.EventsProcessed, m.Loop.Now, wall.ElapsedMilliseconds, setupMs) { Gc = gc });
    }

    /// <summary>Simulated time one <see cref="EventLoop.Run"/> call may advance.</summary>
    private const long SliceNs = 1_000_000_000;

    /// <summary>The slice of a paced run: short enough that time moves smoothly for a watcher.</summary>
    private const long PacedSliceNs = 10_000_000;

    /// <summary>Sleeps until wall time catches up with <paramref name="simNs"/> at <paramref name="pace"/> simulated seconds per second.</summary>
    private static void KeepPace(Stopwatch wall, long simNs, double pace)
    {
        double aheadMs = (simNs / 1e6 / pace) - wall.Elapsed.TotalMilliseconds;
        if (aheadMs >= 1)
        {
            Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(aheadMs, 1000)));
        }
    }

    /// <summary>The measured interval: snapshots at bm's "start" and <c>duration</c> later.</summary>
    private sealed class Window(Machine m)
    {
        private long[][] _vcpuStart = [];
        private long[][] _vcpuEnd = [];
        private (long User, long Kernel, long Stores, long Faults)[] _ctxStart = [];
        private (long User, long Kernel, long Stores, long Faults)[] _ctxEnd = [];
        private (long MajFault, long SwapIn, long SwapOut, long Reclaimed) _hostStart;
        private (long MajFault, long SwapIn, long SwapOut, long Reclaimed) _hostEnd;
        private (long NotPresent, long PageReady, long WakeAll, long Fallbacks) _apfStart;
        private (long NotPresent, long PageReady, long WakeAll, long Fallbacks) _apfEnd;
        private long _peak;
        private long _maxOutstanding;

        private (long, long, long, long) SnapshotApf()
        {
            var c = m.Host.ApfCounters;
            return (c.NotPresent, c.PageReady, c.WakeAll, c.SyncFallbacks);
        }

        public long StartNs { get; private set; } = -1;

        private List<TaskStruct> Tasks => m.Guest.Tasks;

        public void Begin()
        {
            VmmTrace.Log.MeasureBegin(m);
            StartNs = m.Loop.Now;
            _vcpuStart = SnapshotVcpus();
            _ctxStart = SnapshotContexts();
            _hostStart = SnapshotHost();
            _apfStart = SnapshotApf();
            m.Cgroup.MaxUsage = m.Cgroup.Usage;
            m.Host.ApfCounters.MaxOutstanding = m.Vcpus.Length == 0 ? 0 : m.Vcpus.Max(v => v.AsyncPfQueued);
        }

        public void End()
        {
            VmmTrace.Log.MeasureEnd(m);
            _vcpuEnd = SnapshotVcpus();
            _ctxEnd = SnapshotContexts();
            _hostEnd = SnapshotHost();
            _apfEnd = SnapshotApf();
            _maxOutstanding = m.Host.ApfCounters.MaxOutstanding;
            _peak = m.Cgroup.MaxUsage;
        }

        private long[][] SnapshotVcpus() => [.. m.Cpus.Select(c => new[]
        {
            c.Residency[VcpuState.Guest], c.Residency[VcpuState.Host], c.Residency[VcpuState.Stall], c.Residency[VcpuState.Halt],
        })];

        /// <summary>
        /// Every context's counters, with the part of a segment in flight on a CPU that they do not
        /// hold yet: the vCPUs' guest time counts up to now, so the contexts' time must too.
        /// </summary>
        private (long, long, long, long)[] SnapshotContexts()
        {
            var inFlight = m.Cpus.Select(c => c.InFlight).Where(p => p.Context is not null).ToDictionary(p => p.Context!);
            return
            [
                .. Tasks.Select(t => t.Context!).Concat(m.Guest.Runqueues.Select(rq => rq.Idle.Context!))
                    .Select(c =>
                    {
                        var p = inFlight.GetValueOrDefault(c);
                        return (c.UserNs + p.UserNs, c.KernelNs + p.KernelNs, c.Stores + p.Stores, c.HostMajorFaults + p.HostMajorFaults);
                    }),
            ];
        }

        private (long, long, long, long) SnapshotHost() => (m.Host.PgMajFault, m.Host.PswpIn, m.Host.PswpOut, m.Host.PgSteal);

        public BenchResult Result(List<WorkerResult> workers, SimResult sim)
        {
            if (StartNs < 0 || _vcpuEnd.Length == 0)
            {
                throw new InvalidOperationException("bm finished without a complete measured interval");
            }
            var vcpus = new List<VcpuResult>();
            for (int i = 0; i < m.Cpus.Length; i++)
            {
                long D(int k) => _vcpuEnd[i][k] - _vcpuStart[i][k];
                vcpus.Add(new VcpuResult(i, D(0), D(1), D(2), D(3)));
            }
            var faults = new List<FaultThreadResult>();
            long workNs = 0, faultNs = 0, kernelNs = 0;
            var contexts = Tasks.Select(t => t.Context!).Concat(m.Guest.Runqueues.Select(rq => rq.Idle.Context!)).ToList();
            for (int i = 0; i < contexts.Count && i < _ctxStart.Length; i++)
            {
                var (u0, k0, s0, f0) = _ctxStart[i];
                var (u1, k1, s1, f1) = _ctxEnd[i];
                kernelNs += k1 - k0;
                var owner = (TaskStruct)contexts[i].Owner!;
                if (m.Bm.WorkTasks.Contains(owner))
                {
                    workNs += u1 - u0;
                }
                if (m.Bm.FaultTasks.Contains(owner))
                {
                    faultNs += u1 - u0;
                    faults.Add(new FaultThreadResult($"fault {m.Bm.FaultTasks.IndexOf(owner)}", s1 - s0, f1 - f0));
                }
            }
            var host = new HostResult(_hostEnd.MajFault - _hostStart.MajFault, _hostEnd.SwapIn - _hostStart.SwapIn,
                _hostEnd.SwapOut - _hostStart.SwapOut, _hostEnd.Reclaimed - _hostStart.Reclaimed, _peak);
            var shares = new TimeShares(workNs, faultNs, kernelNs, vcpus.Sum(v => v.HostNs), vcpus.Sum(v => v.StallNs), vcpus.Sum(v => v.HaltNs));
            var apf = new ApfResult(_apfEnd.NotPresent - _apfStart.NotPresent, _apfEnd.PageReady - _apfStart.PageReady,
                _apfEnd.WakeAll - _apfStart.WakeAll, _apfEnd.Fallbacks - _apfStart.Fallbacks, _maxOutstanding);
            return new BenchResult(m.Config, workers, faults, vcpus, host, apf, sim, shares);
        }
    }
}
