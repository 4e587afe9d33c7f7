using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The run's generator (hw/Rng.cs): SplitMix64 outputs, name-keyed splitting through FNV-1a,
/// and bounded draws. Reference values were computed independently from the published
/// algorithms (SplitMix64: Steele, Lea and Flood 2014; FNV-1a: Fowler, Noll and Vo).
/// </summary>
[TestFixture]
[Category("hw")]
public class RngTests
{
    private static IEnumerable<TestCaseData> SplitMixSequences()
    {
        yield return new TestCaseData(0UL, new[]
        {
            0xE220A8397B1DCDAFUL, 0x6E789E6AA1B965F4UL, 0x06C45D188009454FUL, 0xF88BB8A8724C81ECUL, 0x1B39896A51A8749BUL,
        }).SetName("NextU64_Seed0_MatchesSplitMix64Reference");
        yield return new TestCaseData(1UL, new[]
        {
            0x910A2DEC89025CC1UL, 0xBEEB8DA1658EEC67UL, 0xF893A2EEFB32555EUL, 0x71C18690EE42C90BUL, 0x71BB54D8D101B5B9UL,
        }).SetName("NextU64_Seed1_MatchesSplitMix64Reference");
    }

    [TestCaseSource(nameof(SplitMixSequences))]
    public void NextU64_KnownSeed_MatchesSplitMix64Reference(ulong seed, ulong[] expected)
    {
        var rng = new Rng(seed);

        var actual = Enumerable.Range(0, expected.Length).Select(_ => rng.NextU64()).ToArray();

        Assert.That(actual, Is.EqualTo(expected));
    }

    [TestCase("", 0xCBF29CE484222325UL)]
    [TestCase("a", 0xAF63DC4C8601EC8CUL)]
    [TestCase("foobar", 0x85944171F73967E8UL)]
    [TestCase("\u00e9", 0x0AC21707B7181E01UL)] // two UTF-8 bytes, not one UTF-16 unit
    public void Fnv1a64_KnownString_MatchesTestVector(string text, ulong expected)
    {
        Assert.That(Rng.Fnv1a64(text), Is.EqualTo(expected));
    }

    // Seeds of the split streams: SplitMix64's finalizer applied to (seed ^ FNV-1a(name)).
    [TestCase(0UL, "a", 0x538A21EC5E495B1AUL, 0x6082E4FA4C45E2C7UL)]
    [TestCase(0UL, "b", 0x7534F9A0D6168DDBUL, 0x7863B6F04A4ED52EUL)]
    [TestCase(42UL, "disk", 0xE74A1129C5E819B7UL, 0x714ECAA3129F28C3UL)]
    public void Split_KnownSeedAndName_GivesReferenceStream(ulong seed, string name, ulong first, ulong second)
    {
        var stream = new Rng(seed).Split(name);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stream.NextU64(), Is.EqualTo(first));
            Assert.That(stream.NextU64(), Is.EqualTo(second));
        }
    }

    [Test]
    public void Split_DifferentNames_GiveDifferentStreams()
    {
        var root = new Rng(7);

        var a = Draw(root.Split("a"), 8);
        var b = Draw(root.Split("b"), 8);

        Assert.That(a, Is.Not.EqualTo(b));
    }

    [Test]
    public void Split_SameNameTwice_GivesSameStreamWhateverTheParentDrew()
    {
        var root = new Rng(7);
        var first = Draw(root.Split("a"), 8);

        Draw(root, 3);
        var second = Draw(root.Split("a"), 8);

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void Split_NewComponent_DoesNotMoveParentSequence()
    {
        var plain = Draw(new Rng(99), 4);
        var root = new Rng(99);

        root.Split("added-later");
        var afterSplit = Draw(root, 4);

        Assert.That(afterSplit, Is.EqualTo(plain));
    }

    [TestCase(1UL)]
    [TestCase(2UL)]
    [TestCase(3UL)]
    [TestCase(10UL)]
    [TestCase(1000UL)]
    [TestCase(0x8000_0000_0000_0001UL)]
    [TestCase(ulong.MaxValue)]
    public void NextBelow_Bound_StaysInRange(ulong bound)
    {
        var rng = new Rng(3);

        var draws = Draw(() => rng.NextBelow(bound), 10_000);

        Assert.That(draws, Has.All.LessThan(bound));
    }

    [Test]
    public void NextBelow_Zero_Throws()
    {
        var rng = new Rng(3);

        Assert.That(() => rng.NextBelow(0), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void NextBelow_TenBuckets_EachWithinTenPercentOfExpected()
    {
        var rng = new Rng(12345);
        var counts = new int[10];

        for (int i = 0; i < 100_000; i++)
        {
            counts[rng.NextBelow(10)]++;
        }

        Assert.That(counts, Has.All.InRange(9_000, 11_000));
    }

    /// <summary>
    /// A bound of 3·2^62 is where modulo reduction is most biased: NextU64() % bound would put
    /// half the draws in the lowest third. Lemire's rejection keeps each third at one third.
    /// </summary>
    [Test]
    public void NextBelow_BoundNearTwoToThe64_HasNoModuloBias()
    {
        var rng = new Rng(2024);
        const ulong third = 1UL << 62;
        var counts = new int[3];

        for (int i = 0; i < 30_000; i++)
        {
            counts[rng.NextBelow(3 * third) / third]++;
        }

        Assert.That(counts, Has.All.InRange(9_000, 11_000));
    }

    [TestCase(5L, 5L)]
    [TestCase(-3L, 3L)]
    [TestCase(long.MinValue, long.MaxValue)]
    public void NextInRange_Bounds_StaysWithinInclusiveRange(long min, long max)
    {
        var rng = new Rng(11);

        var draws = Draw(() => rng.NextInRange(min, max), 10_000);

        Assert.That(draws, Has.All.InRange(min, max));
    }

    [Test]
    public void NextInRange_SmallRange_ReachesBothEnds()
    {
        var rng = new Rng(11);

        var draws = Draw(() => rng.NextInRange(-1, 1), 1_000);

        Assert.That(draws, Is.SupersetOf(new long[] { -1, 0, 1 }));
    }

    [Test]
    public void NextInRange_MaxBelowMin_Throws()
    {
        var rng = new Rng(11);

        Assert.That(() => rng.NextInRange(2, 1), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    private static ulong[] Draw(Rng rng, int count) => Draw(rng.NextU64, count);

    private static T[] Draw<T>(Func<T> next, int count) => Enumerable.Range(0, count).Select(_ => next()).ToArray();
}
