namespace Linux;

// mm/rmap.c: reverse mapping of anonymous pages. Every VMM page is mapped once, at
// page->index in page->mapping's mm (the port's anon_vma).
public sealed partial class Kernel
{
    /// <summary>
    /// page_referenced(): was the page used since the last scan? The PTE's accessed bit, and the
    /// secondary MMUs through mmu_notifier_clear_flush_young (KVM answers "old" under EPT in
    /// 2010: EPT had no accessed bits). Clears what it tests.
    /// </summary>
    [Port("mm/rmap.c", "page_referenced")]
    public bool PageReferenced(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        bool referenced = page.TestClear(PageFlags.PG_referenced);
        if (page.Mapcount > 0 && page.Mapping is { } mm)
        {
            referenced |= PageReferencedOne(page, mm);
        }
        return referenced;
    }

    /// <summary>page_referenced_one(): ptep_clear_flush_young_notify on the page's one PTE.</summary>
    [Port("mm/rmap.c", "page_referenced_one")]
    private static bool PageReferencedOne(Page page, MmStruct mm)
    {
        bool young = false;
        if (mm.PageTable.PeekPte(page.Index) is { } pte && (pte & Pgtable._PAGE_ACCESSED) != 0)
        {
            mm.PageTable.PokePte(page.Index, pte & ~Pgtable._PAGE_ACCESSED);
            young = true;
        }
        young |= __MmuNotifierClearFlushYoung(mm, page.Index);
        return young;
    }

    /// <summary>
    /// try_to_unmap_one(): replaces the page's PTE by its swap entry, tells the secondary MMUs
    /// (KVM zaps its spte and flushes the TLB), and moves the PTE's dirty bit to the page.
    /// </summary>
    [Port("mm/rmap.c", "try_to_unmap_one")]
    public void TryToUnmapOne(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.Mapcount == 0 || page.Mapping is not { } mm)
        {
            return;
        }
        ulong pte = mm.PageTable.PeekPte(page.Index) ?? 0;
        if (!Pgtable.PtePresent(pte) || Pgtable.PtePfn(pte) != page.Pfn)
        {
            return;
        }
        // ptep_clear_flush_notify()
        mm.PageTable.PokePte(page.Index, 0);
        __MmuNotifierInvalidatePage(mm, page.Index);
        if ((pte & Pgtable._PAGE_DIRTY) != 0)
        {
            page.Set(PageFlags.PG_dirty);
        }
        SwapDuplicate(page.Private);
        mm.PageTable.PokePte(page.Index, Pgtable.SwpEntryToPte(page.Private));
        page.Mapcount--;
        mm.AnonRss--;
    }

    /// <summary>page_add_anon_rmap().</summary>
    [Port("mm/rmap.c", "page_add_anon_rmap")]
    public static void PageAddAnonRmap(Page page, MmStruct mm, ulong address)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentNullException.ThrowIfNull(mm);
        page.Mapping = mm;
        page.Index = address & ~(Pgtable.PAGE_SIZE - 1);
        page.Mapcount++;
        mm.AnonRss++;
    }
}
