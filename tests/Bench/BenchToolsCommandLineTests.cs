using KvmApf.EngineBench;
using KvmApf.TraceBench;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("trace-bench and engine-bench: bad input is one line naming the option and exit code 2, before anything runs")]
public sealed class BenchToolsCommandLineTests
{
    private static readonly TestCaseData[] TraceBenchBadInput =
    [
        new TestCaseData(new[] { "--rounds", "abc" }, "trace-bench: --rounds: 'abc' is not a whole number"),
        new TestCaseData(new[] { "--rounds", "99999999999" }, "trace-bench: --rounds: '99999999999' is not a whole number"),
        new TestCaseData(new[] { "--rounds", "0" }, "trace-bench: --rounds: '0' is not a whole number"),
        new TestCaseData(new[] { "--calls", "-5" }, "trace-bench: --calls: '-5' is not a whole number"),
        new TestCaseData(new[] { "--calls", "0" }, "trace-bench: --calls: '0' is not a whole number"),
        new TestCaseData(new[] { "--apf", "yes" }, "trace-bench: --apf: 'yes' is not on or off"),
        new TestCaseData(new[] { "--duration", "5" }, "trace-bench: --duration: '5' is not a time"),
        new TestCaseData(new[] { "--duration", "0s" }, "trace-bench: --duration: must be positive"),
        new TestCaseData(new[] { "--keep", "--rounds", "1" }, "trace-bench: --keep: missing value"),
        new TestCaseData(new[] { "--keep", "/nonexistent-dir/run.nettrace" }, "trace-bench: --keep: cannot write"),
        new TestCaseData(new[] { "--frob" }, "trace-bench: --frob: unknown option"),
    ];

    [TestCaseSource(nameof(TraceBenchBadInput))]
    public void TraceBench_BadInput_OneLineExitCode2BeforeRunning(string[] args, string message)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = TraceBenchApp.Run(args, stdout, stderr);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(stderr.ToString(), Does.StartWith(message));
            Assert.That(AppHarness.Lines(stderr.ToString()), Has.Length.EqualTo(1));
            Assert.That(stdout.ToString(), Is.Empty, "nothing measured");
        }
    }

    [Test]
    public void TraceBench_DiagnosticsOff_OneLineNamingTheCaptureExitCode2()
    {
        // A process of its own: EventPipe is off only where DOTNET_EnableDiagnostics=0 was set at start.
        string dll = Path.Combine(AppContext.BaseDirectory, "trace-bench.dll");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet", [dll, "--rounds", "1", "--duration", "1ms", "--calls", "1000"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        using var process = System.Diagnostics.Process.Start(start)!;
        string stderr = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(process.ExitCode, Is.EqualTo(2));
            Assert.That(stderr, Does.StartWith("trace-bench: (c) .nettrace capture: cannot start an EventPipe session on this process"));
            Assert.That(AppHarness.Lines(stderr), Has.Length.EqualTo(1), "no stack trace");
        }
    }

    private static readonly TestCaseData[] EngineBenchBadInput =
    [
        new TestCaseData(new[] { "--events", "abc" }, "--events: 'abc' is not a whole number of at least 1"),
        new TestCaseData(new[] { "--events", "99999999999999999999" }, "--events: '99999999999999999999' is not a whole number"),
        new TestCaseData(new[] { "--events", "0" }, "--events: '0' is not a whole number of at least 1"),
        new TestCaseData(new[] { "--warmup", "-1" }, "--warmup: '-1' is not a whole number of at least 0"),
        new TestCaseData(new[] { "--events" }, "--events: missing value"),
        new TestCaseData(new[] { "--events", "--json" }, "--events: missing value"),
        new TestCaseData(new[] { "--frob" }, "--frob: unknown option"),
    ];

    [TestCaseSource(nameof(EngineBenchBadInput))]
    public void EngineBench_BadInput_MessageNamesTheOption(string[] args, string message) =>
        Assert.That(() => EngineBenchOptions.Parse(args), Throws.TypeOf<FormatException>().With.Message.StartWith(message));

    [Test]
    public void EngineBench_Options_SetEach() =>
        Assert.That(EngineBenchOptions.Parse(["--events", "5", "--warmup", "0", "--json"]), Is.EqualTo(new EngineBenchOptions(5, 0, Json: true)));

    [TestCase("--help")]
    [TestCase("-h")]
    public void EngineBench_Help_IsNotAnError(string flag) =>
        Assert.That(EngineBenchOptions.Parse([flag]).Help, Is.True);
}
