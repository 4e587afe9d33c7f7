using System.Globalization;
using Hw;

namespace KvmApf.Bench;

/// <summary>One value of <see cref="CostModel"/> by name: how to read it and how to set it.</summary>
public sealed record CostEntry(string Name, Func<CostModel, long> Get, Func<CostModel, long, CostModel> With);

/// <summary>
/// Every value of <see cref="CostModel"/>, under the name that <c>--cost NAME=VALUE</c> takes and
/// that the JSON's <c>config.costs</c> uses; the disk's geometry as <c>Disk.NAME</c>. A table rather
/// than reflection, so that setting an init property stays a plain <c>with</c>; a test checks by
/// reflection that every property of the record is here.
/// </summary>
public static class Costs
{
    public const string DiskPrefix = "Disk.";

    public static readonly IReadOnlyList<CostEntry> All =
    [
        new("VmExitNs", c => c.VmExitNs, (c, v) => c with { VmExitNs = v }),
        new("VmEntryNs", c => c.VmEntryNs, (c, v) => c with { VmEntryNs = v }),
        new("InlineExitNs", c => c.InlineExitNs, (c, v) => c with { InlineExitNs = v }),
        new("HostFaultNs", c => c.HostFaultNs, (c, v) => c with { HostFaultNs = v }),
        new("HostAnonPageNs", c => c.HostAnonPageNs, (c, v) => c with { HostAnonPageNs = v }),
        new("ReclaimPerPageNs", c => c.ReclaimPerPageNs, (c, v) => c with { ReclaimPerPageNs = v }),
        new("GuestEventDeliveryNs", c => c.GuestEventDeliveryNs, (c, v) => c with { GuestEventDeliveryNs = v }),
        new("GuestTickNs", c => c.GuestTickNs, (c, v) => c with { GuestTickNs = v }),
        new("GuestContextSwitchNs", c => c.GuestContextSwitchNs, (c, v) => c with { GuestContextSwitchNs = v }),
        new("GuestPageFaultNs", c => c.GuestPageFaultNs, (c, v) => c with { GuestPageFaultNs = v }),
        new("GuestSyscallNs", c => c.GuestSyscallNs, (c, v) => c with { GuestSyscallNs = v }),
        new("FaultLoopIterationNs", c => c.FaultLoopIterationNs, (c, v) => c with { FaultLoopIterationNs = v }),
        new("IncrementsPerMicrosecond", c => c.IncrementsPerMicrosecond, (c, v) => c with { IncrementsPerMicrosecond = v }),
        new("Disk.MinSeekNs", c => c.Disk.MinSeekNs, (c, v) => c with { Disk = c.Disk with { MinSeekNs = v } }),
        new("Disk.MaxSeekNs", c => c.Disk.MaxSeekNs, (c, v) => c with { Disk = c.Disk with { MaxSeekNs = v } }),
        new("Disk.RotationNs", c => c.Disk.RotationNs, (c, v) => c with { Disk = c.Disk with { RotationNs = v } }),
        new("Disk.BytesPerSecond", c => c.Disk.BytesPerSecond, (c, v) => c with { Disk = c.Disk with { BytesPerSecond = v } }),
        new("Disk.Blocks", c => c.Disk.Blocks, (c, v) => c with { Disk = c.Disk with { Blocks = v } }),
    ];

    /// <summary>
    /// Applies one <c>NAME=VALUE</c> of <c>--cost</c> (name in any case, value a non-negative integer).
    /// Throws <see cref="FormatException"/> with a message for the command line.
    /// </summary>
    public static CostModel Apply(CostModel costs, string assignment)
    {
        int eq = assignment.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0)
        {
            throw new FormatException($"'{assignment}' is not NAME=VALUE (e.g. GuestTickNs=3000)");
        }
        string name = assignment[..eq];
        string text = assignment[(eq + 1)..];
        CostEntry entry = All.FirstOrDefault(e => e.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
            ?? throw new FormatException($"'{name}' is not a cost (one of {string.Join(", ", All.Select(e => e.Name))})");
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
        {
            throw new FormatException($"{entry.Name}: '{text}' is not a non-negative integer");
        }
        return entry.With(costs, value);
    }

    /// <summary>The entries whose value differs from the model's default, as NAME=VALUE.</summary>
    public static IEnumerable<string> Changed(CostModel costs)
    {
        var defaults = new CostModel();
        return All.Where(e => e.Get(costs) != e.Get(defaults))
            .Select(e => $"{e.Name}={e.Get(costs).ToString(CultureInfo.InvariantCulture)}");
    }
}
