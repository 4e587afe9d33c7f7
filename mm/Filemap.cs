using Hw;

namespace Linux;

// mm/filemap.c: the page lock and writeback waits.
public sealed partial class Kernel
{
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
            await WaitEvent(page.Wait, () => !page.Test(PageFlags.PG_locked));
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
        __WakeUp(page.Wait, nrExclusive: 0);
    }

    /// <summary>end_page_writeback().</summary>
    [Port("mm/filemap.c", "end_page_writeback")]
    public void EndPageWriteback(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.Clear(PageFlags.PG_writeback);
        __WakeUp(page.Wait, nrExclusive: 0);
    }
}
