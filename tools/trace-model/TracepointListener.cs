using System.Diagnostics.Tracing;

namespace KvmApf.Tracing;

/// <summary>
/// An in-process listener on every event of <see cref="TraceProviders.All"/> (every keyword, level
/// Verbose) and nothing else: derived listeners see only our tracepoints, in
/// <see cref="OnTracepoint"/>. EventListener may report sources and events before a derived
/// constructor has run, so <see cref="OnTracepoint"/> must cope with fields not yet set.
/// </summary>
public abstract class TracepointListener : EventListener
{
    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        ArgumentNullException.ThrowIfNull(eventSource);
        if (TraceProviders.IsOurs(eventSource.Name))
        {
            EnableEvents(eventSource, EventLevel.Verbose, EventKeywords.All);
        }
    }

    protected sealed override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        if (TraceProviders.IsOurs(eventData.EventSource.Name))
        {
            OnTracepoint(eventData);
        }
    }

    /// <summary>An event of one of our providers, as it is written.</summary>
    protected abstract void OnTracepoint(EventWrittenEventArgs eventData);
}
