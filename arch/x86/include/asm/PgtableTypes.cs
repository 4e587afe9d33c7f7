namespace Linux;

/// <summary>arch/x86/include/asm/pgtable_types.h and pgtable_64.h: PTE bits and the swap-entry encoding.</summary>
public static class Pgtable
{
    public const int PAGE_SHIFT = 12;
    public const ulong PAGE_SIZE = 1UL << PAGE_SHIFT;
    public const ulong _PAGE_PRESENT = 1UL << 0;
    public const ulong _PAGE_RW = 1UL << 1;
    public const ulong _PAGE_USER = 1UL << 2;
    public const ulong _PAGE_ACCESSED = 1UL << 5;
    public const ulong _PAGE_DIRTY = 1UL << 6;
    public const ulong PTE_PFN_MASK = 0x000F_FFFF_FFFF_F000UL;

    /// <summary>Bits of a table entry that points to the next level (present, writable, user).</summary>
    public const ulong _PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;

    public static bool PtePresent(ulong pte) => (pte & _PAGE_PRESENT) != 0;

    public static bool PteNone(ulong pte) => pte == 0;

    public static bool PteWrite(ulong pte) => (pte & _PAGE_RW) != 0;

    public static ulong PtePfn(ulong pte) => (pte & PTE_PFN_MASK) >> PAGE_SHIFT;

    /// <summary>mk_pte(): a present user PTE for <paramref name="pfn"/>.</summary>
    public static ulong MkPte(ulong pfn, bool write) =>
        (pfn << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (write ? _PAGE_RW | _PAGE_DIRTY : 0);

    /// <summary>swp_entry_to_pte(): a non-present PTE carrying a swap entry (type in bits 1–5, offset from bit 9).</summary>
    public static ulong SwpEntryToPte(SwpEntry entry) => ((ulong)entry.Type << 1) | (entry.Offset << 9);

    /// <summary>pte_to_swp_entry().</summary>
    public static SwpEntry PteToSwpEntry(ulong pte) => new((int)((pte >> 1) & 0x1f), pte >> 9);
}

/// <summary>include/linux/swap.h: swp_entry_t, a swap device and a slot on it.</summary>
public readonly record struct SwpEntry(int Type, ulong Offset)
{
    public override string ToString() => $"swap {Type}:{Offset}";
}
