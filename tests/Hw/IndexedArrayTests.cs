using Hw;

namespace KvmApf.Tests.Hw;

[TestFixture]
[Category("hw")]
public class IndexedArrayTests
{
    [Test]
    public void EnsureIndex_GrowsToHoldTheIndex_AtLeastDoubling_AndKeepsTheContent()
    {
        int[] a = [1, 2, 3, 4];
        IndexedArray.EnsureIndex(ref a, 5, "slot");
        Assert.That(a, Is.EqualTo(new[] { 1, 2, 3, 4, 0, 0, 0, 0 }));
        IndexedArray.EnsureIndex(ref a, 100, "slot");
        Assert.That((a.Length, a[3]), Is.EqualTo((101, 4)));
        var same = a;
        IndexedArray.EnsureIndex(ref a, 100, "slot");
        Assert.That(a, Is.SameAs(same));
    }

    [Test]
    public void EnsureIndex_BeyondAnyArray_IsRefusedWithTheIndex()
    {
        int[] a = [0];
        Assert.That(() => IndexedArray.EnsureIndex(ref a, 1UL << 40, "gfn"),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("gfn 10000000000"));
    }
}
