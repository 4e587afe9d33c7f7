using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The translation cache against a set: random fills, INVLPGs and flushes, over a small page
/// range (pages sharing 64-bit words, words filled in one generation and read in another), across
/// chunk and directory boundaries, and over the whole canonical space, must leave the same pages
/// cached. Pages of the upper canonical half (the guest kernel's direct map) share the cache with
/// user pages.
/// </summary>
[TestFixture]
[Category("hw")]
public class TlbTests
{
    /// <summary>The page of 0xFFFF_8800_0000_0000, where a guest kernel maps physical memory.</summary>
    private const ulong KernelHalf = 0xFFFF_8800_0000_0000UL >> 12;

    [TestCase(1UL, 64UL, 0UL)]
    [TestCase(2UL, 600UL, 0UL)]
    [TestCase(3UL, 5000UL, 0UL)]
    [TestCase(4UL, 600UL, KernelHalf)]
    [TestCase(5UL, 600UL, (1UL << 15) - 300)] // across two chunks
    [TestCase(6UL, 600UL, (1UL << 29) - 300)] // across the top directory level
    public void RandomFillsRemovesAndFlushes_MatchASet(ulong seed, ulong pages, ulong firstPage)
    {
        var rng = new Rng(seed);
        var tlb = new Tlb();
        var model = new HashSet<ulong>();
        for (int step = 0; step < 40_000; step++)
        {
            ulong vpn = firstPage + rng.NextBelow(pages);
            RandomOperation(rng, tlb, model, vpn, fillPercent: 60);
            if (step % 97 == 0)
            {
                for (ulong p = firstPage; p < firstPage + pages; p++)
                {
                    Assert.That(tlb.Contains(p), Is.EqualTo(model.Contains(p)), $"step {step}: page {p:x}");
                }
                Assert.That(tlb.Count, Is.EqualTo(model.Count), $"step {step}: count");
            }
        }
    }

    [Test]
    public void RandomPagesOverTheCanonicalSpace_MatchASet()
    {
        var rng = new Rng(7);
        var tlb = new Tlb();
        var model = new HashSet<ulong>();
        var touched = new List<ulong>();
        for (int step = 0; step < 20_000; step++)
        {
            // Reuse a page half of the time, so that removals and repeated fills find something.
            ulong vpn = touched.Count > 0 && rng.NextBelow(2) == 0
                ? touched[(int)rng.NextBelow((ulong)touched.Count)]
                : Canonical(rng.NextBelow(1UL << 36));
            touched.Add(vpn);
            RandomOperation(rng, tlb, model, vpn, fillPercent: 70);
        }
        using (Assert.EnterMultipleScope())
        {
            Assert.That(touched.Where(tlb.Contains).Distinct(), Is.EquivalentTo(model));
            Assert.That(tlb.Count, Is.EqualTo(model.Count));
        }
    }

    /// <summary>Fills <paramref name="vpn"/> (<paramref name="fillPercent"/>% of the time), drops it (most of the rest) or flushes (1%), in the TLB and the model alike.</summary>
    private static void RandomOperation(Rng rng, Tlb tlb, HashSet<ulong> model, ulong vpn, ulong fillPercent)
    {
        ulong roll = rng.NextBelow(100);
        if (roll < fillPercent)
        {
            tlb.Add(vpn);
            model.Add(vpn);
        }
        else if (roll < 99)
        {
            tlb.Remove(vpn);
            model.Remove(vpn);
        }
        else
        {
            tlb.Flush();
            model.Clear();
        }
    }

    /// <summary>A 36-bit page number as the page of a canonical address: bit 35 extended into bits 36-51.</summary>
    private static ulong Canonical(ulong page36) =>
        (page36 & (1UL << 35)) != 0 ? page36 | (((1UL << 17) - 1) << 35) : page36;

    [Test]
    public void Flush_DropsEveryPage_OfEveryChunk()
    {
        var tlb = new Tlb();
        for (ulong p = 0; p < 100_000; p++)
        {
            tlb.Add(p);
        }
        tlb.Flush();
        Assert.That(Enumerable.Range(0, 100_000).Any(p => tlb.Contains((ulong)p)), Is.False);
        tlb.Add(7);
        Assert.That(tlb.Contains(7) && tlb.Count == 1, Is.True);
    }

    [Test]
    public void UserAndKernelHalfPagesWithTheSameLowBits_AreDistinct()
    {
        var tlb = new Tlb();
        tlb.Add(KernelHalf | 5);
        Assert.That(tlb.Contains(5), Is.False);
        tlb.Add(5);
        tlb.Remove(KernelHalf | 5);
        Assert.That((tlb.Contains(5), tlb.Contains(KernelHalf | 5)), Is.EqualTo((true, false)));
    }

    [Test]
    public void NonCanonicalPage_IsRefused()
    {
        var tlb = new Tlb();
        Assert.That(() => tlb.Add(0x0000_8000_0000_0000UL >> 12), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
