using Hw;
using Linux;

// Not KvmApf.Tests.Kernel: a namespace of that name would hide Linux.Kernel from every KvmApf.Tests.* file.
namespace KvmApf.Tests.Mm;

/// <summary>
/// The page allocator: a frame keeps its struct page for good, as mem_map does in Linux, so a
/// freed frame comes back with the same <see cref="Page"/>, in the state of a free page; and a
/// page that is still mapped or on an LRU list is not freed (free_pages_check()).
/// </summary>
[TestFixture, Category("patch-00")]
public sealed class PageAllocTests
{
    private static Kernel Host()
    {
        var loop = new EventLoop();
        var ram = new PhysicalMemory();
        var kernel = new Kernel(Kconfig.Host, loop, new Rng(1).Split("host"), new CostModel(), [new X86Cpu(0, loop, ram, new CostModel())], ram);
        kernel.MemInit(16, 24);
        return kernel;
    }

    [Test]
    public void FreedFrame_ComesBackWithItsStructPage_InTheStateOfAFreePage()
    {
        var kernel = Host();
        var page = kernel.AllocPage()!;
        ulong pfn = page.Pfn;
        page.Set(PageFlags.PG_dirty | PageFlags.PG_uptodate | PageFlags.PG_swapbacked);
        page.Private = new SwpEntry(0, 7);
        page.Index = 0x1000;
        page.MemCgroup = new MemCgroup("t", 1 << 20);
        kernel.__FreePage(page);
        Assert.That(kernel.PfnToPage(pfn), Is.Null, "a free frame has no page in use");

        var again = kernel.AllocPage()!;

        Assert.That(again, Is.SameAs(page), "the last frame freed is the first handed out, with its struct page");
        Assert.That(kernel.PfnToPage(pfn), Is.SameAs(again));
        Assert.That((again.Flags, again.Private, again.Index, again.MemCgroup, again.Mapping, again.Mapcount),
            Is.EqualTo((PageFlags.None, default(SwpEntry), 0UL, (MemCgroup?)null, (MmStruct?)null, 0)));
    }

    [Test]
    public void FreeingAMappedPage_OrOneOnTheLru_IsABadPageState_AndAFreedPageCannotBeFreedAgain()
    {
        var kernel = Host();
        var mapped = kernel.AllocPage()!;
        mapped.Mapcount = 1;
        Assert.That(() => kernel.__FreePage(mapped), Throws.InvalidOperationException.With.Message.Contains("bad page state"));

        var onLru = kernel.AllocPage()!;
        new PageLru().AddFirst(onLru);
        Assert.That(() => kernel.__FreePage(onLru), Throws.InvalidOperationException.With.Message.Contains("on an LRU list"));

        var page = kernel.AllocPage()!;
        kernel.__FreePage(page);
        Assert.That(() => kernel.__FreePage(page), Throws.InvalidOperationException.With.Message.Contains("double free"));
    }

    [TestCase(PageFlags.PG_locked)]
    [TestCase(PageFlags.PG_writeback)]
    [TestCase(PageFlags.PG_swapcache)]
    [TestCase(PageFlags.PG_lru)]
    public void FreeingAPageThatIsLockedUnderIoOrInTheSwapCache_IsABadPageState(PageFlags flag)
    {
        var kernel = Host();
        var page = kernel.AllocPage()!;
        page.Set(flag | PageFlags.PG_dirty);

        Assert.That(() => kernel.__FreePage(page), Throws.InvalidOperationException.With.Message.Contains("bad page state"));

        page.Clear(flag);
        Assert.That(() => kernel.__FreePage(page), Throws.Nothing, "a dirty page may be freed: its content is dropped");
    }
}
