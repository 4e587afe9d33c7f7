using System.Diagnostics.Tracing;
using System.Globalization;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>One event of the host's <see cref="KvmTrace"/> tracepoints, its fields by name.</summary>
/// <param name="Name">The TRACE_EVENT's name (kvm_async_pf_not_present, ...).</param>
/// <param name="TimeNs">The virtual time the event carries.</param>
/// <param name="VcpuId">The vCPU it is about.</param>
/// <param name="Fields">Every payload field, by its TP_PROTO name.</param>
public readonly record struct KvmTraceEvent(string Name, long TimeNs, int VcpuId, IReadOnlyDictionary<string, object?> Fields)
{
    /// <summary>A numeric field.</summary>
    public long Long(string field) => Convert.ToInt64(Fields[field], CultureInfo.InvariantCulture);

    /// <summary>The token of a not-present or page-ready, as the guest sees it in CR2.</summary>
    public uint Token => unchecked((uint)Long("Token"));

    /// <summary>The faulting address the event names (a gpa under TDP, the gva under shadow paging).</summary>
    public long Gva => Long("Gva");

    /// <summary>kvm_try_async_get_page's pfn (-1 when the page needs I/O).</summary>
    public long Pfn => Long("Pfn");

    /// <summary>kvm_try_async_get_page's verdict: the page needs I/O.</summary>
    public bool Async => Fields["Async"] is true || (Fields["Async"] is not bool && Long("Async") != 0);

    /// <summary>kvm_async_pf_sync_fallback's reason (cap, allocation, cpl, ...).</summary>
    public string? Reason => Fields.GetValueOrDefault("Reason") as string;

    public override string ToString() =>
        $"{Name} @{TimeNs} vcpu{VcpuId} {string.Join(' ', Fields.Select(f => $"{f.Key}={f.Value}"))}";
}

/// <summary>
/// Records the <see cref="KvmTrace"/> events of one host kernel (its <c>TraceRunId</c>): the
/// tracepoints seeds/004 asked for instead of statistics are what the fixtures assert on.
/// EventSources are process-wide, so the recorder keeps only its own run's events; fields are
/// read by name, so the recorder does not depend on the order of the payload.
/// </summary>
public sealed class HostKvmTrace : EventListener
{
    private readonly List<KvmTraceEvent> _events = [];
    private readonly long _runId;

    public HostKvmTrace(long runId)
    {
        _runId = runId;
        EnableEvents(KvmTrace.Log, EventLevel.Verbose, KvmTrace.Keywords.AsyncPf);
    }

    public IReadOnlyList<KvmTraceEvent> Events => _events;

    public IEnumerable<KvmTraceEvent> Named(string name) => _events.Where(e => e.Name == name);

    /// <summary>kvm_async_pf_not_present events.</summary>
    public IEnumerable<KvmTraceEvent> NotPresent => Named("kvm_async_pf_not_present");

    /// <summary>kvm_async_pf_ready events (token ~0: wake all).</summary>
    public IEnumerable<KvmTraceEvent> Ready => Named("kvm_async_pf_ready");

    /// <summary>kvm_async_pf_completed events: a worker has the page.</summary>
    public IEnumerable<KvmTraceEvent> Completed => Named("kvm_async_pf_completed");

    /// <summary>kvm_try_async_get_page events: a fault that could go async looked for the page without I/O.</summary>
    public IEnumerable<KvmTraceEvent> TryAsyncGetPage => Named("kvm_try_async_get_page");

    /// <summary>kvm_async_pf_sync_fallback events.</summary>
    public IEnumerable<KvmTraceEvent> SyncFallback => Named("kvm_async_pf_sync_fallback");

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        if (!ReferenceEquals(eventData.EventSource, KvmTrace.Log) || eventData.Payload is not { } payload || eventData.PayloadNames is not { } names)
        {
            return;
        }
        var fields = new Dictionary<string, object?>(names.Count);
        for (int i = 0; i < names.Count && i < payload.Count; i++)
        {
            fields[names[i]] = payload[i];
        }
        if (!fields.TryGetValue("RunId", out var run) || Convert.ToInt64(run, CultureInfo.InvariantCulture) != _runId)
        {
            return;
        }
        _events.Add(new KvmTraceEvent(
            eventData.EventName ?? "?",
            Convert.ToInt64(fields.GetValueOrDefault("TimeNs"), CultureInfo.InvariantCulture),
            Convert.ToInt32(fields.GetValueOrDefault("VcpuId"), CultureInfo.InvariantCulture),
            fields));
    }
}
