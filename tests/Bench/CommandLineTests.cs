using Hw;
using KvmApf.Bench;
using KvmApf.Vmm;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("apf-bench: the command line of bench-contract.md")]
public sealed class CommandLineTests
{
    /// <summary>Arguments, and the option the one line on standard error must name.</summary>
    private static readonly TestCaseData[] BadInput =
    [
        new TestCaseData(new[] { "run", "--guest-mem", "2X" }, "--guest-mem: '2X' is not a size (use an integer with K, M, G or T)"),
        new TestCaseData(new[] { "run", "--array", "99999999999T" }, "--array: '99999999999T' is too large"),
        new TestCaseData(new[] { "run", "--duration", "60" }, "--duration: '60' is not a time"),
        new TestCaseData(new[] { "run", "--vcpus", "four" }, "--vcpus: 'four' is not an integer"),
        new TestCaseData(new[] { "run", "--vcpus", "99999999999" }, "--vcpus: '99999999999' is out of range"),
        new TestCaseData(new[] { "run", "--vcpus", "0" }, "--vcpus: must be between 1 and 1024"),
        new TestCaseData(new[] { "run", "--vcpus", "1025" }, "--vcpus: must be between 1 and 1024"),
        new TestCaseData(new[] { "run", "--fault-threads", "-1" }, "--fault-threads: must be between 0 and 4096"),
        new TestCaseData(new[] { "run", "--array", "2G" }, "--array: "),
        new TestCaseData(new[] { "run", "--guest-mem", "64M" }, "--guest-mem: must be"),
        new TestCaseData(new[] { "run", "--mem-limit", "1M" }, "--mem-limit: must be"),
        new TestCaseData(new[] { "run", "--duration", "0s" }, "--duration: must be positive"),
        new TestCaseData(new[] { "run", "--duration", "60001m" }, "--duration: must be at most 60000m"),
        new TestCaseData(new[] { "run", "--duration", "9223372036854775807ns" }, "--duration: must be at most 60000m"),
        new TestCaseData(new[] { "run", "--guest-mem", "8T" }, "--guest-mem: must be a multiple of 4K between 128M and 4T"),
        new TestCaseData(new[] { "run", "--cost", "Disk.Blocks=2147483648" }, "--cost: Disk.Blocks must be at most 1073741824"),
        new TestCaseData(new[] { "run", "--cost", "Disk.RotationNs=9223372036854775807" }, "--cost: Disk.RotationNs must be at most 1000000000000"),
        new TestCaseData(new[] { "run", "--cost", "VmExitNs=1000000000001" }, "--cost: VmExitNs must be at most 1000000000000"),
        new TestCaseData(new[] { "run", "--cost", "IncrementsPerMicrosecond=9223372036854775807", "--duration", "1s" }, "--cost: IncrementsPerMicrosecond=9223372036854775807 overflows bm's 64-bit counters"),
        new TestCaseData(new[] { "run", "--seed", "-1" }, "--seed: '-1' is not an unsigned 64-bit integer"),
        new TestCaseData(new[] { "run", "--seed", "18446744073709551616" }, "--seed: "),
        new TestCaseData(new[] { "run", "--paging", "ept" }, "--paging: 'ept' is not tdp or shadow"),
        new TestCaseData(new[] { "run", "--apf", "yes" }, "--apf: 'yes' is not on or off"),
        new TestCaseData(new[] { "run", "--cost", "Nope=1" }, "--cost: 'Nope' is not a cost"),
        new TestCaseData(new[] { "run", "--cost", "GuestTickNs" }, "--cost: 'GuestTickNs' is not NAME=VALUE"),
        new TestCaseData(new[] { "run", "--cost", "GuestTickNs=-5" }, "--cost: GuestTickNs: '-5' is not a non-negative integer"),
        new TestCaseData(new[] { "run", "--json", "" }, "--json: empty file name"),
        new TestCaseData(new[] { "run", "--progress=yes" }, "--progress: takes no value"),
        new TestCaseData(new[] { "compare", "--vcpus=x" }, "--vcpus: 'x' is not an integer"),
        new TestCaseData(new[] { "run", "--abi", "v5" }, "--abi: 'v5' is not v3 or merged"),
        new TestCaseData(new[] { "run", "--apf-per-vcpu", "0" }, "--apf-per-vcpu: must be between 1 and 4096"),
        new TestCaseData(new[] { "run", "--apf-per-vcpu", "many" }, "--apf-per-vcpu: 'many' is not an integer"),
        new TestCaseData(new[] { "run", "--guest-preempt", "yes" }, "--guest-preempt: 'yes' is not on or off"),
        new TestCaseData(new[] { "run", "--guest-pv", "1" }, "--guest-pv: '1' is not on or off"),
        new TestCaseData(new[] { "run", "--apf-halt" }, "--apf-halt: missing value (on or off)"),
        new TestCaseData(new[] { "run", "--pace", "0" }, "--pace: '0' is not a positive number"),
        new TestCaseData(new[] { "run", "--pace", "fast" }, "--pace: 'fast' is not a positive number"),
        new TestCaseData(new[] { "run", "--trace", "-" }, "--trace: give a file name"),
        new TestCaseData(new[] { "run", "--timeline=" }, "--timeline: give a file name"),
        new TestCaseData(new[] { "run", "--trace", "/nonexistent-dir/x.nettrace" }, "--trace: cannot write '/nonexistent-dir/x.nettrace'"),
        new TestCaseData(new[] { "run", "--timeline", "/nonexistent-dir/t.json" }, "--timeline: cannot write '/nonexistent-dir/t.json'"),
    ];

    private static readonly TestCaseData[] UnknownOrMissing =
    [
        new TestCaseData(new[] { "run", "--frobnicate" }, "--frobnicate: unknown option"),
        new TestCaseData(new[] { "run", "--frobnicate=3" }, "--frobnicate: unknown option"),
        new TestCaseData(new[] { "run", "-v" }, "-v: unexpected argument"),
        new TestCaseData(new[] { "run", "extra" }, "extra: unexpected argument"),
        new TestCaseData(new[] { "bench" }, "bench: unknown command"),
        new TestCaseData(new[] { "--vcpus", "4" }, "--vcpus: give a command first"),
        new TestCaseData(new[] { "run", "--vcpus" }, "--vcpus: missing value (N)"),
        new TestCaseData(new[] { "run", "--guest-mem", "--vcpus", "2" }, "--guest-mem: missing value (SIZE)"),
        new TestCaseData(new[] { "run", "--duration" }, "--duration: missing value (TIME)"),
        new TestCaseData(new[] { "compare", "--json" }, "--json: missing value (FILE or -)"),
        new TestCaseData(new[] { "run", "--cost" }, "--cost: missing value (NAME=VALUE)"),
    ];

    [TestCaseSource(nameof(BadInput))]
    public void Main_BadValue_OneLineNamingOptionAndExitCode2(string[] args, string message) =>
        AssertBadInput(args, message);

    [TestCaseSource(nameof(UnknownOrMissing))]
    public void Main_UnknownOptionOrMissingValue_OneLineNamingItAndExitCode2(string[] args, string message) =>
        AssertBadInput(args, message);

    [Test]
    public void Validate_LargestGuestMemDurationAndDisk_Accepted() =>
        Assert.That(CommandLine.Parse(["run", "--guest-mem", "4T", "--duration", "60000m", "--cost", "Disk.Blocks=1073741824"]).Config.Validate(), Is.Null);

    [Test]
    public void Parse_NoArguments_IsDefaultJobWithSlidesConfig()
    {
        Invocation inv = CommandLine.Parse([]);
        Assert.That(inv, Is.EqualTo(new Invocation(Command.Default, new BenchConfig())));
    }

    [Test]
    public void Parse_EveryOption_SetsConfig()
    {
        Invocation inv = CommandLine.Parse(
        [
            "run", "--vcpus", "8", "--guest-mem", "4G", "--mem-limit=1GiB", "--fault-threads", "2", "--work-threads", "0",
            "--array", "512M", "--duration", "5ms", "--seed", "18446744073709551615", "--paging", "shadow", "--apf", "on",
            "--json", "-", "--no-progress",
        ]);
        var expected = new BenchConfig
        {
            Vcpus = 8, GuestMemBytes = 4 * BenchConfig.GiB, MemLimitBytes = BenchConfig.GiB, FaultThreads = 2, WorkThreads = 0,
            ArrayBytes = 512 * BenchConfig.MiB, DurationNs = 5_000_000, Seed = ulong.MaxValue, Paging = PagingMode.Shadow, Apf = true,
        };
        Assert.That(inv, Is.EqualTo(new Invocation(Command.Run, expected, "-", Progress: false)));
    }

    [Test]
    public void Parse_AsyncPfOptions_SetConfig()
    {
        Invocation inv = CommandLine.Parse(["run", "--abi", "merged", "--apf-per-vcpu=8", "--guest-preempt", "on", "--guest-pv", "off", "--apf-halt", "on"]);
        Assert.That(inv.Config, Is.EqualTo(new BenchConfig { Abi = "merged", ApfPerVcpu = 8, GuestPreempt = true, GuestPv = false, ApfHalt = true }));
    }

    [Test]
    public void Parse_ObservingOptions_SetInvocationNotConfig()
    {
        Invocation inv = CommandLine.Parse(["run", "--trace", "run.nettrace", "--timeline=run.json", "--pace", "0.5"]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That((inv.TracePath, inv.TimelinePath, inv.Pace), Is.EqualTo(("run.nettrace", "run.json", 0.5)));
            Assert.That(inv.Config, Is.EqualTo(new BenchConfig()), "watching a run is not part of what it computes");
        }
    }

    [Test]
    public void Main_Pace_ReachesTheRunner()
    {
        var runner = new FakeRunner();
        AppHarness.Invoke(runner.Run, "run", "--pace", "2");
        Assert.That(runner.Options.Select(o => o.Pace), Is.EqualTo(new[] { 2.0 }));
    }

    [Test]
    public void Parse_RepeatedCost_AppliesEach()
    {
        Invocation inv = CommandLine.Parse(["compare", "--cost", "GuestTickNs=3000", "--cost=disk.minseekns=5", "--cost", "VmExitNs=0"]);
        var expected = new CostModel { GuestTickNs = 3000, VmExitNs = 0, Disk = new DiskGeometry { MinSeekNs = 5 } };
        Assert.That(inv.Config.Costs, Is.EqualTo(expected));
    }

    [Test]
    public void Parse_RepeatedOption_LastWins() =>
        Assert.That(CommandLine.Parse(["run", "--vcpus", "2", "--vcpus", "3"]).Config.Vcpus, Is.EqualTo(3));

    [TestCase("--help")]
    [TestCase("-h")]
    public void Main_Help_PrintsUsageAndExitsZero(string flag)
    {
        var runner = new FakeRunner();
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run, "run", "--vcpus", "x", flag);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(stdout, Does.StartWith("usage: apf-bench"));
            Assert.That(stderr, Is.Empty);
            Assert.That(runner.Calls, Is.Empty);
        }
    }

    private static void AssertBadInput(string[] args, string message)
    {
        var runner = new FakeRunner();
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run, args);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitBadInput));
            Assert.That(AppHarness.Lines(stderr), Has.Length.EqualTo(1));
            Assert.That(stderr, Does.StartWith("apf-bench: " + message));
            Assert.That(stderr, Does.Not.Contain("Exception").And.Not.Contain("   at "), "no stack trace");
            Assert.That(stdout, Is.Empty);
            Assert.That(runner.Calls, Is.Empty, "nothing runs after bad input");
        }
    }
}
