namespace Linux;

/// <summary>include/linux/mmu_notifier.h: struct mmu_notifier_ops, the callbacks a secondary MMU (KVM) registers.</summary>
public interface IMmuNotifierOps
{
    /// <summary>The page at <paramref name="address"/> is being unmapped: drop every secondary mapping of it.</summary>
    void InvalidatePage(MmStruct mm, ulong address);

    /// <summary>Start of an invalidation of [start, end).</summary>
    void InvalidateRangeStart(MmStruct mm, ulong start, ulong end);

    /// <summary>End of an invalidation of [start, end).</summary>
    void InvalidateRangeEnd(MmStruct mm, ulong start, ulong end);

    /// <summary>Was the page at <paramref name="address"/> accessed through the secondary MMU since the last call? Clears the bit.</summary>
    bool ClearFlushYoung(MmStruct mm, ulong address);
}
