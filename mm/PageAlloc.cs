namespace Linux;

// mm/page_alloc.c: the buddy allocator, reduced to a free list of single frames. The host's
// physical memory is as large as the machine's (the cgroup is what limits the VMM); the
// guest's is its RAM minus what its kernel keeps for itself.
public sealed partial class Kernel
{
    private readonly Stack<ulong> _freeFrames = new();
    private readonly Dictionary<ulong, Page> _memMap = [];
    private ulong _nextFrame;
    private ulong _lastFrame = ulong.MaxValue;

    /// <summary>Frames in use.</summary>
    public long NrUsedPages => _memMap.Count;

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
        var page = new Page(pfn);
        _memMap.Add(pfn, page);
        return page;
    }

    /// <summary>__free_pages(): returns the frame, dropping any content it held.</summary>
    [Port("include/linux/gfp.h", "__free_page")]
    public void __FreePage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (!_memMap.Remove(page.Pfn))
        {
            throw new InvalidOperationException($"{Name}: double free of {page}");
        }
        Ram?.PutFrame(page.Pfn, null);
        _freeFrames.Push(page.Pfn);
    }

    /// <summary>pfn_to_page().</summary>
    public Page? PfnToPage(ulong pfn) => _memMap.GetValueOrDefault(pfn);
}
