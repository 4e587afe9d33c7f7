using KvmApf.Tracing;

namespace KvmApf.KvmStat;

/// <summary>
/// Every run a trace holds (EventSources are process-wide, so one trace may hold several, told
/// apart by RunId), each analysed twice: over the VMM's measured interval and over the whole
/// trace; <see cref="For"/> picks the window when the trace has it.
/// </summary>
public sealed class TraceStats
{
    private readonly Dictionary<long, (RunStats Window, RunStats Whole)> _runs = [];
    private readonly List<long> _order = [];

    /// <summary>Run ids in the order their first event came.</summary>
    public IReadOnlyList<long> Runs => _order;

    public long Events { get; private set; }

    public void Add(TraceRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        Events++;
        long id = r.RunId;
        if (!_runs.TryGetValue(id, out var stats))
        {
            stats = (new RunStats(id), new RunStats(id, wholeTrace: true));
            _runs[id] = stats;
            _order.Add(id);
        }
        stats.Window.Add(r);
        stats.Whole.Add(r);
    }

    /// <summary>Accounts the vCPUs' last stretches of every run.</summary>
    public void Finish()
    {
        foreach (var (window, whole) in _runs.Values)
        {
            window.Finish();
            whole.Finish();
        }
    }

    /// <summary>
    /// The statistics of run <paramref name="runId"/> (default: the last run with a measured
    /// interval, else the last run): the window's, unless <paramref name="wholeTrace"/> or the
    /// trace has no complete window. Null if the trace has no such run.
    /// </summary>
    public RunStats? For(long? runId, bool wholeTrace)
    {
        long? id = runId ?? _order.LastOrDefault(r => _runs[r].Window.Windowed, _order.Count > 0 ? _order[^1] : -1);
        if (id is not { } key || !_runs.TryGetValue(key, out var stats))
        {
            return null;
        }
        return wholeTrace || !stats.Window.Windowed ? stats.Whole : stats.Window;
    }
}
