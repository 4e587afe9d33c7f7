using Hw;

namespace KvmApf.Tests.Hw;

[TestFixture]
[Category("hw")]
public class IndexedArrayTests
{
    private const int Chunk = IndexedArray<int>.ChunkEntries;

    [Test]
    public void Entries_NeverSet_ReadAsDefault_AtAnyIndex()
    {
        var a = new IndexedArray<int>("slot");
        Assert.That((a[0], a[12345], a[(ulong)Array.MaxLength + 5]), Is.EqualTo((0, 0, 0)));
        Assert.That(a.Bound, Is.Zero);
    }

    [Test]
    public void Set_KeepsEveryEntry_AcrossChunks_AndBoundCoversTheHighestChunk()
    {
        var a = new IndexedArray<long>("slot");
        ulong[] indices = [0, 1, Chunk - 1, Chunk, (3 * Chunk) + 7, (1000 * Chunk) + 1];
        foreach (ulong i in indices)
        {
            a[i] = (long)i + 1;
        }
        foreach (ulong i in indices)
        {
            Assert.That(a[i], Is.EqualTo((long)i + 1), $"index {i}");
        }
        Assert.That(a[2 * Chunk], Is.Zero, "an entry of a chunk that was never made");
        Assert.That(a[(3 * Chunk) + 8], Is.Zero, "an entry beside a set one");
        Assert.That(a.Bound, Is.EqualTo((ulong)1001 * Chunk));
    }

    [Test]
    public void At_SetsInPlace_AndClearDropsEverything()
    {
        var a = new IndexedArray<int>("slot");
        a.At(70_000) = 5;
        a.At(70_000) += 2;
        Assert.That(a[70_000], Is.EqualTo(7));
        a.Clear();
        Assert.That((a[70_000], a.Bound), Is.EqualTo((0, 0UL)));
    }

    [Test]
    public void Set_BeyondAnyArray_IsRefusedWithTheIndex()
    {
        var a = new IndexedArray<int>("gfn");
        Assert.That(() => a[1UL << 40] = 1,
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("gfn 10000000000"));
    }
}
