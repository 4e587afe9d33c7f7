using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The translation cache against a dictionary: random fills, INVLPGs and flushes over a small
/// page range (so that probe chains collide, wrap around the table and are cut by removals)
/// must leave the same translations visible.
/// </summary>
[TestFixture]
[Category("hw")]
public class TlbTests
{
    [TestCase(1UL, 64UL)]
    [TestCase(2UL, 600UL)]
    [TestCase(3UL, 5000UL)]
    public void RandomFillsRemovesAndFlushes_MatchDictionary(ulong seed, ulong pages)
    {
        var rng = new Rng(seed);
        var tlb = new Tlb();
        var model = new Dictionary<ulong, ulong>();
        for (int step = 0; step < 40_000; step++)
        {
            ulong vpn = rng.NextBelow(pages);
            switch (rng.NextBelow(100))
            {
                case < 60:
                    ulong hpa = rng.NextU64() << 12;
                    tlb.Set(vpn, hpa);
                    model[vpn] = hpa;
                    break;
                case < 99:
                    tlb.Remove(vpn);
                    model.Remove(vpn);
                    break;
                default:
                    tlb.Flush();
                    model.Clear();
                    break;
            }
            if (step % 97 == 0)
            {
                for (ulong p = 0; p < pages; p++)
                {
                    bool cached = tlb.TryGet(p, out ulong got);
                    Assert.That(cached, Is.EqualTo(model.TryGetValue(p, out ulong want)), $"step {step}: page {p} cached");
                    Assert.That(got, Is.EqualTo(want), $"step {step}: page {p}");
                }
                Assert.That(tlb.Count, Is.EqualTo(model.Count), $"step {step}: count");
            }
        }
    }

    [Test]
    public void Flush_DropsEveryTranslation_AndRefillWorks()
    {
        var tlb = new Tlb();
        for (ulong p = 0; p < 1000; p++)
        {
            tlb.Set(p, p << 12);
        }
        tlb.Flush();
        Assert.That(Enumerable.Range(0, 1000).Any(p => tlb.Contains((ulong)p)), Is.False);
        tlb.Set(7, 0x9000);
        Assert.That(tlb.TryGet(7, out ulong hpa) && hpa == 0x9000 && tlb.Count == 1, Is.True);
    }
}
