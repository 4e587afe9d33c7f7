using Hw;
using Linux;

// Not KvmApf.Tests.Kernel: a namespace of that name would hide Linux.Kernel from every KvmApf.Tests.* file.
namespace KvmApf.Tests.Mm;

/// <summary>
/// The memory cgroup's LRU, a list linked through the pages themselves, against a
/// <see cref="LinkedList{T}"/>: random adds, removals and rotations keep the same order from head
/// to tail and from tail to head, and PG_lru says exactly which pages are on it.
/// </summary>
[TestFixture, Category("patch-00")]
public sealed class PageLruTests
{
    [TestCase(1UL)]
    [TestCase(2UL)]
    public void RandomAddsRemovesAndRotations_KeepTheOrderOfALinkedList(ulong seed)
    {
        var rng = new Rng(seed);
        var pages = Enumerable.Range(0, 40).Select(i => new Page((ulong)i)).ToArray();
        var lru = new PageLru();
        var model = new LinkedList<Page>();
        for (int step = 0; step < 5_000; step++)
        {
            var page = pages[rng.NextBelow((ulong)pages.Length)];
            bool on = model.Contains(page);
            switch (rng.NextBelow(3))
            {
                case 0 when !on:
                    lru.AddFirst(page);
                    model.AddFirst(page);
                    break;
                case 1 when on:
                    lru.Remove(page);
                    model.Remove(page);
                    break;
                case 2 when on:
                    lru.MoveToFirst(page);
                    model.Remove(page);
                    model.AddFirst(page);
                    break;
            }
            Assert.That(Forward(lru), Is.EqualTo(model.ToList()), $"step {step}: head to tail");
            Assert.That(Backward(lru), Is.EqualTo(model.Reverse().ToList()), $"step {step}: tail to head");
            Assert.That(lru.Count, Is.EqualTo(model.Count), $"step {step}: count");
            Assert.That(pages.Where(p => p.Test(PageFlags.PG_lru)), Is.EquivalentTo(model), $"step {step}: PG_lru");
        }
    }

    [Test]
    public void AddingAPageTwice_OrRemovingOneThatIsNotThere_Throws()
    {
        var lru = new PageLru();
        var page = new Page(1);
        lru.AddFirst(page);
        Assert.That(() => lru.AddFirst(page), Throws.InvalidOperationException);
        Assert.That(() => new PageLru().Remove(page), Throws.InvalidOperationException);
    }

    private static List<Page> Forward(PageLru lru)
    {
        var list = new List<Page>();
        for (var p = lru.First; p is not null; p = Next(p))
        {
            list.Add(p);
        }
        return list;
    }

    private static List<Page> Backward(PageLru lru)
    {
        var list = new List<Page>();
        for (var p = lru.Last; p is not null; p = Prev(p))
        {
            list.Add(p);
        }
        return list;
    }

    private static Page? Next(Page page) => page.LruNext;

    private static Page? Prev(Page page) => page.LruPrev;
}
