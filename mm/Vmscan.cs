namespace Linux;

// mm/vmscan.c: page reclaim for a memory cgroup.
//
// The LRU is a CLOCK (second chance) over the cgroup's pages, oldest at the tail: a referenced
// page is rotated to the head with its reference cleared, an unreferenced one is unmapped,
// written to swap if dirty, and freed once clean. Pages get their reference when they are
// faulted in (mark_page_accessed through KVM's kvm_set_pfn_accessed); under EPT nothing
// refreshes it afterwards, because 2010's EPT had no accessed bit and kvm_age_rmapp answers
// "old" for it. So the CLOCK evicts in fault-in order: the pages a fault thread touched longest
// ago go first, and the small hot set that work threads and the guest kernel keep using stays
// resident because it was faulted in last (Documentation/sim-model.md, "Reclaim").
public sealed partial class Kernel
{
    /// <summary>SWAP_CLUSTER_MAX: pages one reclaim pass tries to free.</summary>
    public const int SWAP_CLUSTER_MAX = 32;

    /// <summary>Pages freed by reclaim.</summary>
    public long PgSteal { get; private set; }

    /// <summary>Pages scanned by reclaim.</summary>
    public long PgScan { get; private set; }

    /// <summary>
    /// try_to_free_mem_cgroup_pages(): one reclaim pass over the cgroup's LRU. Returns the pages
    /// freed now; dirty pages are written out and freed when their write completes. Does not
    /// sleep.
    /// </summary>
    [Port("mm/vmscan.c", "try_to_free_mem_cgroup_pages")]
    public int TryToFreeMemCgroupPages(MemCgroup mem)
    {
        ArgumentNullException.ThrowIfNull(mem);
        int reclaimed = 0;
        int started = 0;
        int scanned = 0;
        int maxScan = mem.Lru.Count * 2;
        while (reclaimed + started < SWAP_CLUSTER_MAX && scanned < maxScan && mem.Lru.Last is { } page)
        {
            scanned++;
            switch (ShrinkPageList(page))
            {
                case ShrinkResult.Freed:
                    reclaimed++;
                    break;
                case ShrinkResult.WritebackStarted:
                    started++;
                    Rotate(page);
                    break;
                default:
                    Rotate(page);
                    break;
            }
        }
        SwapUnplug();
        PgScan += scanned;
        if (_current is { } me)
        {
            me.HostWorkNs += scanned * Costs.ReclaimPerPageNs;
        }
        return reclaimed;
    }

    private enum ShrinkResult
    {
        Kept,
        WritebackStarted,
        Freed,
    }

    /// <summary>shrink_page_list() for one page.</summary>
    [Port("mm/vmscan.c", "shrink_page_list")]
    private ShrinkResult ShrinkPageList(Page page)
    {
        if (page.Test(PageFlags.PG_locked) || page.Test(PageFlags.PG_writeback))
        {
            return ShrinkResult.Kept;
        }
        if (PageReferenced(page))
        {
            return ShrinkResult.Kept;
        }
        if (!page.Test(PageFlags.PG_swapcache) && !AddToSwap(page))
        {
            return ShrinkResult.Kept; // swap is full
        }
        TryToUnmapOne(page);
        if (page.Mapcount > 0)
        {
            return ShrinkResult.Kept;
        }
        if (page.Test(PageFlags.PG_dirty))
        {
            // pageout(): write it, and free it when the write completes (PG_reclaim).
            page.Set(PageFlags.PG_reclaim);
            SwapWritepage(page);
            return ShrinkResult.WritebackStarted;
        }
        __RemoveMapping(page);
        return ShrinkResult.Freed;
    }

    /// <summary>__remove_mapping() and the free: the page leaves the swap cache, the LRU and the cgroup.</summary>
    [Port("mm/vmscan.c", "__remove_mapping")]
    private void __RemoveMapping(Page page)
    {
        if (page.MemCgroup is { } mem)
        {
            mem.Reclaimed++;
        }
        DeleteFromSwapCache(page);
        DelPageFromLru(page);
        MemCgroupUnchargePage(page);
        page.Mapping = null;
        __FreePage(page);
        PgSteal++;
    }

    /// <summary>rotate_reclaimable_page(): a page whose reclaim write finished is freed if nobody mapped it meanwhile.</summary>
    [Port("mm/swap.c", "rotate_reclaimable_page")]
    private void RotateReclaimablePage(Page page)
    {
        if (!page.TestClear(PageFlags.PG_reclaim))
        {
            return;
        }
        if (page.Mapcount == 0 && !page.Test(PageFlags.PG_dirty) && !page.Test(PageFlags.PG_locked) && page.Test(PageFlags.PG_swapcache))
        {
            __RemoveMapping(page);
        }
    }

    private static void Rotate(Page page)
    {
        page.OnLru?.MoveToFirst(page);
    }
}
