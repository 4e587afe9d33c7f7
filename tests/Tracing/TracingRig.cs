using System.Diagnostics.Tracing;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmApf.Bench;
using KvmApf.Tests.Bench;
using KvmApf.Tracing;
using KvmApf.Vmm;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// What the tracing fixtures share: a small machine whose cgroup is tight enough that bm's fault
/// threads hit swapped pages, so async faults happen within a short measured interval; apf-bench
/// run in-process with the real runner; and a listener that keeps every event of our providers.
/// </summary>
internal static partial class TracingRig
{
    /// <summary>The small run, as apf-bench options.</summary>
    public static readonly string[] SmallRun =
        ["run", "--apf", "on", "--vcpus", "2", "--guest-mem", "256M", "--mem-limit", "96M", "--array", "128M", "--duration", "200ms"];

    /// <summary>The same run as a configuration.</summary>
    public static BenchConfig SmallConfig => new()
    {
        Apf = true,
        Vcpus = 2,
        GuestMemBytes = 256 * BenchConfig.MiB,
        MemLimitBytes = 96 * BenchConfig.MiB,
        ArrayBytes = 128 * BenchConfig.MiB,
        DurationNs = 200_000_000,
    };

    /// <summary>Runs apf-bench with <paramref name="args"/> and the real runner; asserts it succeeded.</summary>
    public static string Bench(params string[] args)
    {
        (int code, string stdout, string stderr) = AppHarness.Invoke(BenchRunner.Run, args);
        Assert.That(code, Is.EqualTo(App.ExitOk), () => $"apf-bench {string.Join(' ', args)} failed: {stderr}");
        return stdout;
    }

    /// <summary>A file's JSON with <c>sim.wall_ms</c>, the one figure that differs between two runs, set to 0.</summary>
    public static string MaskedJson(string path)
    {
        string json = File.ReadAllText(path);
        Assert.That(WallMs().Count(json), Is.EqualTo(1), "sim.wall_ms is there to mask");
        return WallMs().Replace(json, "\"wall_ms\": 0");
    }

    /// <summary>The <c>apf</c> object of a JSON document as a tuple.</summary>
    public static (long NotPresent, long PageReady, long WakeAll, long SyncFallbacks, long MaxOutstanding) Apf(JsonElement apf) =>
        (apf.GetProperty("not_present").GetInt64(), apf.GetProperty("page_ready").GetInt64(), apf.GetProperty("wake_all").GetInt64(),
            apf.GetProperty("sync_fallbacks").GetInt64(), apf.GetProperty("max_outstanding").GetInt64());

    /// <summary>A fresh directory under the temporary folder.</summary>
    public static string NewDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvm-apf-tracing-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    [GeneratedRegex("\"wall_ms\": [0-9]+")]
    private static partial Regex WallMs();
}

/// <summary>Keeps every event of <see cref="TraceProviders.All"/>, in the order they are written.</summary>
internal sealed class RecordingListener : TracepointListener
{
    private readonly List<EventWrittenEventArgs> _events = [];

    public IReadOnlyList<EventWrittenEventArgs> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>The events of one run, as records.</summary>
    public List<TraceRecord> Run(long runId) => [.. Events.Select(e => (TraceRecord)new ListenerRecord(e)).Where(r => r.RunId == runId)];

    /// <summary>The run of the last <c>vmm_run</c> event.</summary>
    public long LastRunId => Events.Select(e => new ListenerRecord(e)).Last(r => r.Name == "vmm_run").RunId;

    protected override void OnTracepoint(EventWrittenEventArgs eventData)
    {
        lock (_events)
        {
            _events.Add(eventData);
        }
    }
}
