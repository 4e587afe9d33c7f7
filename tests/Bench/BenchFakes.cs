using KvmApf.Bench;
using KvmApf.Vmm;

namespace KvmApf.Tests.Bench;

/// <summary>Hand-built results and a recording stand-in for <see cref="BenchRunner.Run"/>.</summary>
public sealed class FakeRunner
{
    /// <summary>Thrown for a configuration with async PF on, when set.</summary>
    public Exception? ThrowWhenApfOn { get; init; }

    /// <summary>Thrown for every configuration, when set.</summary>
    public Exception? ThrowAlways { get; init; }

    public List<BenchConfig> Calls { get; } = [];

    /// <summary>The options of each call, in order.</summary>
    public List<RunOptions> Options { get; } = [];

    public BenchResult Run(BenchConfig config, IProgress<double>? progress, RunOptions options)
    {
        Calls.Add(config);
        Options.Add(options);
        progress?.Report(0.5);
        if (ThrowAlways != null)
        {
            throw ThrowAlways;
        }
        if (config.Apf && ThrowWhenApfOn != null)
        {
            throw ThrowWhenApfOn;
        }
        return Result(config, config.Apf ? 2_000 : 1_000);
    }

    /// <summary>A result whose worker i counted <paramref name="counterBase"/> + i and whose vCPUs spent a quarter of the duration in each state.</summary>
    public static BenchResult Result(BenchConfig config, long counterBase = 1_000)
    {
        long quarter = config.DurationNs / 4;
        return new BenchResult(
            config,
            [.. Enumerable.Range(0, config.WorkThreads).Select(i => new WorkerResult($"worker {i}", counterBase + i))],
            [.. Enumerable.Range(0, config.FaultThreads).Select(i => new FaultThreadResult($"fault {i}", 100 + i, 40 + i))],
            [.. Enumerable.Range(0, config.Vcpus).Select(i => new VcpuResult(i, quarter, quarter, quarter, config.DurationNs - (3 * quarter)))],
            new HostResult(MajorFaults: 11, SwapReads: 12, SwapWrites: 13, ReclaimedPages: 14, PeakCgroupBytes: 512 * BenchConfig.MiB),
            new ApfResult(NotPresent: config.Apf ? 21 : 0, PageReady: config.Apf ? 20 : 0, WakeAll: 0, SyncFallbacks: 0, MaxOutstanding: config.Apf ? 3 : 0),
            new SimResult(Events: 31, SimNs: config.DurationNs + 1_000, WallMs: 32, SetupWallMs: 20) { Gc = new GcFigures(AllocatedBytes: 3 * BenchConfig.MiB / 2, Collections: 2, PauseMs: 7) },
            new TimeShares(WorkThreadsNs: 60, FaultThreadsNs: 10, GuestKernelNs: 30, HostNs: 1, StallNs: 2, HaltNs: 3));
    }
}

/// <summary>Runs <see cref="App"/> with writers in memory, as the program runs it with a non-interactive console.</summary>
internal static class AppHarness
{
    public static (int Code, string Out, string Err) Invoke(BenchRun runner, params string[] args) =>
        Invoke(runner, interactive: false, args);

    /// <summary><paramref name="interactive"/>: as if both outputs were a terminal.</summary>
    public static (int Code, string Out, string Err) Invoke(BenchRun runner, bool interactive, params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = new App(stdout, stderr, runner, interactive).Main(args);
        return (code, stdout.ToString(), stderr.ToString());
    }

    public static (int Code, string Out, string Err) Invoke(params string[] args) =>
        Invoke(new FakeRunner().Run, args);

    public static string[] Lines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
}
