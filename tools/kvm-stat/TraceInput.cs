using System.Diagnostics.Tracing;
using KvmApf.Tracing;
using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;

namespace KvmApf.KvmStat;

/// <summary>A <see cref="TraceRecord"/> over TraceEvent's dynamic parser (EventPipe carries each event's field names).</summary>
public sealed class DynamicRecord : TraceRecord
{
    private TraceEvent _e = null!;

    /// <summary>Points the record at the event of the current callback (TraceEvent reuses its objects).</summary>
    public DynamicRecord Of(TraceEvent e)
    {
        _e = e;
        return this;
    }

    public override string Provider => _e.ProviderName;

    public override string Name => _e.EventName;

    public override object? Field(string name) => _e.PayloadByName(name);
}

/// <summary>Where kvm-stat reads events from: a <c>.nettrace</c> file, or a live process over EventPipe.</summary>
public static class TraceInput
{
    /// <summary>Reads <paramref name="path"/> and hands every event of <see cref="TraceProviders.All"/> to <paramref name="sink"/>, in order.</summary>
    public static void ReadFile(string path, Action<TraceRecord> sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        using var source = new EventPipeEventSource(path);
        Pump(source, sink);
    }

    /// <summary>
    /// Attaches to process <paramref name="pid"/> with an EventPipe session for our providers (no
    /// stacks, no rundown) and hands its events to <paramref name="sink"/> on the calling thread's
    /// behalf until the process exits or <paramref name="stop"/> is cancelled. Returns the events
    /// the runtime dropped, if it says.
    /// </summary>
    public static void Attach(int pid, Action<TraceRecord> sink, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(sink);
        var client = new DiagnosticsClient(pid);
        var providers = TraceProviders.All.Select(p => new EventPipeProvider(p, EventLevel.Verbose, -1)).ToArray();
        using var session = client.StartEventPipeSession(new EventPipeSessionConfiguration(providers, 512, requestRundown: false, requestStackwalk: false));
        using var source = new EventPipeEventSource(session.EventStream);
        using var registration = stop.Register(() =>
        {
            try
            {
                session.Stop();
            }
            catch (Exception e) when (e is ServerNotAvailableException or IOException or ObjectDisposedException)
            {
                // The process is gone already: the stream ends by itself.
            }
        });
        Pump(source, sink);
    }

    private static void Pump(EventPipeEventSource source, Action<TraceRecord> sink)
    {
        var record = new DynamicRecord();
        source.Dynamic.All += e =>
        {
            if (TraceProviders.IsOurs(e.ProviderName))
            {
                sink(record.Of(e));
            }
        };
        source.Process();
    }
}
