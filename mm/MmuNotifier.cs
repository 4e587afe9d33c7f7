namespace Linux;

// mm/mmu_notifier.c: calling the registered secondary MMUs.
public sealed partial class Kernel
{
    [Port("mm/mmu_notifier.c", "mmu_notifier_register")]
    public static void MmuNotifierRegister(IMmuNotifierOps mn, MmStruct mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        mm.MmuNotifiers.Add(mn);
    }

    [Port("mm/mmu_notifier.c", "__mmu_notifier_invalidate_page")]
    public static void __MmuNotifierInvalidatePage(MmStruct mm, ulong address)
    {
        foreach (var mn in mm.MmuNotifiers)
        {
            mn.InvalidatePage(mm, address);
        }
    }

    [Port("mm/mmu_notifier.c", "__mmu_notifier_clear_flush_young")]
    public static bool __MmuNotifierClearFlushYoung(MmStruct mm, ulong address)
    {
        bool young = false;
        foreach (var mn in mm.MmuNotifiers)
        {
            young |= mn.ClearFlushYoung(mm, address);
        }
        return young;
    }
}
