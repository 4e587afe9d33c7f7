using Hw;
using KvmApf.Guest;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>What the machine looked like at one instant of <see cref="SwapInScenario"/>.</summary>
public readonly record struct Moment(
    long AtNs,
    long StallNs,
    long GuestModeNs,
    bool InGuestMode,
    long ToucherUserNs,
    long ToucherKernelNs,
    long ToucherSumExec,
    long ToucherVruntime,
    long ToucherHostMajorFaults,
    long HogUserNs,
    long HogKernelNs,
    long HogSumExec,
    bool HogRunnable,
    long VcpuThreadMajFlt,
    long DiskBusyNs,
    int DiskRequests);

/// <summary>
/// A guest page that the host swapped out, and a guest task touching it while a CPU-bound task
/// shares its vCPU. The init program faults in two pages P and Q of a region (P first), then
/// writes far more than the cgroup's limit after them, so that reclaim evicts P, Q and the page
/// tables that map them. Once the writeback is done the limit is raised (so nothing else is
/// evicted while measuring) and Q is touched, which brings the page tables back. Then a hog
/// (computing 1 ms at a time) and a toucher start on the one vCPU; after 10 ms together the
/// toucher stores to P, then computes 1 ms, then stops the hog.
/// </summary>
public sealed class SwapInScenario
{
    /// <summary>A disk whose every non-sequential request costs at least 20 ms, so a swap-in is long next to a 2.5 ms slice.</summary>
    public static CostModel SlowDisk => new()
    {
        Disk = new DiskGeometry { MinSeekNs = 20 * Ms, MaxSeekNs = 20 * Ms },
    };

    /// <summary>The rig: one vCPU, 256 MiB of guest RAM, an 80 MiB limit, the slow disk.</summary>
    public static RigOptions Options(bool tdp) => new()
    {
        Vcpus = 1,
        GuestMemBytes = 256 * MiB,
        MemLimitBytes = 80 * MiB,
        Tdp = tdp,
        Costs = SlowDisk,
    };

    /// <summary>Pages written after P and Q: 96 MiB, enough to push the 48 MiB the guest kernel touched at boot and then P out of an 80 MiB limit.</summary>
    public const ulong PressurePages = 24576;

    private GuestRig _rig = null!;
    private GuestContext? _toucherCtx;
    private GuestContext? _hogCtx;
    private TaskStruct? _toucher;
    private TaskStruct? _hog;
    private bool _stop;
    private bool _measuring;

    public GuestRig Rig => _rig;

    /// <summary>The guest frame behind P.</summary>
    public ulong GfnP { get; private set; }

    /// <summary>The host PTE of P's frame right after P was first written (present).</summary>
    public ulong HostPteBefore { get; private set; }

    /// <summary>The host frames P's sptes pointed at then.</summary>
    public IReadOnlyList<ulong> SptePfnsBefore { get; private set; } = [];

    /// <summary>The host PTE of P's frame once the pressure's writeback is done (a swap entry).</summary>
    public ulong HostPteEvicted { get; private set; }

    /// <summary>Whether any spte still mapped P's frame then.</summary>
    public bool MappedAfterEviction { get; private set; }

    /// <summary>Virtual time the measured part starts (the toucher's store to P is issued later).</summary>
    public long MeasureStartNs { get; private set; }

    /// <summary>Right before the toucher's store to P.</summary>
    public Moment BeforeStore { get; private set; }

    /// <summary>When the read of P's swap slot was submitted and when it completed.</summary>
    public Moment ReadSubmitted { get; private set; }

    public Moment ReadCompleted { get; private set; }

    /// <summary>The read of P's slot, as the disk saw it.</summary>
    public DiskTrace? ReadOfP { get; private set; }

    /// <summary>Right after the store to P completed.</summary>
    public Moment AfterStore { get; private set; }

    /// <summary>After the toucher's next 1 ms of computing.</summary>
    public Moment AfterCompute { get; private set; }

    /// <summary>The host PTE and the spte frames of P's frame right after the store.</summary>
    public ulong HostPteAfter { get; private set; }

    public IReadOnlyList<ulong> SptePfnsAfter { get; private set; } = [];

    /// <summary>The guest frame the toucher's P maps to after the store (the guest's page tables came back intact).</summary>
    public ulong GfnPAfter { get; private set; }

    /// <summary>Builds the machine and runs the scenario to its end.</summary>
    public static SwapInScenario Run(bool tdp)
    {
        var s = new SwapInScenario();
        s._rig = new GuestRig(Options(tdp));
        s._rig.Swap.Submitted += s.OnSubmitted;
        s._rig.Swap.Completed += s.OnCompleted;
        s._rig.Start(s.Init);
        s._rig.RunUntilFinished(60_000 * Ms);
        return s;
    }

    /// <summary>The swap slot P was written to, from <see cref="HostPteEvicted"/>.</summary>
    public ulong SlotOfP => Pgtable.PteToSwpEntry(HostPteEvicted).Offset;

    private async SimTask Init(GuestRig rig, TaskStruct self)
    {
        var ctx = self.Context!;
        var libc = rig.Libc;
        ulong region = await libc.Malloc((PressurePages + 2) * Pgtable.PAGE_SIZE);
        ulong p = region;
        ulong q = region + Pgtable.PAGE_SIZE;
        await ctx.Store(p);
        await ctx.Store(q);
        GfnP = rig.GfnOf(self, p);
        HostPteBefore = rig.HostPte(GfnP);
        SptePfnsBefore = rig.SecondaryPfns(GfnP);

        await ctx.StoreLoop(GuestRig.Sequential(region + (2 * Pgtable.PAGE_SIZE)), (long)PressurePages, rig.Options.Costs.FaultLoopIterationNs);
        await rig.WaitForSwapIdle();
        HostPteEvicted = rig.HostPte(GfnP);
        MappedAfterEviction = rig.SecondaryMapped(GfnP);

        // echo more > memory.limit_in_bytes: nothing is evicted from here on.
        rig.Cgroup.Limit = rig.Cgroup.Usage + (16 * MiB);
        await ctx.Store(q);
        await rig.WaitForSwapIdle();

        var barrier = new PthreadBarrier(3);
        _hog = await libc.PthreadCreate("hog", t => Hog(t, barrier));
        _toucher = await libc.PthreadCreate("toucher", t => Toucher(t, barrier, p));
        _hogCtx = _hog.Context;
        _toucherCtx = _toucher.Context;
        MeasureStartNs = rig.Loop.Now;
        await libc.PthreadBarrierWait(barrier);
    }

    private async SimTask Hog(TaskStruct self, PthreadBarrier barrier)
    {
        while (!_stop)
        {
            await self.Context!.Compute(Ms);
        }
        await _rig.Libc.PthreadBarrierWait(barrier);
    }

    private async SimTask Toucher(TaskStruct self, PthreadBarrier barrier, ulong p)
    {
        var ctx = self.Context!;
        await ctx.Compute(10 * Ms);
        BeforeStore = Snapshot();
        _measuring = true;
        await ctx.Store(p);
        _measuring = false;
        AfterStore = Snapshot();
        HostPteAfter = _rig.HostPte(GfnP);
        SptePfnsAfter = _rig.SecondaryPfns(GfnP);
        GfnPAfter = _rig.GfnOf(self, p);
        await ctx.Compute(Ms);
        AfterCompute = Snapshot();
        _stop = true;
        await _rig.Libc.PthreadBarrierWait(barrier);
    }

    private void OnSubmitted(DiskTrace trace)
    {
        if (_measuring && !trace.Write && trace.Covers(SlotOfP))
        {
            ReadOfP = trace;
            ReadSubmitted = Snapshot();
        }
    }

    private void OnCompleted(DiskTrace trace)
    {
        if (ReferenceEquals(trace, ReadOfP))
        {
            ReadCompleted = Snapshot();
        }
    }

    private Moment Snapshot()
    {
        var cpu = _rig.Cpus[0];
        var t = _toucher!;
        var h = _hog!;
        return new Moment(
            _rig.Loop.Now,
            cpu.Residency[VcpuState.Stall],
            cpu.Residency[VcpuState.Guest],
            cpu.InGuestMode,
            _toucherCtx!.UserNs,
            _toucherCtx.KernelNs,
            t.Se.SumExecRuntime,
            t.Se.Vruntime,
            _toucherCtx.HostMajorFaults,
            _hogCtx!.UserNs,
            _hogCtx.KernelNs,
            h.Se.SumExecRuntime,
            h.State == TaskStates.TASK_RUNNING && h.OnRq,
            _rig.Vcpus[0].Thread.MajFlt,
            _rig.Disk.BusyNs,
            _rig.Swap.Requests.Count);
    }
}
