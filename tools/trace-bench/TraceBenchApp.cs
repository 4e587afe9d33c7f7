using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Globalization;
using Hw;
using KvmApf.Bench;
using KvmApf.Tracing;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.TraceBench;

/// <summary>
/// Measures what tracing costs, in one process (Documentation/tracing.md has the figures):
/// the disabled tracepoint path by micro-benchmark (before anything ever listens), then
/// <c>--rounds</c> rounds of the same run, each round (a) with nothing listening, (b) with an
/// in-process <see cref="EventListener"/> enabled for every event of every provider, and (c) with
/// a <c>.nettrace</c> capture through an EventPipe session on the process itself (stack walks off),
/// in that order. Reports medians, the ratios (b)/(a) and (c)/(a), events per second with capture
/// on, the disabled path's cost over a run's events as a share of (a), and what an enabled event
/// costs: in the run, against what a ratio of 1.3 allows, and with a listener in an empty loop.
/// </summary>
public static class TraceBenchApp
{
    private const string Usage = """
        usage: trace-bench [--rounds N] [--duration TIME] [--apf on|off] [--calls N] [--keep FILE]
          --rounds N        rounds of (a) no listener, (b) in-process listener, (c) .nettrace capture (3)
          --duration TIME   bm's measured interval (60s: the default run)
          --apf on|off      async PF (on)
          --calls N         calls per micro-benchmark of a disabled tracepoint (200000000)
          --keep FILE       keep the last capture's .nettrace as FILE (default: deleted)

        """;

    public static int Run(string[] args, TextWriter o, TextWriter err)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(err);
        int rounds = 3;
        long calls = 200_000_000;
        string? keep = null;
        var config = new BenchConfig { Apf = true };
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                string name = args[i];
                string Value() => i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                    ? args[++i]
                    : throw new FormatException($"{name}: missing value");
                switch (name)
                {
                    case "--rounds": rounds = (int)Positive(name, Value(), int.MaxValue); break;
                    case "--duration": config = config with { DurationNs = Named(name, Sizes.ParseTime, Value()) }; break;
                    case "--apf": config = config with { Apf = OnOff(name, Value()) }; break;
                    case "--calls": calls = Positive(name, Value(), long.MaxValue); break;
                    case "--keep": keep = Value(); break;
                    case "--help" or "-h": o.Write(Usage); return 0;
                    default: throw new FormatException($"{name}: unknown option (see --help)");
                }
            }
            if (config.Validate() is { } problem)
            {
                throw BadInputException.For(problem.Option, problem.Message);
            }
            if (keep is not null)
            {
                OutputFile.CheckWritable(keep, "--keep");
            }
        }
        catch (Exception e) when (e is FormatException or BadInputException)
        {
            err.WriteLine($"trace-bench: {e.Message}");
            return 2;
        }

        o.WriteLine($"trace-bench: {Environment.ProcessorCount} CPUs, .NET {Environment.Version}; run: async PF {(config.Apf ? "on" : "off")}, "
            + $"{Sizes.FormatTime(config.DurationNs)} measured, other options default; {rounds} rounds");
        var disabled = DisabledPath(calls);
        foreach (var (name, ns) in disabled)
        {
            o.WriteLine($"disabled tracepoint, {name}: {F(ns, 2)} ns per call ({calls} calls, best of 3)");
        }

        var a = new List<(double Wall, double Cpu)>();
        var b = new List<(double Wall, double Cpu)>();
        var c = new List<(double Wall, double Cpu)>();
        long events = 0;
        long fileBytes = 0;
        var sessionSeconds = new List<double>();
        string dir = Path.Combine(Path.GetTempPath(), "trace-bench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        try
        {
            string file = Path.Combine(dir, "run.nettrace");
            (double, double) None(BenchConfig cfg) => Timed(() => BenchRunner.Run(cfg));
            (double, double) Listener(BenchConfig cfg)
            {
                using var listener = new CountingListener();
                var seconds = Timed(() => BenchRunner.Run(cfg));
                events = listener.Count;
                return seconds;
            }
            (double, double) Capture(BenchConfig cfg) => Timed(() =>
            {
                var watch = Stopwatch.StartNew();
                using var capture = TraceCapture.Start(file, "(c) .nettrace capture");
                double started = watch.Elapsed.TotalSeconds;
                BenchRunner.Run(cfg);
                double ran = watch.Elapsed.TotalSeconds;
                fileBytes = capture.Finish();
                sessionSeconds.Add(started + (watch.Elapsed.TotalSeconds - ran));
            });
            // Warm-up: every path once on a short run, so that no round pays for the JIT.
            var warm = config with { DurationNs = Math.Min(config.DurationNs, 1_000_000_000) };
            None(warm);
            Listener(warm);
            Capture(warm);
            var modes = new (List<(double, double)> Into, Func<BenchConfig, (double, double)> Run)[] { (a, None), (b, Listener), (c, Capture) };
            for (int round = 1; round <= rounds; round++)
            {
                // The order rotates from round to round, so that no mode always runs first or last.
                for (int k = 0; k < modes.Length; k++)
                {
                    var (into, run) = modes[(k + round - 1) % modes.Length];
                    into.Add(run(config));
                }
                o.WriteLine($"round {round}: (a) {F(a[^1].Wall, 3)} s, (b) {F(b[^1].Wall, 3)} s, (c) {F(c[^1].Wall, 3)} s wall; "
                    + $"{F(a[^1].Cpu, 3)}, {F(b[^1].Cpu, 3)}, {F(c[^1].Cpu, 3)} s CPU");
            }
            if (keep is not null)
            {
                OutputFile.Commit(file, keep, "--keep");
            }
        }
        catch (BadInputException e)
        {
            // The capture could not start: diagnostics are off in this process, or --keep cannot be written after all.
            err.WriteLine($"trace-bench: {e.Message}");
            return 2;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        double ma = Median(a.Select(x => x.Wall)), mb = Median(b.Select(x => x.Wall)), mc = Median(c.Select(x => x.Wall));
        double ca = Median(a.Select(x => x.Cpu)), cb = Median(b.Select(x => x.Cpu)), cc = Median(c.Select(x => x.Cpu));
        double worstDisabled = disabled.Max(d => d.Ns);
        double disabledSeconds = worstDisabled * events / 1e9;
        string All(List<(double Wall, double Cpu)> xs) => string.Join(", ", xs.Select(x => F(x.Wall, 3)));
        o.WriteLine();
        o.WriteLine($"(a) no listener:               wall median {F(ma, 3)} s [{All(a)}], CPU median {F(ca, 3)} s");
        o.WriteLine($"(b) in-process EventListener:  wall median {F(mb, 3)} s [{All(b)}], CPU median {F(cb, 3)} s; (b)/(a) = {F(mb / ma, 3)} wall, {F(cb / ca, 3)} CPU (target <= 1.3)");
        o.WriteLine($"(c) .nettrace capture:         wall median {F(mc, 3)} s [{All(c)}], CPU median {F(cc, 3)} s; (c)/(a) = {F(mc / ma, 3)} wall, {F(cc / ca, 3)} CPU (target <= 1.3)");
        o.WriteLine($"    of which starting the session and draining it into the file after the run: median {F(Median(sessionSeconds.Skip(1)), 3)} s");
        o.WriteLine($"events per run: {events}; .nettrace {F(fileBytes / 1048576.0, 1)} MiB ({F(fileBytes / (double)Math.Max(1, events), 1)} bytes per event)");
        o.WriteLine($"events written per second with capture on: {F(events / mc, 0)} (per wall second of (c))");
        o.WriteLine($"disabled tracepoints over a run: {events} events x {F(worstDisabled, 2)} ns = {F(disabledSeconds * 1e3, 1)} ms, "
            + $"{F(100 * disabledSeconds / ma, 2)}% of (a) (target < 3%)");
        double budgetNs = 0.3 * ma / events * 1e9;
        double listenerFloor = ListenerFloor(Math.Min(calls, 5_000_000));
        o.WriteLine($"per event: (b) costs {F((mb - ma) / events * 1e9, 0)} ns, (c) {F((mc - ma) / events * 1e9, 0)} ns; a ratio of 1.3 allows {F(budgetNs, 0)} ns "
            + $"({events} events in 30% of (a)); an in-process listener alone costs {F(listenerFloor, 0)} ns per kvm_entry in a loop that does nothing else");
        return 0;
    }

    /// <summary>A whole number from 1 to <paramref name="max"/>, or a message that names <paramref name="option"/>.</summary>
    private static long Positive(string option, string text, long max) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n >= 1 && n <= max
            ? n
            : throw new FormatException($"{option}: '{text}' is not a whole number from 1 to {max}");

    private static bool OnOff(string option, string text) => text switch
    {
        "on" => true,
        "off" => false,
        _ => throw new FormatException($"{option}: '{text}' is not on or off"),
    };

    /// <summary>Parses with <paramref name="parse"/>, whose message gains the option's name.</summary>
    private static long Named(string option, Func<string, long> parse, string text)
    {
        try
        {
            return parse(text);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{option}: {e.Message}", e);
        }
    }

    /// <summary>Wall seconds, and CPU seconds of all the process's threads (a second view when the machine is shared).</summary>
    private static (double Wall, double Cpu) Timed(Action run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        run();
        double wall = watch.Elapsed.TotalSeconds;
        process.Refresh();
        return (wall, (process.TotalProcessorTime - cpu).TotalSeconds);
    }

    private static double Median(IEnumerable<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>
    /// ns per call of three tracepoints of different shapes with nothing listening, their arguments
    /// varying as at a call site: the cost every call site pays when tracing is off.
    /// </summary>
    private static List<(string Name, double Ns)> DisabledPath(long calls)
    {
        if (TraceCapture.Sources.Any(s => s.IsEnabled()))
        {
            throw new InvalidOperationException("a tracepoint source is enabled before the micro-benchmark: the disabled path cannot be measured");
        }
        var site = new CallSite();
        var results = new List<(string, double)>();
        foreach (var (name, loop) in new (string, Action<long>)[]
        {
            ("kvm_entry (int, long)", site.Entry), ("kvm_exit (reason name on)", site.Exit), ("sched_switch (two strings)", site.Switch),
        })
        {
            loop(1_000_000);
            double best = double.MaxValue;
            for (int i = 0; i < 3; i++)
            {
                var watch = Stopwatch.StartNew();
                loop(calls);
                best = Math.Min(best, watch.Elapsed.TotalNanoseconds / calls);
            }
            results.Add((name, best));
        }
        return results;
    }

    /// <summary>ns per <c>kvm_entry</c> with the counting listener of (b) attached, in a loop that does nothing else: the least an enabled event can cost.</summary>
    private static double ListenerFloor(long calls)
    {
        var site = new CallSite();
        using var listener = new CountingListener();
        site.Entry(100_000);
        double best = double.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            var watch = Stopwatch.StartNew();
            site.Entry(calls);
            best = Math.Min(best, watch.Elapsed.TotalNanoseconds / calls);
        }
        if (listener.Count < calls)
        {
            throw new InvalidOperationException($"the listener saw {listener.Count} of {calls} events: the floor was not measured");
        }
        return best;
    }

    private static string F(double value, int decimals) =>
        value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>Call sites shaped like the kernel's: header fields read from objects, then the tracepoint.</summary>
    private sealed class CallSite
    {
        private readonly long _runId = 1;
        private readonly int _vmId = 0;
        private readonly string _name = "guest";
        private readonly string _prev = "bm-fault0";
        private readonly string _next = "bm-work0";

        public void Entry(long n)
        {
            for (long i = 0; i < n; i++)
            {
                KvmTrace.Log.kvm_entry(_runId, _vmId, (int)(i & 3), i, -1, i & 0xff, _name);
            }
        }

        public void Exit(long n)
        {
            for (long i = 0; i < n; i++)
            {
                KvmTrace.Log.kvm_exit(_runId, _vmId, (int)(i & 3), i, ExitReason.EptViolation, i << 12, 3, _name);
            }
        }

        public void Switch(long n)
        {
            for (long i = 0; i < n; i++)
            {
                SchedTrace.Log.sched_switch(_runId, _vmId, (int)(i & 3), i, 7, _prev, 2, 8, _next, _name);
            }
        }
    }

    /// <summary>(b): an in-process listener on every event of every provider, which only counts them.</summary>
    private sealed class CountingListener : TracepointListener
    {
        public long Count { get; private set; }

        protected override void OnTracepoint(EventWrittenEventArgs eventData) => Count++;
    }
}
