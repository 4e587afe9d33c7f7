namespace Linux;

// arch/x86/mm/gup.c: lockless get_user_pages.
public sealed partial class Kernel
{
    /// <summary>
    /// get_user_pages_fast() for one page: walks the page table without taking mmap_sem and never
    /// sleeps. Returns null when the page is not mapped (or not writable for a write): the caller
    /// then falls back to get_user_pages.
    /// </summary>
    [Port("arch/x86/mm/gup.c", "get_user_pages_fast")]
    public Page? GetUserPagesFast(MmStruct mm, ulong start, bool write) => __GetUserPagesFast(mm, start, write);

    /// <summary>
    /// __get_user_pages_fast() (exported by patch 5 for KVM): the lockless walk itself, safe to
    /// call where sleeping is not allowed; null when the page is not mapped.
    /// </summary>
    [Port("arch/x86/mm/gup.c", "__get_user_pages_fast", Patches = [5])]
    public Page? __GetUserPagesFast(MmStruct mm, ulong start, bool write) => FollowPage(mm, start, write);
}
