using Hw;

namespace Linux;

// mm/filemap.c: the page lock and writeback waits.
public sealed partial class Kernel
{
    /// <summary>PAGE_WAIT_TABLE_BITS: the zone's table of page wait queues has 2^8 entries here.</summary>
    private const int PageWaitTableBits = 8;

    private readonly WaitQueueHead[] _pageWaitTable = [.. Enumerable.Range(0, 1 << PageWaitTableBits).Select(_ => new WaitQueueHead())];

    /// <summary>
    /// page_waitqueue(): pages share hashed wait queues (zone->wait_table) instead of each having
    /// one; a waker wakes every waiter of the bucket and each rechecks its own page.
    /// </summary>
    [Port("mm/filemap.c", "page_waitqueue")]
    private WaitQueueHead PageWaitqueue(Page page) => _pageWaitTable[Hash32((uint)page.Pfn ^ (uint)(page.Pfn >> 32), PageWaitTableBits)];

    /// <summary>trylock_page().</summary>
    public static bool TrylockPage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.Test(PageFlags.PG_locked))
        {
            return false;
        }
        page.Set(PageFlags.PG_locked);
        return true;
    }

    /// <summary>lock_page() → __lock_page(): sleeps until the page lock is free and takes it.</summary>
    [Port("include/linux/pagemap.h", "lock_page")]
    public async SimTask LockPage(Page page)
    {
        MightSleep();
        while (!TrylockPage(page))
        {
            await WaitEvent(PageWaitqueue(page), () => !page.Test(PageFlags.PG_locked));
        }
    }

    /// <summary>unlock_page(): releases the lock and wakes its waiters.</summary>
    [Port("mm/filemap.c", "unlock_page")]
    public void UnlockPage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (!page.TestClear(PageFlags.PG_locked))
        {
            throw new InvalidOperationException($"{Name}: unlock of unlocked {page}");
        }
        __WakeUp(PageWaitqueue(page), nrExclusive: 0);
    }

    /// <summary>end_page_writeback().</summary>
    [Port("mm/filemap.c", "end_page_writeback")]
    public void EndPageWriteback(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.Clear(PageFlags.PG_writeback);
        __WakeUp(PageWaitqueue(page), nrExclusive: 0);
    }
}
