namespace KvmApf.Vmm;

/// <summary>A work thread's final counter (bm's <c>worker N:</c> line).</summary>
public sealed record WorkerResult(string Name, long Counter);

/// <summary>A fault thread's stores and the ones that needed a host swap-in.</summary>
public sealed record FaultThreadResult(string Name, long Accesses, long Faults);

/// <summary>Time of one vCPU over the measured interval, ns; the four add up to the duration.</summary>
public sealed record VcpuResult(int Id, long GuestNs, long HostNs, long StallNs, long HaltNs);

/// <summary>Host memory figures over the measured interval.</summary>
public sealed record HostResult(long MajorFaults, long SwapReads, long SwapWrites, long ReclaimedPages, long PeakCgroupBytes);

/// <summary>Async PF figures (zeros with async PF off).</summary>
public sealed record ApfResult(long NotPresent, long PageReady, long WakeAll, long SyncFallbacks, long MaxOutstanding);

/// <summary>
/// Simulation figures: events processed, all simulated time, wall time. <paramref name="SetupWallMs"/>
/// is the part of the wall time spent before the measured interval: building the machine, booting
/// it and bm's prefault of its array. <see cref="Gc"/> is what the process's garbage collector did
/// meanwhile; like the wall time it is not in the JSON.
/// </summary>
public sealed record SimResult(long Events, long SimNs, long WallMs, long SetupWallMs)
{
    public GcFigures Gc { get; init; }
}

/// <summary>The process's allocations, collections and their pauses over a run's wall time.</summary>
public readonly record struct GcFigures(long AllocatedBytes, int Collections, long PauseMs);

/// <summary>Where guest time went on all vCPUs together, ns, over the measured interval (for the closing figures).</summary>
public sealed record TimeShares(long WorkThreadsNs, long FaultThreadsNs, long GuestKernelNs, long HostNs, long StallNs, long HaltNs);

/// <summary>Everything a run produces; apf-bench writes it as schema kvm-apf/bench/1.</summary>
public sealed record BenchResult(
    BenchConfig Config,
    IReadOnlyList<WorkerResult> Workers,
    IReadOnlyList<FaultThreadResult> FaultThreads,
    IReadOnlyList<VcpuResult> Vcpus,
    HostResult Host,
    ApfResult Apf,
    SimResult Sim,
    TimeShares Shares)
{
    /// <summary>bm's <c>total:</c> line.</summary>
    public long Total => Workers.Sum(w => w.Counter);
}
