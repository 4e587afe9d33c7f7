using KvmApf.Tracing;

namespace KvmApf.KvmStat;

/// <summary>The async PF figures of a run's <c>apf</c> object, derived from its tracepoints.</summary>
public sealed record ApfFigures(long NotPresent, long PageReady, long WakeAll, long SyncFallbacks, long MaxOutstanding);

/// <summary>One vCPU over the window: event counts and where its time went (from the vCPU time model).</summary>
public sealed class VcpuFigures(int vmId, int vcpuId)
{
    public int VmId { get; } = vmId;
    public int VcpuId { get; } = vcpuId;
    public long Exits { get; set; }
    public SortedDictionary<string, long> ExitsByReason { get; } = new(StringComparer.Ordinal);
    public long PageFaults { get; set; }
    public long NotPresent { get; set; }
    public long PageReady { get; set; }
    public long WakeAll { get; set; }
    public long SyncFallbacks { get; set; }
    public long MaxOutstanding { get; set; }
    public long Halts { get; set; }
    public long[] ModeNs { get; } = new long[4];
}

/// <summary>The not-present → page-ready latency, ns, nearest-rank percentiles.</summary>
public sealed record Latency(long Samples, long P50, long P90, long P99, long Max);

/// <summary>
/// The statistics of one run from its trace alone (seeds/004: tracepoints "converted to stats by
/// userspace"). The window is the VMM's measured interval (<c>vmm_measure_begin</c> to
/// <c>vmm_measure_end</c>, in trace order, as the run's own figures are taken), or the whole trace
/// when it has no markers or <c>--all</c> is given. The <c>apf</c> figures count where the run
/// counts: <c>kvm_async_pf_inject</c> (reason 1: not present; reason 2: page ready, or wake all for
/// token 0xffffffff), <c>kvm_async_pf_sync_fallback</c>, and the largest
/// <c>kvm_async_pf_queued</c> after a setup, starting from the vCPUs' queues when the window opens.
/// </summary>
public sealed class RunStats
{
    private const long WakeAllToken = 0xffffffff;

    private readonly bool _wholeTrace;
    private readonly Dictionary<string, long> _allCounts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _windowCounts = new(StringComparer.Ordinal);
    private readonly Dictionary<(int Vm, int Vcpu), VcpuFigures> _vcpus = [];
    private readonly Dictionary<(int Vm, int Vcpu), VcpuTimeModel> _models = [];
    private readonly Dictionary<(int Vm, int Vcpu), int> _queued = [];
    private readonly Dictionary<(int Vm, long Token), long> _notPresentAt = [];
    private readonly SortedDictionary<string, long> _fallbackReasons = new(StringComparer.Ordinal);
    private readonly List<long> _latencies = [];
    private readonly List<(long TimeNs, long Outstanding)> _outstanding = [];
    private long _notPresent, _pageReady, _wakeAll, _syncFallbacks, _maxOutstanding;
    private long _firstNs = -1, _lastNs;

    public RunStats(long runId, bool wholeTrace = false)
    {
        RunId = runId;
        _wholeTrace = wholeTrace;
    }

    public long RunId { get; }

    /// <summary>vmm_run's description of the run, if the trace has it.</summary>
    public string? Config { get; private set; }

    public long VmEntryNs { get; private set; }

    public long VmExitNs { get; private set; }

    /// <summary>Virtual time of vmm_measure_begin, or -1.</summary>
    public long BeginNs { get; private set; } = -1;

    /// <summary>Virtual time of vmm_measure_end, or -1.</summary>
    public long EndNs { get; private set; } = -1;

    /// <summary>True when the figures cover the measured interval (both markers seen and not <c>--all</c>).</summary>
    public bool Windowed => !_wholeTrace && BeginNs >= 0 && EndNs >= 0;

    /// <summary>Virtual time the figures cover, ns.</summary>
    public long SpanNs => Windowed ? EndNs - BeginNs : Math.Max(0, _lastNs - _firstNs);

    /// <summary>The latest virtual time an event of this run carried.</summary>
    public long LastNs => _lastNs;

    /// <summary>Events of this run in the trace.</summary>
    public long TotalEvents { get; private set; }

    private bool InWindow => _wholeTrace || (BeginNs >= 0 && EndNs < 0);

    /// <summary>Feeds the next event of this run (trace order).</summary>
    public void Add(TraceRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        string name = r.Name;
        long t = r.TimeNs;
        TotalEvents++;
        if (_firstNs < 0)
        {
            _firstNs = t;
        }
        _lastNs = Math.Max(_lastNs, t);
        _allCounts[name] = _allCounts.GetValueOrDefault(name) + 1;
        if (_wholeTrace && name is "vmm_run" or "vmm_measure_begin" or "vmm_measure_end")
        {
            _windowCounts[name] = _windowCounts.GetValueOrDefault(name) + 1;
        }
        switch (name)
        {
            case "vmm_run":
                Config = r.Text("Config");
                VmEntryNs = r.Long("VmEntryNs");
                VmExitNs = r.Long("VmExitNs");
                return;
            case "vmm_measure_begin":
                BeginNs = t;
                _maxOutstanding = _queued.Count == 0 ? 0 : _queued.Values.Max();
                _outstanding.Add((t, _queued.Values.Sum()));
                return;
            case "vmm_measure_end":
                EndNs = t;
                return;
        }
        bool counted = InWindow;
        if (counted)
        {
            _windowCounts[name] = _windowCounts.GetValueOrDefault(name) + 1;
        }
        if (r.Provider == TraceProviders.Kvm && r.VcpuId >= 0)
        {
            Host(r, counted);
        }
    }

    private void Host(TraceRecord r, bool counted)
    {
        var key = (r.VmId, r.VcpuId);
        Model(key).Apply(r);
        var v = Vcpu(key);
        switch (r.Name)
        {
            case "kvm_exit" when counted:
                v.Exits++;
                string reason = ExitReasons.Name(r.Int("ExitReason"));
                v.ExitsByReason[reason] = v.ExitsByReason.GetValueOrDefault(reason) + 1;
                break;
            case "kvm_page_fault" when counted:
                v.PageFaults++;
                break;
            case "kvm_vcpu_block" when counted:
                v.Halts++;
                break;
            case "kvm_async_pf_inject" when counted:
                Inject(v, r.Int("Reason"), r.Long("Token"));
                break;
            case "kvm_async_pf_sync_fallback" when counted:
                v.SyncFallbacks++;
                _syncFallbacks++;
                string why = r.Text("Reason");
                _fallbackReasons[why] = _fallbackReasons.GetValueOrDefault(why) + 1;
                break;
            case "kvm_async_pf_queued":
                Queued(key, v, r.Int("Queued"), r.Text("Change"), r.TimeNs, counted);
                break;
            case "kvm_async_pf_not_present" when counted:
                _notPresentAt[(r.VmId, r.Long("Token"))] = r.TimeNs;
                break;
            case "kvm_async_pf_ready":
                if (_notPresentAt.Remove((r.VmId, r.Long("Token")), out long since))
                {
                    _latencies.Add(r.TimeNs - since);
                }
                break;
        }
    }

    private void Inject(VcpuFigures v, int reason, long token)
    {
        if (reason == 1)
        {
            v.NotPresent++;
            _notPresent++;
        }
        else if (token == WakeAllToken)
        {
            v.WakeAll++;
            _wakeAll++;
        }
        else
        {
            v.PageReady++;
            _pageReady++;
        }
    }

    private void Queued((int, int) key, VcpuFigures v, int queued, string change, long t, bool counted)
    {
        _queued[key] = queued;
        if (!counted)
        {
            return;
        }
        if (change == "setup")
        {
            _maxOutstanding = Math.Max(_maxOutstanding, queued);
            v.MaxOutstanding = Math.Max(v.MaxOutstanding, queued);
        }
        _outstanding.Add((t, _queued.Values.Sum()));
    }

    private VcpuFigures Vcpu((int Vm, int Vcpu) key)
    {
        if (!_vcpus.TryGetValue(key, out var v))
        {
            v = new VcpuFigures(key.Vm, key.Vcpu);
            _vcpus[key] = v;
        }
        return v;
    }

    private VcpuTimeModel Model((int Vm, int Vcpu) key)
    {
        if (!_models.TryGetValue(key, out var model))
        {
            var v = Vcpu(key);
            model = new VcpuTimeModel(VmEntryNs, VmExitNs, (mode, start, end) => v.ModeNs[(int)mode] += Overlap(start, end));
            _models[key] = model;
        }
        return model;
    }

    /// <summary>How much of [start, end) lies in the window (segments reach here only once every earlier event was seen).</summary>
    private long Overlap(long start, long end)
    {
        if (_wholeTrace)
        {
            return end - start;
        }
        if (BeginNs < 0)
        {
            return 0;
        }
        long to = EndNs >= 0 ? Math.Min(end, EndNs) : end;
        return Math.Max(0, to - Math.Max(start, BeginNs));
    }

    /// <summary>Ends the trace: the vCPUs' last stretches are accounted up to the end of the window.</summary>
    public void Finish()
    {
        long end = Windowed ? EndNs : _lastNs;
        foreach (var model in _models.Values)
        {
            model.Flush(Math.Max(end, _lastNs));
        }
    }

    /// <summary>Event counts: over the window, or the whole trace.</summary>
    public IReadOnlyDictionary<string, long> Counts => Windowed || _wholeTrace ? _windowCounts : _allCounts;

    public ApfFigures Apf => Windowed || _wholeTrace
        ? new ApfFigures(_notPresent, _pageReady, _wakeAll, _syncFallbacks, _maxOutstanding)
        : new ApfFigures(0, 0, 0, 0, 0);

    /// <summary>The synchronous fallbacks of <see cref="Apf"/> by the reason their tracepoint gives (cap, allocation, cpl, ...).</summary>
    public IReadOnlyDictionary<string, long> SyncFallbackReasons => Windowed || _wholeTrace
        ? _fallbackReasons
        : new SortedDictionary<string, long>(StringComparer.Ordinal);

    public IEnumerable<VcpuFigures> Vcpus => _vcpus.Values.OrderBy(v => v.VmId).ThenBy(v => v.VcpuId);

    /// <summary>True when the trace covers the run from its start (vmm_run seen), so the vCPU time split is complete.</summary>
    public bool HasRunStart => Config is not null;

    public Latency Latency
    {
        get
        {
            if (_latencies.Count == 0)
            {
                return new Latency(0, 0, 0, 0, 0);
            }
            var sorted = _latencies.Order().ToArray();
            long Rank(double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
            return new Latency(sorted.Length, Rank(0.50), Rank(0.90), Rank(0.99), sorted[^1]);
        }
    }

    /// <summary>
    /// Outstanding async faults of all vCPUs over the window in <paramref name="buckets"/> equal
    /// steps: (offset from the start, the most outstanding at any time in the step).
    /// </summary>
    public IReadOnlyList<(long OffsetNs, long Max)> OutstandingOverTime(int buckets)
    {
        long start = Windowed ? BeginNs : _firstNs;
        long span = SpanNs;
        if (buckets <= 0 || span <= 0 || _outstanding.Count == 0)
        {
            return [];
        }
        var max = new long[buckets];
        long current = 0;
        int next = 0;
        for (int b = 0; b < buckets; b++)
        {
            long from = start + (span * b / buckets);
            long to = start + (span * (b + 1) / buckets);
            long peak = current;
            while (next < _outstanding.Count && _outstanding[next].TimeNs < to)
            {
                current = _outstanding[next].Outstanding;
                peak = _outstanding[next].TimeNs >= from ? Math.Max(peak, current) : current;
                next++;
            }
            max[b] = Math.Max(peak, current);
        }
        return [.. max.Select((m, b) => (span * b / buckets, m))];
    }
}
