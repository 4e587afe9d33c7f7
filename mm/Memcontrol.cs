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
    public PageLru Lru { get; } = new();

    /// <summary>Pages reclaimed (freed) from the cgroup.</summary>
    public long Reclaimed { get; set; }

    /// <summary>Times a charge had to wait for writeback to free memory.</summary>
    public long WritebackWaits { get; set; }
}

/// <summary>
/// A list of pages linked through their own <c>page->lru</c> (a <c>list_head</c>), head first:
/// adding, removing and rotating a page allocate nothing. A page is on a list exactly when it
/// has PG_lru.
/// </summary>
public sealed class PageLru
{
    public int Count { get; private set; }

    /// <summary>The most recently added page.</summary>
    public Page? First { get; private set; }

    /// <summary>The oldest page.</summary>
    public Page? Last { get; private set; }

    /// <summary>list_add(): links <paramref name="page"/> at the head.</summary>
    public void AddFirst(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.OnLru is not null)
        {
            throw new InvalidOperationException($"{page} is already on an LRU list");
        }
        page.LruPrev = null;
        page.LruNext = First;
        if (First is not null)
        {
            First.LruPrev = page;
        }
        else
        {
            Last = page;
        }
        First = page;
        page.OnLru = this;
        page.Set(PageFlags.PG_lru);
        Count++;
    }

    /// <summary>list_del(): unlinks <paramref name="page"/>.</summary>
    public void Remove(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (!ReferenceEquals(page.OnLru, this))
        {
            throw new InvalidOperationException($"{page} is not on this LRU list");
        }
        if (page.LruPrev is { } prev)
        {
            prev.LruNext = page.LruNext;
        }
        else
        {
            First = page.LruNext;
        }
        if (page.LruNext is { } next)
        {
            next.LruPrev = page.LruPrev;
        }
        else
        {
            Last = page.LruPrev;
        }
        page.LruPrev = null;
        page.LruNext = null;
        page.OnLru = null;
        page.Clear(PageFlags.PG_lru);
        Count--;
    }

    /// <summary>list_move(): <paramref name="page"/> goes to the head.</summary>
    public void MoveToFirst(Page page)
    {
        Remove(page);
        AddFirst(page);
    }
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
                await WaitForWriteback(mem);
            }
        }
        mem.Usage += (long)Pgtable.PAGE_SIZE;
        mem.MaxUsage = Math.Max(mem.MaxUsage, mem.Usage);
        page.MemCgroup = mem;
    }

    /// <summary>Sleeps until writeback has uncharged a page of <paramref name="mem"/> or brought it under its limit.</summary>
    private SimTask WaitForWriteback(MemCgroup mem)
    {
        long before = mem.Usage;
        return WaitEvent(_writebackWait, () => mem.Usage < before || mem.Usage + (long)Pgtable.PAGE_SIZE <= mem.Limit);
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
        if (page.MemCgroup is not { } mem || page.OnLru is not null)
        {
            return;
        }
        mem.Lru.AddFirst(page);
    }

    /// <summary>Takes a page off its LRU (del_page_from_lru).</summary>
    public static void DelPageFromLru(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.OnLru?.Remove(page);
    }

    /// <summary>mark_page_accessed(): the reference that gives the page its second chance in reclaim.</summary>
    [Port("mm/swap.c", "mark_page_accessed")]
    public static void MarkPageAccessed(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.Set(PageFlags.PG_referenced);
    }
}
