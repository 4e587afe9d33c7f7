using Hw;

namespace Linux;

// mm/page_alloc.c: the buddy allocator, reduced to a free list of single frames. The host's
// physical memory is as large as the machine's (the cgroup is what limits the VMM); the
// guest's is its RAM minus what its kernel keeps for itself.
public sealed partial class Kernel
{
    /// <summary>The free frames' struct pages, last freed on top: a frame keeps its struct page for good, as in Linux.</summary>
    private readonly Stack<Page> _freePages = new();
    private readonly IndexedArray<Page?> _memMap = new("frame");
    private ulong _nextFrame;
    private ulong _lastFrame = ulong.MaxValue;

    /// <summary>Frames in use.</summary>
    public long NrUsedPages { get; private set; }

    /// <summary>Sets the range of frames the allocator hands out: [first, last).</summary>
    public void MemInit(ulong firstFrame, ulong lastFrame)
    {
        _nextFrame = firstFrame;
        _lastFrame = lastFrame;
    }

    /// <summary>alloc_page(): a free frame, or null when memory is exhausted.</summary>
    [Port("include/linux/gfp.h", "alloc_page")]
    public Page? AllocPage()
    {
        Page page;
        if (_freePages.Count > 0)
        {
            page = _freePages.Pop();
        }
        else if (_nextFrame < _lastFrame)
        {
            page = new Page(_nextFrame++);
        }
        else
        {
            return null;
        }
        // mem_map covers every frame handed out so far; the host's grows with the VMM.
        _memMap[page.Pfn] = page;
        NrUsedPages++;
        return page;
    }

    /// <summary>PAGE_FLAGS_CHECK_AT_FREE, of the flags the port has.</summary>
    private const PageFlags FlagsCheckAtFree = PageFlags.PG_lru | PageFlags.PG_locked | PageFlags.PG_writeback | PageFlags.PG_swapcache;

    /// <summary>
    /// __free_pages(): returns the frame, dropping any content it held. As in Linux, a second free
    /// of a page is caught only while its frame is free: once the frame is handed out again, the
    /// page is its new owner's.
    /// </summary>
    [Port("include/linux/gfp.h", "__free_page")]
    public void __FreePage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (!ReferenceEquals(_memMap[page.Pfn], page))
        {
            throw new InvalidOperationException($"{Name}: double free of {page}");
        }
        // free_pages_check(): "BUG: Bad page state". A frame keeps its struct page, so a page freed
        // while still mapped, listed, locked, under writeback or in the swap cache would be handed
        // to its next owner with those still pointing at it.
        if (page.Mapcount != 0 || page.OnLru is not null || (page.Flags & FlagsCheckAtFree) != 0)
        {
            throw new InvalidOperationException($"{Name}: bad page state: freeing {page}, mapcount {page.Mapcount}{(page.OnLru is null ? "" : ", on an LRU list")}");
        }
        _memMap[page.Pfn] = null;
        NrUsedPages--;
        Ram?.PutFrame(page.Pfn, null);
        page.Reset();
        _freePages.Push(page);
    }

    /// <summary>pfn_to_page().</summary>
    public Page? PfnToPage(ulong pfn) => _memMap[pfn];
}
