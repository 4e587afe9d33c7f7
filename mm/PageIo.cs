using Hw;

namespace Linux;

/// <summary>include/linux/bio.h: struct bio, one request to the swap device for consecutive slots.</summary>
public sealed class Bio(Kernel kernel, bool write) : IDiskCompletion
{
    public bool Write { get; } = write;

    public List<Page> Pages { get; } = [];

    public void DiskRequestDone(DiskRequest request) => kernel.BioEndIo(this);
}

// mm/page_io.c: swap I/O.
public sealed partial class Kernel
{
    /// <summary>Swap writes queued by one reclaim pass, submitted together (the block layer's plug).</summary>
    private readonly List<Page> _swapPlug = [];

    /// <summary>PSWPIN: pages read from swap, counted when the read is submitted (as swap_readpage does).</summary>
    public long PswpIn { get; private set; }

    /// <summary>PSWPOUT: pages written to swap, counted when the write is started (as swap_writepage does).</summary>
    public long PswpOut { get; private set; }

    /// <summary>swap_writepage(): starts writeback of a dirty swap-cache page.</summary>
    [Port("mm/page_io.c", "swap_writepage")]
    public void SwapWritepage(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        PswpOut++;
        page.Clear(PageFlags.PG_dirty);
        page.Set(PageFlags.PG_writeback);
        SwapDevice!.WriteContent((long)page.Private.Offset, CopyFrame(page.Pfn));
        _swapPlug.Add(page);
    }

    /// <summary>blk_unplug(): submits the queued writes, one request per run of consecutive slots.</summary>
    public void SwapUnplug()
    {
        if (_swapPlug.Count == 0)
        {
            return;
        }
        _swapPlug.Sort(static (a, b) => a.Private.Offset.CompareTo(b.Private.Offset));
        Bio? bio = null;
        ulong next = 0;
        foreach (var page in _swapPlug)
        {
            if (bio is null || page.Private.Offset != next)
            {
                SubmitBio(bio);
                bio = new Bio(this, write: true);
            }
            bio.Pages.Add(page);
            next = page.Private.Offset + 1;
        }
        SubmitBio(bio);
        _swapPlug.Clear();
    }

    /// <summary>swap_readpage(): starts the read of a locked swap-cache page.</summary>
    [Port("mm/page_io.c", "swap_readpage")]
    public void SwapReadpage(Page page)
    {
        PswpIn++;
        var bio = new Bio(this, write: false);
        bio.Pages.Add(page);
        KvmTrace.Log.mm_swap_readpage(TraceRunId, TraceVmId, -1, Now, (long)page.Private.Offset, (long)page.Pfn, Name);
        SubmitBio(bio);
    }

    private void SubmitBio(Bio? bio)
    {
        if (bio is null)
        {
            return;
        }
        SwapDevice!.Submit(new DiskRequest((long)bio.Pages[0].Private.Offset, bio.Pages.Count, bio.Write, bio));
    }

    /// <summary>bio->bi_end_io: the request finished.</summary>
    internal void BioEndIo(Bio bio)
    {
        foreach (var page in bio.Pages)
        {
            if (bio.Write)
            {
                EndSwapBioWrite(page);
            }
            else
            {
                EndSwapBioRead(page);
            }
        }
    }

    /// <summary>end_swap_bio_write(): writeback is over; a page reclaim wrote is freed if nobody mapped it meanwhile.</summary>
    [Port("mm/page_io.c", "end_swap_bio_write")]
    private void EndSwapBioWrite(Page page)
    {
        EndPageWriteback(page);
        RotateReclaimablePage(page);
    }

    /// <summary>end_swap_bio_read(): the page is up to date and unlocked, which wakes whoever waits for it.</summary>
    [Port("mm/page_io.c", "end_swap_bio_read")]
    private void EndSwapBioRead(Page page)
    {
        Ram?.PutFrame(page.Pfn, CopyOf(SwapDevice!.ReadContent((long)page.Private.Offset)));
        page.Set(PageFlags.PG_uptodate);
        UnlockPage(page);
        KvmTrace.Log.mm_swap_read_done(TraceRunId, TraceVmId, -1, Now, (long)page.Private.Offset, (long)page.Pfn, Name);
    }

    private byte[]? CopyFrame(ulong pfn)
    {
        if (Ram?.TakeFrame(pfn) is not { } content)
        {
            return null;
        }
        Ram.PutFrame(pfn, content);
        return (byte[])content.Clone();
    }

    private static byte[]? CopyOf(byte[]? content) => content is null ? null : (byte[])content.Clone();
}
