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
    /// <summary>Async PF: the series' host with a PV guest that enables it. False until the series is in.</summary>
    public bool Apf { get; init; }
    public CostModel Costs { get; init; } = new();

    /// <summary>Guest memory the guest kernel keeps for itself (image, memmap, slab), which the array must leave free.</summary>
    public const long GuestKernelReserveBytes = 64 * MiB;

    /// <summary>Checks the configuration; returns the first problem as (option, message), or null.</summary>
    public (string Option, string Message)? Validate()
    {
        if (Vcpus is < 1 or > 1024)
        {
            return ("--vcpus", $"must be between 1 and 1024, got {Vcpus}");
        }
        if (GuestMemBytes < 128 * MiB || GuestMemBytes % 4096 != 0)
        {
            return ("--guest-mem", $"must be a multiple of 4K and at least 128M, got {GuestMemBytes} bytes");
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
        return null;
    }
}
