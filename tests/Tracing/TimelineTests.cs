using System.Text.Json;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// <c>apf-bench run --timeline FILE</c>: Chrome trace-event JSON for Perfetto, built from the
/// tracepoints: a track per vCPU whose stretches (guest, host, stalled, halted) follow each other
/// without gap or overlap, instant events for not-present and page-ready, and a track per guest
/// task (running, runnable, asleep, asleep on token).
/// </summary>
[TestFixture, NonParallelizable, Category("tracing"), Description("--timeline: vCPU and guest-task tracks as Chrome trace-event JSON")]
public sealed class TimelineTests
{
    private string _dir = "";
    private JsonDocument _doc = null!;
    private List<JsonElement> _events = [];
    private Dictionary<long, string> _threads = [];

    [OneTimeSetUp]
    public void RunWithTimeline()
    {
        _dir = TracingRig.NewDirectory();
        string path = Path.Combine(_dir, "timeline.json");
        TracingRig.Bench([.. TracingRig.SmallRun, "--timeline", path]);
        _doc = JsonDocument.Parse(File.ReadAllBytes(path));
        _events = [.. _doc.RootElement.GetProperty("traceEvents").EnumerateArray()];
        _threads = _events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => e.GetProperty("tid").GetInt64(), e => e.GetProperty("args").GetProperty("name").GetString()!);
    }

    [OneTimeTearDown]
    public void Clean()
    {
        _doc.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private IEnumerable<JsonElement> Slices(Func<string, bool> thread) =>
        _events.Where(e => e.GetProperty("ph").GetString() == "X" && thread(_threads[e.GetProperty("tid").GetInt64()]));

    [Test]
    public void Timeline_Tracks_OnePerVcpuAndPerGuestTask()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(_doc.RootElement.GetProperty("displayTimeUnit").GetString(), Is.EqualTo("ns"));
            Assert.That(_threads.Values, Is.SupersetOf(new[] { "vCPU 0", "vCPU 1" }));
            Assert.That(_threads.Values, Has.Some.StartsWith("bm-fault").And.Some.StartsWith("bm-work"));
            Assert.That(_events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "process_name"), Has.Exactly(1).Items);
        }
    }

    [Test]
    public void Timeline_VcpuStretches_NamedByStateWithoutGapOrOverlap()
    {
        foreach (long tid in _threads.Where(t => t.Value.StartsWith("vCPU", StringComparison.Ordinal)).Select(t => t.Key))
        {
            var slices = _events.Where(e => e.GetProperty("ph").GetString() == "X" && e.GetProperty("tid").GetInt64() == tid)
                .Select(e => (Name: e.GetProperty("name").GetString(), Ts: e.GetProperty("ts").GetDouble(), Dur: e.GetProperty("dur").GetDouble()))
                .ToList();
            var gaps = slices.Zip(slices.Skip(1), (a, b) => Math.Abs(b.Ts - (a.Ts + a.Dur))).Where(g => g > 0.0015).ToList();
            using (Assert.EnterMultipleScope())
            {
                Assert.That(slices.Select(s => s.Name).Distinct(), Is.SubsetOf(new[] { "guest", "host", "stalled", "halted" }));
                Assert.That(slices.Select(s => s.Name), Does.Contain("guest").And.Contain("stalled"));
                Assert.That(gaps, Is.Empty, $"vCPU track {tid}: each stretch starts where the one before ends");
            }
        }
    }

    [Test]
    public void Timeline_Instants_NotPresentAndPageReadyOnVcpuTracks()
    {
        var instants = _events.Where(e => e.GetProperty("ph").GetString() == "i").ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(instants.Select(e => e.GetProperty("name").GetString()).Distinct(), Is.EquivalentTo(new[] { "not-present", "page-ready" }));
            Assert.That(instants.Select(e => _threads[e.GetProperty("tid").GetInt64()]), Is.All.StartWith("vCPU"));
            Assert.That(instants.Select(e => e.GetProperty("args").GetProperty("token").GetString()), Is.All.StartWith("0x"));
        }
    }

    [Test]
    public void Timeline_TaskStretches_RunningRunnableAsleepOnToken()
    {
        var tasks = Slices(name => !name.StartsWith("vCPU", StringComparison.Ordinal)).ToList();
        var tokens = _events.Where(e => e.GetProperty("ph").GetString() == "i" && e.GetProperty("name").GetString() == "not-present")
            .Select(e => e.GetProperty("args").GetProperty("token").GetString()).ToHashSet();
        var onToken = tasks.Where(e => e.GetProperty("name").GetString() == "asleep on token").ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(tasks.Select(e => e.GetProperty("name").GetString()).Distinct(), Is.SubsetOf(new[] { "running", "runnable", "asleep", "asleep on token" }));
            Assert.That(onToken, Is.Not.Empty, "a fault thread slept on a token");
            Assert.That(onToken.Select(e => e.GetProperty("args").GetProperty("token").GetString()), Is.SubsetOf(tokens),
                "every token slept on was announced by a not-present");
        }
    }
}
