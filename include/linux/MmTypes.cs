using Hw;

namespace Linux;

/// <summary>include/linux/page-flags.h: the page flags the port uses.</summary>
[Flags]
public enum PageFlags
{
    None = 0,
    PG_locked = 1 << 0,
    PG_referenced = 1 << 2,
    PG_uptodate = 1 << 3,
    PG_dirty = 1 << 4,
    PG_lru = 1 << 5,
    PG_writeback = 1 << 13,
    PG_reclaim = 1 << 17,
    PG_swapcache = 1 << 16,
    PG_swapbacked = 1 << 19,
}

/// <summary>include/linux/mm_types.h: struct page, one per physical frame in use.</summary>
public sealed class Page(ulong pfn)
{
    /// <summary>The frame number (host physical, or guest physical for the guest's pages).</summary>
    public ulong Pfn { get; } = pfn;

    /// <summary>Protected by the page lock and atomic bit operations in Linux.</summary>
    public PageFlags Flags { get; set; }

    /// <summary>_mapcount + 1: number of PTEs mapping the page.</summary>
    public int Mapcount { get; set; }

    /// <summary>page->private for a swap-cache page: its swap entry.</summary>
    public SwpEntry Private { get; set; }

    /// <summary>The anonymous mapping's mm (the port's anon_vma: every VMM page is mapped once).</summary>
    public MmStruct? Mapping { get; set; }

    /// <summary>page->index: the virtual address the anonymous page is mapped at.</summary>
    public ulong Index { get; set; }

    /// <summary>page_cgroup: the memory cgroup the page is charged to.</summary>
    public MemCgroup? MemCgroup { get; set; }

    /// <summary>page->lru: the page's neighbours on its LRU list (protected by the zone's lru_lock).</summary>
    internal Page? LruPrev { get; set; }

    internal Page? LruNext { get; set; }

    /// <summary>The LRU list the page is on, or null.</summary>
    internal PageLru? OnLru { get; set; }

    public bool Test(PageFlags flag) => (Flags & flag) != 0;

    /// <summary>The state of a free frame's struct page (what free_pages_check() expects), before it is handed out again.</summary>
    internal void Reset()
    {
        Flags = PageFlags.None;
        Mapcount = 0;
        Private = default;
        Mapping = null;
        Index = 0;
        MemCgroup = null;
        LruPrev = null;
        LruNext = null;
        OnLru = null;
    }

    public void Set(PageFlags flag) => Flags |= flag;

    public void Clear(PageFlags flag) => Flags &= ~flag;

    /// <summary>TestClearPageX().</summary>
    public bool TestClear(PageFlags flag)
    {
        bool was = Test(flag);
        Flags &= ~flag;
        return was;
    }

    public override string ToString() => $"page pfn {Pfn:x} [{Flags}]";
}

/// <summary>include/linux/mm_types.h: struct vm_area_struct (anonymous, private mappings only).</summary>
public sealed class VmAreaStruct(ulong start, ulong end, bool write)
{
    public ulong VmStart { get; } = start;

    public ulong VmEnd { get; } = end;

    /// <summary>VM_WRITE.</summary>
    public bool Write { get; } = write;

    public bool Contains(ulong address) => address >= VmStart && address < VmEnd;
}

/// <summary>
/// The page tables of an mm. Linux's are x86 page tables in both kernels; the port keeps the
/// guest's in guest RAM (the hardware walks them) and the host's in a table of its own, since
/// the host kernel's memory is not simulated (Documentation/deviations.md).
/// </summary>
public abstract class PageTable
{
    /// <summary>The PTE for <paramref name="address"/>, or 0 when there is none. May sleep (a guest touching its tables).</summary>
    public abstract SimTask<ulong> ReadPte(ulong address);

    /// <summary>
    /// pte_offset_map_lock(), then <c>pte_same()</c> and set_pte_at() under the PTE lock: sets the
    /// PTE for <paramref name="address"/> to <paramref name="pte"/> if it is still
    /// <paramref name="expected"/>, allocating table pages as needed. The comparison and the store
    /// happen at one instant, after any sleep the walk needed; false (nothing written) if another
    /// thread changed the PTE meanwhile.
    /// </summary>
    public abstract SimTask<bool> SetPteIfSame(ulong address, ulong expected, ulong pte);

    /// <summary>The PTE without sleeping, or null if that would need a sleep (gup_fast's lockless walk).</summary>
    public abstract ulong? PeekPte(ulong address);

    /// <summary>Sets an existing PTE without sleeping (ptep_get_and_clear and set_pte_at under the PTE lock); false if that would need a sleep.</summary>
    public abstract bool PokePte(ulong address, ulong pte);
}

/// <summary>include/linux/mm_types.h: struct mm_struct.</summary>
public sealed class MmStruct(PageTable pageTable, ulong pgd)
{
    public PageTable PageTable { get; } = pageTable;

    /// <summary>Physical address of the top-level table (what goes into CR3); 0 for the host's.</summary>
    public ulong Pgd { get; } = pgd;

    public List<VmAreaStruct> Mmap { get; } = [];

    /// <summary>mmu_notifier_mm: the registered notifiers (KVM for the VMM's mm).</summary>
    public List<IMmuNotifierOps> MmuNotifiers { get; } = [];

    /// <summary>The memory cgroup of the mm's owner.</summary>
    public MemCgroup? MemCgroup { get; set; }

    /// <summary>Resident anonymous pages (MM_ANONPAGES).</summary>
    public long AnonRss { get; set; }

    /// <summary>find_vma() for a mapping that contains <paramref name="address"/>.</summary>
    public VmAreaStruct? FindVma(ulong address)
    {
        foreach (var vma in Mmap)
        {
            if (vma.Contains(address))
            {
                return vma;
            }
        }
        return null;
    }
}
