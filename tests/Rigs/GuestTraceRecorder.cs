using System.Diagnostics.Tracing;

namespace KvmApf.Tests.Rigs;

/// <summary>
/// One async PF tracepoint hit, host ("Linux-KVM") or guest ("Linux-KVM-Guest"): the event name,
/// the vCPU (host) or CPU (guest; -1 if the event names neither), the virtual time, and the fields that the event has (token,
/// pid, the number a wake-all woke, a fallback's reason), 0 or null when it has not.
/// </summary>
public readonly record struct ApfTraceEvent(bool Guest, string Name, int Cpu, long TimeNs, long Token, int Pid, int Woken, string? Reason);

/// <summary>
/// An in-process EventListener on the host's and the guest's async PF tracepoints that keeps the
/// events of one run (by the run id every event carries). EventSources are process-wide, so a
/// fixture that uses it is [NonParallelizable].
/// </summary>
public sealed class GuestTraceRecorder : EventListener
{
    private const string HostSource = "Linux-KVM";
    private const string GuestSource = "Linux-KVM-Guest";

    private readonly List<ApfTraceEvent> _events = [];
    private long _runId = -1;

    /// <summary>The events of the run being recorded, in the order they were written.</summary>
    public IReadOnlyList<ApfTraceEvent> Events => _events;

    /// <summary>Keeps only the events of run <paramref name="runId"/> from now on.</summary>
    public void Record(long runId)
    {
        _runId = runId;
        _events.Clear();
    }

    /// <summary>The host's events named <paramref name="name"/>.</summary>
    public IEnumerable<ApfTraceEvent> Host(string name) => _events.Where(e => !e.Guest && e.Name == name);

    /// <summary>The guest's events named <paramref name="name"/>.</summary>
    public IEnumerable<ApfTraceEvent> Guest(string name) => _events.Where(e => e.Guest && e.Name == name);

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        ArgumentNullException.ThrowIfNull(eventSource);
        if (eventSource.Name is HostSource or GuestSource)
        {
            // Informational: every async PF event but kvm_try_async_get_page, which fires on every fault.
            EnableEvents(eventSource, EventLevel.Informational, (EventKeywords)1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        if (eventData.Payload is not { } payload || eventData.PayloadNames is not { } names || eventData.EventName is not { } name)
        {
            return;
        }
        object? Field(string field)
        {
            int i = names.IndexOf(field);
            return i >= 0 ? payload[i] : null;
        }
        if (Field("RunId") is not long runId || runId != _runId)
        {
            return;
        }
        bool guest = eventData.EventSource.Name == GuestSource;
        _events.Add(new ApfTraceEvent(
            guest,
            name,
            (Field("VcpuId") ?? Field("Cpu")) is { } cpu ? Convert.ToInt32(cpu, System.Globalization.CultureInfo.InvariantCulture) : -1,
            Field("TimeNs") as long? ?? 0,
            Field("Token") as long? ?? 0,
            Field("Pid") as int? ?? 0,
            Field("Woken") as int? ?? 0,
            Field("Reason") as string));
    }
}
