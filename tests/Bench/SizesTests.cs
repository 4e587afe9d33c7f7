using KvmApf.Bench;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("apf-bench: SIZE and TIME values of the command line (bench-contract.md)")]
public sealed class SizesTests
{
    private const long K = 1024;

    private static readonly TestCaseData[] ValidSizes =
    [
        new TestCaseData("4096", 4096L),
        new TestCaseData("0", 0L),
        new TestCaseData("1K", K),
        new TestCaseData("1k", K),
        new TestCaseData("512M", 512 * K * K),
        new TestCaseData("2G", 2 * K * K * K),
        new TestCaseData("3T", 3 * K * K * K * K),
        new TestCaseData("512MiB", 512 * K * K),
        new TestCaseData("2gib", 2 * K * K * K),
        new TestCaseData("1KIB", K),
        new TestCaseData("1TiB", K * K * K * K),
        new TestCaseData("8388607T", 8388607 * K * K * K * K),
        new TestCaseData("9223372036854775807", long.MaxValue),
    ];

    private static readonly TestCaseData[] InvalidSizes =
    [
        new TestCaseData("2X", "is not a size"),
        new TestCaseData("", "is not a size"),
        new TestCaseData("G", "is not a size"),
        new TestCaseData("-1G", "is not a size"),
        new TestCaseData("1.5G", "is not a size"),
        new TestCaseData("1 G", "is not a size"),
        new TestCaseData("2GB", "is not a size"),
        new TestCaseData("+2G", "is not a size"),
        new TestCaseData("99999999999T", "is too large"),
        new TestCaseData("8388608T", "is too large"),
        new TestCaseData("9223372036854775808", "is too large"),
    ];

    private static readonly TestCaseData[] ValidTimes =
    [
        new TestCaseData("60s", 60_000_000_000L),
        new TestCaseData("1m", 60_000_000_000L),
        new TestCaseData("5ms", 5_000_000L),
        new TestCaseData("10us", 10_000L),
        new TestCaseData("7ns", 7L),
        new TestCaseData("0s", 0L),
        new TestCaseData("153722867m", 153_722_867L * 60_000_000_000L),
    ];

    private static readonly TestCaseData[] InvalidTimes =
    [
        new TestCaseData("60", "is not a time"),
        new TestCaseData("1h", "is not a time"),
        new TestCaseData("s", "is not a time"),
        new TestCaseData("-1s", "is not a time"),
        new TestCaseData("1.5s", "is not a time"),
        new TestCaseData("60S", "is not a time"),
        new TestCaseData("", "is not a time"),
        new TestCaseData("99999999999m", "is too large"),
    ];

    private static readonly TestCaseData[] Formats =
    [
        new TestCaseData(2 * K * K * K, "2G"),
        new TestCaseData(512 * K * K, "512M"),
        new TestCaseData(4097L, "4097"),
        new TestCaseData(0L, "0"),
    ];

    [TestCaseSource(nameof(ValidSizes))]
    public void ParseSize_ValidText_ReturnsBytes(string text, long bytes) =>
        Assert.That(Sizes.ParseSize(text), Is.EqualTo(bytes));

    [TestCaseSource(nameof(InvalidSizes))]
    public void ParseSize_InvalidText_ThrowsQuotingIt(string text, string problem) =>
        Assert.That(() => Sizes.ParseSize(text),
            Throws.TypeOf<FormatException>().With.Message.StartsWith($"'{text}' {problem}"));

    [TestCaseSource(nameof(ValidTimes))]
    public void ParseTime_ValidText_ReturnsNanoseconds(string text, long ns) =>
        Assert.That(Sizes.ParseTime(text), Is.EqualTo(ns));

    [TestCaseSource(nameof(InvalidTimes))]
    public void ParseTime_InvalidText_ThrowsQuotingIt(string text, string problem) =>
        Assert.That(() => Sizes.ParseTime(text),
            Throws.TypeOf<FormatException>().With.Message.StartsWith($"'{text}' {problem}"));

    [TestCaseSource(nameof(Formats))]
    public void FormatSize_Bytes_IsShortestExactSize(long bytes, string text) =>
        Assert.That(Sizes.FormatSize(bytes), Is.EqualTo(text));

    [TestCase(60_000_000_000L, ExpectedResult = "60s")]
    [TestCase(1_500_000_000L, ExpectedResult = "1500ms")]
    [TestCase(7L, ExpectedResult = "7ns")]
    public string FormatTime_ExactUnit_IsShortest(long ns) => Sizes.FormatTime(ns);

    [TestCaseSource(nameof(ValidTimes))]
    public void FormatTime_ParsedBack_RoundTrips(string text, long ns) =>
        Assert.That(Sizes.ParseTime(Sizes.FormatTime(ns)), Is.EqualTo(ns));
}
