using Hw;

namespace KvmApf.Vmm;

/// <summary>Guest paging mode of the host MMU.</summary>
public enum PagingMode
{
    /// <summary>Two-dimensional paging (EPT).</summary>
    Tdp,
    /// <summary>Shadow paging built by paging_tmpl from the guest's page tables.</summary>
    Shadow,
}

/// <summary>One run of the slides' benchmark: the options of <c>apf-bench run</c> (bench-contract.md).</summary>
public sealed record BenchConfig
{
    public const long KiB = 1024;
    public const long MiB = 1024 * KiB;
    public const long GiB = 1024 * MiB;

    public int Vcpus { get; init; } = 4;
    public long GuestMemBytes { get; init; } = 2 * GiB;
    public long MemLimitBytes { get; init; } = 512 * MiB;
    public int FaultThreads { get; init; } = 4;
    public int WorkThreads { get; init; } = 4;
    public long ArrayBytes { get; init; } = 1 * GiB;
    public long DurationNs { get; init; } = 60_000_000_000;
    public ulong Seed { get; init; } = 1;
    public PagingMode Paging { get; init; } = PagingMode.Tdp;
    /// <summary>Async PF: the series' host with a PV guest that enables it (on, as bench-contract.md says once the series is in).</summary>
    public bool Apf { get; init; } = true;
    public CostModel Costs { get; init; } = new();

    /// <summary>The async PF ABI profile both kernels are built with: "v3" (0x4b564d00, feature 3) or "merged" (0x4b564d02, feature 4).</summary>
    public string Abi { get; init; } = "v3";

    /// <summary>ASYNC_PF_PER_VCPU: outstanding async faults per vCPU before the host falls back to synchronous faults.</summary>
    public int ApfPerVcpu { get; init; } = 64;

    /// <summary>The halt variant (seeds/000): with async PF on, a fault the guest cannot be told of halts the vCPU instead of stalling it.</summary>
    public bool ApfHalt { get; init; }

    /// <summary>The guest is paravirtual (CONFIG_KVM_GUEST): it enables async PF when the host offers it. False models a non-PV guest.</summary>
    public bool GuestPv { get; init; } = true;

    /// <summary>Build the guest with CONFIG_PREEMPT, so it sets send-always and takes async PF in kernel mode (patch 11).</summary>
    public bool GuestPreempt { get; init; }

    /// <summary>Guest memory the guest kernel keeps for itself (image, memmap, slab), which the array must leave free.</summary>
    public const long GuestKernelReserveBytes = 64 * MiB;

    /// <summary>The most guest RAM a run can have: the swap disk holds all of it, and mm/swapfile.c's
    /// swap_map is one array of a byte per slot, which .NET caps below 2^31 elements.</summary>
    public const long MaxGuestMemBytes = 4 * 1024 * GiB;

    /// <summary>The longest measured interval, 1000 hours: simulated time plus the boot budget stays far from 2^63 ns.</summary>
    public const long MaxDurationNs = 1000L * 3600 * 1_000_000_000;

    /// <summary>The largest time a cost may be, ns (1000 s): sums of a few of them stay far from 2^63 ns.</summary>
    public const long MaxCostNs = 1_000_000_000_000;

    /// <summary>The largest swap disk, blocks of 4K: the swap map's limit of <see cref="MaxGuestMemBytes"/>.</summary>
    public const long MaxDiskBlocks = MaxGuestMemBytes / 4096;

    /// <summary>Checks the configuration; returns the first problem as (option, message), or null.</summary>
    public (string Option, string Message)? Validate()
    {
        if (Vcpus is < 1 or > 1024)
        {
            return ("--vcpus", $"must be between 1 and 1024, got {Vcpus}");
        }
        if (GuestMemBytes < 128 * MiB || GuestMemBytes > MaxGuestMemBytes || GuestMemBytes % 4096 != 0)
        {
            return ("--guest-mem", $"must be a multiple of 4K between 128M and 4T, got {GuestMemBytes} bytes");
        }
        if (MemLimitBytes < 64 * MiB)
        {
            return ("--mem-limit", $"must be at least 64M (the VMM itself and the guest kernel's hot pages), got {MemLimitBytes} bytes");
        }
        if (FaultThreads is < 0 or > 4096)
        {
            return ("--fault-threads", $"must be between 0 and 4096, got {FaultThreads}");
        }
        if (WorkThreads is < 0 or > 4096)
        {
            return ("--work-threads", $"must be between 0 and 4096, got {WorkThreads}");
        }
        if (ArrayBytes < 4096 || ArrayBytes % 4096 != 0)
        {
            return ("--array", $"must be a positive multiple of 4K, got {ArrayBytes} bytes");
        }
        if (ArrayBytes > GuestMemBytes - GuestKernelReserveBytes)
        {
            return ("--array", $"{ArrayBytes} bytes does not fit in {GuestMemBytes} bytes of guest memory with the guest kernel's {GuestKernelReserveBytes / MiB}M");
        }
        if (DurationNs <= 0)
        {
            return ("--duration", "must be positive");
        }
        if (DurationNs > MaxDurationNs)
        {
            return ("--duration", $"must be at most 60000m (1000 hours), got {DurationNs} ns");
        }
        if (Abi is not ("v3" or "merged"))
        {
            return ("--abi", $"must be v3 or merged, got '{Abi}'");
        }
        if (ApfPerVcpu is < 1 or > 4096)
        {
            return ("--apf-per-vcpu", $"must be between 1 and 4096, got {ApfPerVcpu}");
        }
        return ValidateCosts();
    }

    private (string Option, string Message)? ValidateCosts()
    {
        var c = Costs;
        var d = c.Disk;
        const long ns = MaxCostNs;
        (string Name, long Value, long Min, long Max)[] rules =
        [
            (nameof(c.VmExitNs), c.VmExitNs, 0, ns), (nameof(c.VmEntryNs), c.VmEntryNs, 0, ns), (nameof(c.InlineExitNs), c.InlineExitNs, 0, ns),
            (nameof(c.HostFaultNs), c.HostFaultNs, 0, ns), (nameof(c.HostAnonPageNs), c.HostAnonPageNs, 0, ns), (nameof(c.ReclaimPerPageNs), c.ReclaimPerPageNs, 0, ns),
            (nameof(c.GuestEventDeliveryNs), c.GuestEventDeliveryNs, 0, ns), (nameof(c.GuestTickNs), c.GuestTickNs, 0, ns),
            (nameof(c.GuestContextSwitchNs), c.GuestContextSwitchNs, 0, ns), (nameof(c.GuestPageFaultNs), c.GuestPageFaultNs, 0, ns),
            (nameof(c.GuestSyscallNs), c.GuestSyscallNs, 0, ns), (nameof(c.FaultLoopIterationNs), c.FaultLoopIterationNs, 1, ns),
            (nameof(c.IncrementsPerMicrosecond), c.IncrementsPerMicrosecond, 0, long.MaxValue),
            ("Disk." + nameof(d.MinSeekNs), d.MinSeekNs, 0, ns), ("Disk." + nameof(d.MaxSeekNs), d.MaxSeekNs, d.MinSeekNs, ns),
            ("Disk." + nameof(d.RotationNs), d.RotationNs, 1, ns), ("Disk." + nameof(d.BytesPerSecond), d.BytesPerSecond, 1, long.MaxValue),
            ("Disk." + nameof(d.Blocks), d.Blocks, 1, MaxDiskBlocks),
        ];
        foreach (var (name, value, min, max) in rules)
        {
            if (value < min)
            {
                return ("--cost", $"{name} must be at least {min}, got {value}");
            }
            if (value > max)
            {
                return ("--cost", $"{name} must be at most {max}, got {value}");
            }
        }
        // bm's work threads count user ns times IncrementsPerMicrosecond (tools/guest/Bm.cs), and the
        // total adds every thread's count: both must fit in 64 bits over the measured interval.
        Int128 perThread = (Int128)DurationNs * c.IncrementsPerMicrosecond;
        if (perThread > long.MaxValue || perThread * Math.Max(1, Vcpus) / 1000 > long.MaxValue)
        {
            return ("--cost", $"IncrementsPerMicrosecond={c.IncrementsPerMicrosecond} overflows bm's 64-bit counters over a {DurationNs} ns --duration");
        }
        return null;
    }
}
