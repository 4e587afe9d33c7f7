using System.Text.Json;
using KvmApf.KvmStat;
using KvmApf.Tracing;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// <c>apf-bench run --trace FILE</c>: the run's events go through an in-process EventPipe session into
/// a <c>.nettrace</c>, which TraceEvent reads back with the same counts an in-process listener saw
/// during the same run; capturing does not change the run (DESIGN section 5: tracing never changes
/// the simulation); and kvm-stat, reading only the trace, finds the run's own <c>apf</c> figures
/// and vCPU time split.
/// </summary>
[TestFixture, NonParallelizable, Category("tracing"), Description("--trace: a .nettrace of the run, read back by TraceEvent and kvm-stat")]
public sealed class CaptureTests
{
    private string _dir = "";
    private string _plainJson = "";
    private string _tracedJson = "";
    private string _trace = "";
    private Dictionary<string, long> _listenerCounts = [];
    private long _runId;

    [OneTimeSetUp]
    public void RunWithAndWithoutCapture()
    {
        _dir = TracingRig.NewDirectory();
        _plainJson = Path.Combine(_dir, "plain.json");
        _tracedJson = Path.Combine(_dir, "traced.json");
        _trace = Path.Combine(_dir, "run.nettrace");
        TracingRig.Bench([.. TracingRig.SmallRun, "--json", _plainJson]);
        using var listener = new RecordingListener();
        TracingRig.Bench([.. TracingRig.SmallRun, "--json", _tracedJson, "--trace", _trace]);
        _runId = listener.LastRunId;
        _listenerCounts = listener.Run(_runId).GroupBy(r => r.Name).ToDictionary(g => g.Key, g => (long)g.Count());
    }

    [OneTimeTearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    private static TraceStats Read(string path)
    {
        var stats = new TraceStats();
        TraceInput.ReadFile(path, stats.Add);
        stats.Finish();
        return stats;
    }

    [Test]
    public void Run_WithCapture_JsonIdenticalToRunWithout()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(_listenerCounts.Values.Sum(), Is.GreaterThan(0), "the capture saw events");
            Assert.That(new FileInfo(_trace).Length, Is.GreaterThan(0));
            Assert.That(TracingRig.MaskedJson(_tracedJson), Is.EqualTo(TracingRig.MaskedJson(_plainJson)));
        }
    }

    [Test]
    public void Nettrace_ReadWithTraceEvent_SameCountsAsListener()
    {
        var counts = new Dictionary<string, long>();
        TraceInput.ReadFile(_trace, r =>
        {
            if (r.RunId == _runId)
            {
                counts[r.Name] = counts.GetValueOrDefault(r.Name) + 1;
            }
        });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(counts, Is.EquivalentTo(_listenerCounts));
            Assert.That(counts.Keys, Is.SupersetOf(new[] { "kvm_exit", "kvm_entry", "kvm_async_pf_not_present", "sched_switch", "apf_task_sleep", "vmm_measure_begin" }));
        }
    }

    [Test]
    public void KvmStat_ApfObject_EqualsTheRuns()
    {
        using JsonDocument run = JsonDocument.Parse(File.ReadAllBytes(_tracedJson));
        var apf = TracingRig.Apf(run.RootElement.GetProperty("apf"));
        var stats = Read(_trace).For(null, wholeTrace: false)!;
        using JsonDocument stat = JsonDocument.Parse(StatReport.Json(stats));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(apf.NotPresent, Is.GreaterThan(0), "a run with async faults");
            Assert.That(stats.Windowed, Is.True, "kvm-stat applied the measured interval");
            Assert.That(TracingRig.Apf(stat.RootElement.GetProperty("apf")), Is.EqualTo(apf));
        }
    }

    [Test]
    public void KvmStat_SyncFallbackReasons_AddUpToTheRunsFallbacks()
    {
        using JsonDocument run = JsonDocument.Parse(File.ReadAllBytes(_tracedJson));
        long fallbacks = run.RootElement.GetProperty("apf").GetProperty("sync_fallbacks").GetInt64();
        var stats = Read(_trace).For(null, wholeTrace: false)!;
        using JsonDocument stat = JsonDocument.Parse(StatReport.Json(stats));
        var reasons = stat.RootElement.GetProperty("sync_fallback_reasons").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64());
        using var text = new StringWriter();
        StatReport.Text(text, stats, [stats.RunId]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(fallbacks, Is.Positive, "a run with synchronous fallbacks");
            Assert.That(reasons.Values.Sum(), Is.EqualTo(fallbacks));
            Assert.That(reasons.Keys, Is.SubsetOf(new[] { "cap", "allocation", "bad hva", "event pending", "interrupts", "disabled", "cpl" }));
            Assert.That(text.ToString(), Does.Contain("sync fallbacks by reason: " + string.Join(", ", reasons.Select(kv => $"{kv.Key} {kv.Value}"))));
        }
    }

    [Test]
    public void KvmStat_PerVcpuTime_EqualsTheRunsVcpus()
    {
        using JsonDocument run = JsonDocument.Parse(File.ReadAllBytes(_tracedJson));
        using JsonDocument stat = JsonDocument.Parse(StatReport.Json(Read(_trace).For(null, wholeTrace: false)!));
        string[] keys = ["guest_ns", "host_ns", "stall_ns", "halt_ns"];
        var expected = run.RootElement.GetProperty("vcpus").EnumerateArray().Select(v => keys.Select(k => v.GetProperty(k).GetInt64()).ToArray()).ToList();
        var derived = stat.RootElement.GetProperty("per_vcpu").EnumerateArray().Select(v => keys.Select(k => v.GetProperty(k).GetInt64()).ToArray()).ToList();
        Assert.That(derived, Is.EqualTo(expected), "the vCPU time model rebuilds the machine's residency from kvm_entry, kvm_exit and the rest");
    }

    [Test]
    public void KvmStat_CommandLine_JsonToStdoutHasTheContractKeys()
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = new KvmStatApp(stdout, stderr).Main([_trace, "--json", "-"]);
        using JsonDocument doc = JsonDocument.Parse(stdout.ToString());
        var root = doc.RootElement;
        using (Assert.EnterMultipleScope())
        {
            Assert.That((code, stderr.ToString()), Is.EqualTo((0, "")));
            Assert.That(root.EnumerateObject().Select(p => p.Name).Take(4), Is.EqualTo(new[] { "events", "apf", "per_vcpu", "latency_ns" }));
            Assert.That(root.GetProperty("latency_ns").EnumerateObject().Select(p => p.Name), Is.SupersetOf(new[] { "p50", "p90", "p99", "max" }));
            Assert.That(root.GetProperty("latency_ns").GetProperty("p50").GetInt64(), Is.Positive.And.LessThanOrEqualTo(root.GetProperty("latency_ns").GetProperty("max").GetInt64()));
            Assert.That(root.GetProperty("per_vcpu").GetArrayLength(), Is.EqualTo(2));
            Assert.That(root.GetProperty("events").GetProperty("kvm_exit").GetInt64(), Is.Positive);
        }
    }

    [Test]
    public void KvmStat_TextReport_ShowsEventsRatesAndLatency()
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = new KvmStatApp(stdout, stderr).Main([_trace]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.Zero);
            Assert.That(stdout.ToString(), Does.Contain("measured interval: 0.200 s")
                .And.Contain("kvm_async_pf_not_present").And.Contain("/s (sim)").And.Contain("latency").And.Contain("outstanding async faults"));
        }
    }

    [Test]
    public void KvmStat_TruncatedTrace_OneLineSayingSoAndExitCode1()
    {
        string truncated = Path.Combine(_dir, "truncated.nettrace");
        byte[] whole = File.ReadAllBytes(_trace);
        File.WriteAllBytes(truncated, whole[..(whole.Length / 3)]);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = new KvmStatApp(stdout, stderr).Main([truncated]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr.ToString(), Does.StartWith($"kvm-stat: cannot read '{truncated}': not a complete .nettrace (truncated, empty, or another format): "));
            Assert.That(stderr.ToString().TrimEnd('\n'), Does.Not.Contain('\n'), "one line");
        }
    }

    private static readonly TestCaseData[] BadInput =
    [
        new TestCaseData((object)new[] { "/nonexistent/x.nettrace" }).SetArgDisplayNames("missing file"),
        new TestCaseData((object)new[] { "--frob" }).SetArgDisplayNames("unknown option"),
        new TestCaseData((object)Array.Empty<string>()).SetArgDisplayNames("no input"),
        new TestCaseData((object)new[] { "--pid", "x" }).SetArgDisplayNames("bad pid"),
    ];

    /// <summary>Arguments with TRACE for the fixture's trace and DIR for an empty directory, and the line on standard error.</summary>
    private static readonly TestCaseData[] BadInputBesideATrace =
    [
        new TestCaseData(new[] { "TRACE", "--json", "--all" }, "kvm-stat: --json: missing value").SetArgDisplayNames("json value is an option"),
        new TestCaseData(new[] { "TRACE", "--json", "DIR" }, "kvm-stat: --json: 'DIR' is a directory").SetArgDisplayNames("json is a directory"),
        new TestCaseData(new[] { "TRACE", "--json", "DIR/missing/x.json" }, "kvm-stat: --json: cannot write 'DIR/missing/x.json'").SetArgDisplayNames("json in a missing directory"),
        new TestCaseData(new[] { "TRACE", "--json", "TRACE" }, "kvm-stat: --json: 'TRACE' is the trace file").SetArgDisplayNames("json is the trace"),
        new TestCaseData(new[] { "DIR" }, "kvm-stat: DIR: is a directory").SetArgDisplayNames("trace is a directory"),
        new TestCaseData(new[] { "TRACE", "--interval", "Infinity" }, "kvm-stat: --interval: not a positive number").SetArgDisplayNames("infinite interval"),
        new TestCaseData(new[] { "--pid", "2147483647" }, "kvm-stat: --pid: no process 2147483647").SetArgDisplayNames("pid not running"),
    ];

    [TestCaseSource(nameof(BadInputBesideATrace))]
    public void KvmStat_BadInputBesideATrace_OneLineExitCode2AndNothingWritten(string[] template, string message)
    {
        string dir = TracingRig.NewDirectory();
        try
        {
            string[] args = [.. template.Select(a => a.Replace("TRACE", _trace, StringComparison.Ordinal).Replace("DIR", dir, StringComparison.Ordinal))];
            using var stdout = new StringWriter();
            using var stderr = new StringWriter();
            long traceBytes = new FileInfo(_trace).Length;
            int code = new KvmStatApp(stdout, stderr).Main(args);
            using (Assert.EnterMultipleScope())
            {
                Assert.That(code, Is.EqualTo(2));
                Assert.That(stderr.ToString(), Does.StartWith(message.Replace("TRACE", _trace, StringComparison.Ordinal).Replace("DIR", dir, StringComparison.Ordinal)));
                Assert.That(stderr.ToString().TrimEnd('\n'), Does.Not.Contain('\n'));
                Assert.That(stdout.ToString(), Is.Empty, "fails before reading the trace");
                Assert.That(Directory.GetFileSystemEntries(dir), Is.Empty);
                Assert.That(new FileInfo(_trace).Length, Is.EqualTo(traceBytes), "the trace is untouched");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestCaseSource(nameof(BadInput))]
    public void KvmStat_BadInput_OneLineAndExitCode2(string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = new KvmStatApp(stdout, stderr).Main(args);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2));
            Assert.That(stderr.ToString(), Does.StartWith("kvm-stat: ").And.EndWith("\n"));
            Assert.That(stderr.ToString().TrimEnd('\n'), Does.Not.Contain('\n'));
        }
    }
}
