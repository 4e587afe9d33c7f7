using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// Host RAM (hw/Memory.cs): sparse storage where only frames holding non-zero content cost
/// memory, frames detached and reinstalled whole (swap-out and swap-in of page tables), and
/// naturally aligned accesses only.
/// </summary>
[TestFixture]
[Category("hw")]
public class PhysicalMemoryTests
{
    private PhysicalMemory _ram = null!;

    [SetUp]
    public void SetUp() => _ram = new PhysicalMemory();

    [TestCase(0x0UL)]
    [TestCase(0x1238UL)]
    [TestCase(0xFF_FFFF_F000UL)] // near 1 TiB: sparse, so no cost
    public void Read_UntouchedMemory_GivesZeroWithoutCreatingFrames(ulong hpa)
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(_ram.ReadU64(hpa), Is.Zero);
            Assert.That(_ram.ReadU32(hpa + 4), Is.Zero);
            Assert.That(_ram.FramesWithContent, Is.Zero);
        }
    }

    [Test]
    public void Write_ZeroToUntouchedFrame_CreatesNothing()
    {
        _ram.WriteU64(0x5000, 0);
        _ram.WriteU32(0x6004, 0);

        Assert.That(_ram.FramesWithContent, Is.Zero);
    }

    [Test]
    public void Write_NonZero_ReadsBackAndCreatesOneFramePerPage()
    {
        _ram.WriteU64(0x5008, 0x1122_3344_5566_7788UL);
        _ram.WriteU32(0x5010, 0xAABB_CCDDU);
        _ram.WriteU64(0x9000, 1);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_ram.ReadU64(0x5008), Is.EqualTo(0x1122_3344_5566_7788UL));
            Assert.That(_ram.ReadU32(0x5008), Is.EqualTo(0x5566_7788U), "little-endian low half");
            Assert.That(_ram.ReadU32(0x500C), Is.EqualTo(0x1122_3344U));
            Assert.That(_ram.ReadU32(0x5010), Is.EqualTo(0xAABB_CCDDU));
            Assert.That(_ram.ReadU64(0x9000), Is.EqualTo(1));
            Assert.That(_ram.ReadU64(0x5000), Is.Zero);
            Assert.That(_ram.FramesWithContent, Is.EqualTo(2));
        }
    }

    [Test]
    public void Write_ZeroOverNonZero_Clears()
    {
        _ram.WriteU64(0x5008, 7);

        _ram.WriteU64(0x5008, 0);

        Assert.That(_ram.ReadU64(0x5008), Is.Zero);
    }

    [Test]
    public void TakeFrame_ThenPutFrameElsewhere_MovesContent()
    {
        _ram.WriteU64(0x5008, 0xDEAD_BEEFUL);

        var content = _ram.TakeFrame(0x5);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(content, Is.Not.Null);
            Assert.That(_ram.ReadU64(0x5008), Is.Zero, "the frame is empty once taken");
            Assert.That(_ram.FramesWithContent, Is.Zero);
        }

        _ram.PutFrame(0x7, content);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(_ram.ReadU64(0x7008), Is.EqualTo(0xDEAD_BEEFUL));
            Assert.That(_ram.FramesWithContent, Is.EqualTo(1));
        }
    }

    [Test]
    public void TakeFrame_UntouchedFrame_GivesNull()
    {
        Assert.That(_ram.TakeFrame(0x42), Is.Null);
    }

    [Test]
    public void PutFrame_Null_EmptiesFrame()
    {
        _ram.WriteU64(0x5000, 3);

        _ram.PutFrame(0x5, null);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_ram.ReadU64(0x5000), Is.Zero);
            Assert.That(_ram.FramesWithContent, Is.Zero);
        }
    }

    private static IEnumerable<TestCaseData> UnalignedAccesses()
    {
        var accesses = new (string Name, Action<PhysicalMemory, ulong> Access, ulong[] Offsets)[]
        {
            ("ReadU64", (ram, a) => ram.ReadU64(a), [1, 4, 0xFFC]),
            ("WriteU64", (ram, a) => ram.WriteU64(a, 1), [1, 4, 0xFFC]),
            ("ReadU32", (ram, a) => ram.ReadU32(a), [1, 2, 0xFFE]),
            ("WriteU32", (ram, a) => ram.WriteU32(a, 1), [1, 2, 0xFFE]),
        };
        foreach (var (name, access, offsets) in accesses)
        {
            foreach (ulong offset in offsets)
            {
                yield return new TestCaseData(access, offset).SetArgDisplayNames(name, $"0x{offset:x}");
            }
        }
    }

    /// <summary>Unaligned accesses to a frame that holds content throw (none of the model's structures is unaligned).</summary>
    [TestCaseSource(nameof(UnalignedAccesses))]
    public void Access_UnalignedInFrameWithContent_Throws(Action<PhysicalMemory, ulong> access, ulong offset)
    {
        _ram.WriteU64(0x3000, 0x55);
        _ram.WriteU64(0x3FF8, 0x55);

        Assert.That(() => access(_ram, 0x3000 + offset), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [TestCase(16)]
    [TestCase(PhysicalMemory.PageSize + 8)]
    public void PutFrame_ContentThatIsNotAPage_IsRefused_AndTheFrameIsLeftAsItWas(int length)
    {
        _ram.WriteU64(0x5008, 7);

        Assert.That(() => _ram.PutFrame(5, new byte[length]), Throws.ArgumentException.With.Message.Contains("not a page"));
        Assert.That(_ram.ReadU64(0x5008), Is.EqualTo(7UL));
        Assert.That(_ram.ReadU64(0x5FF8), Is.Zero, "the last word of the frame is still inside it");
    }
}
