using System.Text.Json;
using KvmApf.Bench;
using KvmApf.Vmm;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("apf-bench: commands, text output, --json and failures (bench-contract.md)")]
public sealed class AppTests
{
    private string _dir = "";

    [SetUp]
    public void MakeDirectory()
    {
        _dir = Path.Combine(Path.GetTempPath(), "apf-bench-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    private static readonly TestCaseData[] JsonToStdout =
    [
        new TestCaseData((object)new[] { "run", "--json", "-" }),
        new TestCaseData((object)new[] { "run", "--json=-", "--apf", "on", "--progress" }),
        new TestCaseData((object)new[] { "compare", "--json", "-" }),
    ];

    [TestCaseSource(nameof(JsonToStdout))]
    public void Main_JsonToStdout_WritesOnlyJson(string[] args)
    {
        (int code, string stdout, _) = AppHarness.Invoke(new FakeRunner().Run, args);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(() => JsonDocument.Parse(stdout).Dispose(), Throws.Nothing);
            Assert.That(stdout, Does.StartWith("{").And.EndWith("}\n"));
        }
    }

    [Test]
    public void Main_JsonToStdoutOnTerminal_ShowsNoProgress()
    {
        (int code, _, string stderr) = AppHarness.Invoke(new FakeRunner().Run, interactive: true, "run", "--json", "-");
        Assert.That((code, stderr), Is.EqualTo((App.ExitOk, "")));
    }

    [Test]
    public void Main_RunOnTerminal_ShowsProgressAndErasesIt()
    {
        (_, string stdout, string stderr) = AppHarness.Invoke(new FakeRunner().Run, interactive: true, "run");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(stderr, Does.Contain("apf-bench: run  50%").And.EndWith("\r"));
            Assert.That(stdout, Does.Not.Contain("%\r"));
        }
    }

    [Test]
    public void Main_RunNotOnTerminal_ShowsNoProgress() =>
        Assert.That(AppHarness.Invoke("run").Err, Is.Empty);

    [Test]
    public void Main_JsonFile_WritesTheRunAndText()
    {
        string file = Path.Combine(_dir, "run.json");
        File.WriteAllText(file, "old");
        (int code, string stdout, _) = AppHarness.Invoke("run", "--json", file, "--seed", "7");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(file));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(doc.RootElement.GetProperty("config").GetProperty("seed").GetUInt64(), Is.EqualTo(7UL));
            Assert.That(stdout, Does.StartWith("apf-bench run:"));
            Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { file }), "no temporary file left");
        }
    }

    private static readonly TestCaseData[] FailingRuns =
    [
        new TestCaseData(new FakeRunner { ThrowWhenApfOn = new NotSupportedException("the series is not in") }, new[] { "compare" }, App.ExitBadInput),
        new TestCaseData(new FakeRunner { ThrowWhenApfOn = new NotSupportedException("the series is not in") }, new[] { "run", "--apf", "on" }, App.ExitBadInput),
        new TestCaseData(new FakeRunner { ThrowAlways = new NotImplementedException("the machine is being built") }, new[] { "run" }, App.ExitFailed),
        new TestCaseData(new FakeRunner(), new[] { "run", "--vcpus", "0" }, App.ExitBadInput),
    ];

    [TestCaseSource(nameof(FailingRuns))]
    public void Main_RunFails_CreatesNoFile(FakeRunner runner, string[] args, int exitCode)
    {
        string file = Path.Combine(_dir, "out.json");
        (int code, _, string stderr) = AppHarness.Invoke(runner.Run, [.. args, "--json", file]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(exitCode));
            Assert.That(AppHarness.Lines(stderr), Has.Length.EqualTo(1));
            Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty);
        }
    }

    [Test]
    public void Main_JsonDirectoryMissing_FailsBeforeRunning()
    {
        var runner = new FakeRunner();
        string file = Path.Combine(_dir, "missing", "out.json");
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run, "run", "--json", file);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitBadInput));
            Assert.That(stderr, Does.StartWith("apf-bench: --json: cannot write"));
            Assert.That(stdout, Is.Empty);
            Assert.That(runner.Calls, Is.Empty);
        }
    }

    [Test]
    public void Main_JsonIsDirectory_FailsNamingJson() =>
        Assert.That(AppHarness.Invoke("run", "--json", _dir), Is.EqualTo((App.ExitBadInput, "", $"apf-bench: --json: '{_dir}' is a directory\n")));

    [Test]
    public void Main_JsonIsSymbolicLink_ReplacesTheFileItPointsToAndKeepsTheLink()
    {
        string target = Path.Combine(_dir, "real.json");
        string link = Path.Combine(_dir, "link.json");
        File.WriteAllText(target, "old");
        File.CreateSymbolicLink(link, "real.json");
        (int code, _, _) = AppHarness.Invoke("run", "--json", link);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo("real.json"), "the link is still a link");
            Assert.That(() => JsonDocument.Parse(File.ReadAllBytes(target)).Dispose(), Throws.Nothing);
            Assert.That(Directory.GetFileSystemEntries(_dir), Has.Length.EqualTo(2), "no temporary file left");
        }
    }

    [Test]
    public void Main_JsonIsNamedPipe_WritesIntoThePipeAndKeepsIt()
    {
        string fifo = Path.Combine(_dir, "pipe");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo))
        {
            mkfifo.WaitForExit();
        }
        var reader = Task.Run(() => File.ReadAllText(fifo));
        (int code, _, string stderr) = AppHarness.Invoke("run", "--json", fifo);
        bool read = reader.Wait(TimeSpan.FromSeconds(10));
        using (Assert.EnterMultipleScope())
        {
            Assert.That((code, stderr), Is.EqualTo((App.ExitOk, "")));
            Assert.That(read, Is.True, "the reader of the pipe got the JSON (not a regular file renamed over the pipe)");
            Assert.That(read ? reader.Result : "", Does.StartWith("{"));
            Assert.That(new FileInfo(fifo).Length, Is.Zero, "still a pipe");
        }
    }

    private static readonly TestCaseData[] SameFileTwice =
    [
        new TestCaseData("out.json", "out.json").SetArgDisplayNames("same name"),
        new TestCaseData("out.json", "./sub/../out.json").SetArgDisplayNames("same file, other spelling"),
        new TestCaseData("link.json", "out.json").SetArgDisplayNames("a link to it"),
    ];

    [TestCaseSource(nameof(SameFileTwice))]
    public void Main_JsonAndTimelineSameFile_FailsBeforeRunning(string json, string timeline)
    {
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        File.CreateSymbolicLink(Path.Combine(_dir, "link.json"), "out.json");
        var runner = new FakeRunner();
        string timelinePath = Path.Combine(_dir, timeline);
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run, "run", "--json", Path.Combine(_dir, json), "--timeline", timelinePath);
        Assert.That((code, stdout, stderr, runner.Calls.Count),
            Is.EqualTo((App.ExitBadInput, "", $"apf-bench: --timeline: '{timelinePath}' is also the --json file\n", 0)));
    }

    [Test]
    public void Main_Run_EndsWithBmLines()
    {
        (int code, string stdout, _) = AppHarness.Invoke("run", "--work-threads", "3", "--apf", "off");
        Assert.That(AppHarness.Lines(stdout)[^4..], Is.EqualTo(new[] { "worker 0: 1000", "worker 1: 1001", "worker 2: 1002", "total: 3003" }));
        Assert.That(code, Is.EqualTo(App.ExitOk));
    }

    [Test]
    public void Main_Run_SplitsWallTimeAtTheMeasuredInterval_AndSaysWhatTheCollectorDid()
    {
        (_, string stdout, _) = AppHarness.Invoke("run", "--apf", "off");
        var lines = AppHarness.Lines(stdout);
        Assert.That(lines, Does.Contain("sim: 31 events, 60.000s simulated, 32 ms wall (boot and prefault 20 ms, measured interval 12 ms)"));
        Assert.That(lines, Does.Contain("gc: 1.5M allocated, 2 collections, 7 ms paused (the process's, during the run)"));
    }

    [Test]
    public void Main_DefaultJob_RunsOffThenOnWithSameConfig()
    {
        var runner = new FakeRunner();
        (int code, _, _) = AppHarness.Invoke(runner.Run);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(runner.Calls.Select(c => c.Apf), Is.EqualTo(new[] { false, true }));
            Assert.That(runner.Calls[1], Is.EqualTo(runner.Calls[0] with { Apf = true }));
            Assert.That(runner.Calls[0], Is.EqualTo(new BenchConfig() with { Apf = false }));
        }
    }

    [Test]
    public void Main_CompareWithApfOff_StillRunsOffThenOn()
    {
        var runner = new FakeRunner();
        AppHarness.Invoke(runner.Run, "compare", "--apf", "off", "--seed", "9");
        Assert.That(runner.Calls.Select(c => (c.Apf, c.Seed)), Is.EqualTo(new[] { (false, 9UL), (true, 9UL) }));
    }

    [Test]
    public void Main_DefaultJob_PrintsSlidesBesideSimulation()
    {
        (_, string stdout, _) = AppHarness.Invoke();
        string[] lines = AppHarness.Lines(stdout);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(lines, Has.Some.Match(@"^  total:\s+258846142585\s+8006$"));
            Assert.That(lines, Has.Some.Match(@"^  total:\s+129752639953\s+4006$"));
            Assert.That(lines, Has.Some.Match(@"^  worker 0:\s+63972141051\s+2000$"));
            Assert.That(lines[^1], Does.Match(@"^ratio on/off\s+1\.995\s+1\.999$"));
        }
    }

    [Test]
    public void Main_CompareZeroWorkThreads_RatioIsNa()
    {
        (int code, string stdout, _) = AppHarness.Invoke("compare", "--work-threads", "0");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitOk));
            Assert.That(stdout, Does.Contain("\ntotal: 0\n"));
            Assert.That(AppHarness.Lines(stdout)[^1], Does.Match(@"^ratio on/off\s+1\.995\s+n/a$"));
        }
    }

    [Test]
    public void Main_ApfOnNotSupported_OneLineNamingApfAfterOffRun()
    {
        var runner = new FakeRunner { ThrowWhenApfOn = new NotSupportedException("async PF is not in\nyet") };
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitBadInput));
            Assert.That(stderr, Is.EqualTo("apf-bench: --apf: 'on' is not supported by this build: async PF is not in yet\n"));
            Assert.That(runner.Calls.Select(c => c.Apf), Is.EqualTo(new[] { false, true }));
            Assert.That(AppHarness.Lines(stdout)[^1], Is.EqualTo("total: 4006"), "the off run is printed");
        }
    }

    [Test]
    public void Main_SimulationNotImplemented_OneLineExitCode1()
    {
        var runner = new FakeRunner { ThrowAlways = new NotImplementedException("the machine is being built") };
        Assert.That(AppHarness.Invoke(runner.Run, "run"),
            Is.EqualTo((App.ExitFailed, "", "apf-bench: the simulation is not complete: the machine is being built\n")));
    }

    private static readonly TestCaseData[] SimulationFailures =
    [
        new TestCaseData(new InvalidOperationException("the guest did not finish: simulated time 600000000000 ns, console: ")),
        new TestCaseData(new ArgumentOutOfRangeException("when", "cannot arm an event in the past")),
        new TestCaseData(new OverflowException("Arithmetic operation resulted in an overflow.")),
    ];

    [TestCaseSource(nameof(SimulationFailures))]
    public void Main_SimulationThrows_OneLineExitCode1AndNoFile(Exception failure)
    {
        string file = Path.Combine(_dir, "out.json");
        var runner = new FakeRunner { ThrowAlways = failure };
        (int code, string stdout, string stderr) = AppHarness.Invoke(runner.Run, "run", "--json", file);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(App.ExitFailed));
            Assert.That(AppHarness.Lines(stderr), Has.Length.EqualTo(1));
            Assert.That(stderr, Does.StartWith($"apf-bench: the simulation failed: run: {failure.GetType().Name}: "));
            Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace");
            Assert.That(stdout, Is.Empty);
            Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty);
        }
    }

    [Test]
    public void Slides_PublishedBlocks_SumToPublishedTotalsAndRatio()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Slides.WithApf.Sum(), Is.EqualTo(258_846_142_585L));
            Assert.That(Slides.WithoutApf.Sum(), Is.EqualTo(129_752_639_953L));
            Assert.That(TextReport.Ratio(Slides.WithApf.Sum(), Slides.WithoutApf.Sum()), Is.EqualTo("1.995"));
        }
    }
}
