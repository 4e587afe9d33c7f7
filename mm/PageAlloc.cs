using Hw;

namespace Linux;

// mm/page_alloc.c: the buddy allocator, reduced to a free list of single frames. The host's
// physical memory is as large as the machine's (the cgroup is what limits the VMM); the
// guest's is its RAM minus what its kernel keeps for itself.
public sealed partial class Kernel
{
    private readonly Stack<ulong> _freeFrames = new();
    private Page?[] _memMap = new Page?[1024];
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
        ulong pfn;
        if (_freeFrames.Count > 0)
        {
            pfn = _freeFrames.Pop();
        }
        else if (_nextFrame < _lastFrame)
        {
            pfn = _nextFrame++;
        }
        else
        {
            return null;
        }
        // mem_map covers every frame handed out so far; the host's grows with the VMM.
        IndexedArray.EnsureIndex(ref _memMap, pfn, "frame");
        var page = new Page(pfn);
        _memMap[pfn] = page;
        NrUsedPages++;
        return page;
    }

    /// <summary>__free_pages(): returns the frame, dropping any content it held.</summary>
    [Port("include/linux/gfp.h", "__free_page")]
    public void __FreePage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (page.Pfn >= (ulong)_memMap.Length || !ReferenceEquals(_memMap[page.Pfn], page))
        {
            throw new InvalidOperationException($"{Name}: double free of {page}");
        }
        _memMap[page.Pfn] = null;
        NrUsedPages--;
        Ram?.PutFrame(page.Pfn, null);
        _freeFrames.Push(page.Pfn);
    }

    /// <summary>pfn_to_page().</summary>
    public Page? PfnToPage(ulong pfn) => pfn < (ulong)_memMap.Length ? _memMap[pfn] : null;
}
