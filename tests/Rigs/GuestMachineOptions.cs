using Hw;

namespace KvmApf.Tests.Rigs;

/// <summary>
/// The machine that <see cref="GuestRig"/> and <see cref="GuestApfRig"/> build: small by default,
/// so a scenario runs in well under a second. Each rig's options add what only that rig has.
/// </summary>
public abstract record GuestMachineOptions
{
    public int Vcpus { get; init; } = 1;

    public long GuestMemBytes { get; init; } = 256 * MiB;

    /// <summary>The memory cgroup limit of the VMM process.</summary>
    public long MemLimitBytes { get; init; } = 128 * MiB;

    /// <summary>EPT (true) or shadow paging built by paging_tmpl (false).</summary>
    public bool Tdp { get; init; } = true;

    public ulong Seed { get; init; } = 1;

    public CostModel Costs { get; init; } = new();
}
