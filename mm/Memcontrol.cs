using Hw;

namespace Linux;

/// <summary>mm/memcontrol.c: struct mem_cgroup, with its resource counter and its LRU.</summary>
public sealed class MemCgroup(string name, long limitBytes)
{
    public string Name { get; } = name;

    /// <summary>res.limit, bytes.</summary>
    public long Limit { get; set; } = limitBytes;

    /// <summary>res.usage, bytes: every page charged, swap cache included.</summary>
    public long Usage { get; set; }

    /// <summary>res.max_usage, bytes.</summary>
    public long MaxUsage { get; set; }

    /// <summary>Protected by the zone's lru_lock: the cgroup's pages, oldest at the tail (a CLOCK; see vmscan).</summary>
    public LinkedList<Page> Lru { get; } = new();

    /// <summary>Pages reclaimed (freed) from the cgroup.</summary>
    public long Reclaimed { get; set; }

    /// <summary>Times a charge had to wait for writeback to free memory.</summary>
    public long WritebackWaits { get; set; }
}

// mm/memcontrol.c: charging pages to the memory cgroup and reclaiming when over the limit.
public sealed partial class Kernel
{
    /// <summary>Tasks waiting for writeback to bring a cgroup under its limit.</summary>
    private readonly WaitQueueHead _writebackWait = new();

    /// <summary>
    /// mem_cgroup_charge_common(): charges one page to <paramref name="mem"/>, reclaiming from the
    /// cgroup while the charge would exceed the limit. Sleeps when reclaim has to wait for
    /// writeback (2.6.32 retries reclaim and throttles in congestion_wait; the port waits for
    /// the next writeback completion instead, and never invokes the OOM killer).
    /// </summary>
    [Port("mm/memcontrol.c", "mem_cgroup_charge_common")]
    public async SimTask MemCgroupChargeCommon(Page page, MemCgroup mem)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentNullException.ThrowIfNull(mem);
        MightSleep();
        while (mem.Usage + (long)Pgtable.PAGE_SIZE > mem.Limit)
        {
            int freed = TryToFreeMemCgroupPages(mem);
            if (freed == 0 && mem.Usage + (long)Pgtable.PAGE_SIZE > mem.Limit)
            {
                mem.WritebackWaits++;
                long before = mem.Usage;
                await WaitEvent(_writebackWait, () => mem.Usage < before || mem.Usage + (long)Pgtable.PAGE_SIZE <= mem.Limit);
            }
        }
        mem.Usage += (long)Pgtable.PAGE_SIZE;
        mem.MaxUsage = Math.Max(mem.MaxUsage, mem.Usage);
        page.MemCgroup = mem;
    }

    /// <summary>
    /// The charge of a caller that must not sleep nor start I/O (get_user_pages_noio, patch 6):
    /// charges if the page fits under the limit now, else fails, leaving reclaim (and the swap
    /// writes it starts) to the synchronous path.
    /// </summary>
    [Port("mm/memcontrol.c", "mem_cgroup_try_charge_swapin", Patches = [6])]
    public static bool MemCgroupTryChargeSwapin(Page page, MemCgroup mem)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentNullException.ThrowIfNull(mem);
        if (mem.Usage + (long)Pgtable.PAGE_SIZE > mem.Limit)
        {
            return false;
        }
        mem.Usage += (long)Pgtable.PAGE_SIZE;
        mem.MaxUsage = Math.Max(mem.MaxUsage, mem.Usage);
        page.MemCgroup = mem;
        return true;
    }

    /// <summary>mem_cgroup_uncharge_page(): the page is freed.</summary>
    [Port("mm/memcontrol.c", "mem_cgroup_uncharge_page")]
    public void MemCgroupUnchargePage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.MemCgroup is not { } mem)
        {
            return;
        }
        mem.Usage -= (long)Pgtable.PAGE_SIZE;
        page.MemCgroup = null;
        if (_writebackWait.Active)
        {
            __WakeUp(_writebackWait, nrExclusive: 0);
        }
    }

    /// <summary>Puts a new page at the head of its cgroup's LRU (lru_cache_add_lru).</summary>
    [Port("mm/swap.c", "lru_cache_add_lru")]
    public static void LruCacheAddLru(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.MemCgroup is not { } mem || page.LruNode is not null)
        {
            return;
        }
        page.LruNode = mem.Lru.AddFirst(page);
        page.Set(PageFlags.PG_lru);
    }

    /// <summary>Takes a page off its LRU (del_page_from_lru).</summary>
    public static void DelPageFromLru(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.LruNode is { } node)
        {
            node.List!.Remove(node);
            page.LruNode = null;
            page.Clear(PageFlags.PG_lru);
        }
    }

    /// <summary>mark_page_accessed(): the reference that gives the page its second chance in reclaim.</summary>
    [Port("mm/swap.c", "mark_page_accessed")]
    public static void MarkPageAccessed(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.Set(PageFlags.PG_referenced);
    }
}
