using System.Diagnostics;
using System.Diagnostics.Tracing;
using KvmApf.Tracing;
using KvmApf.Vmm;
using Linux;
using Microsoft.Diagnostics.NETCore.Client;

namespace KvmApf.Bench;

/// <summary>
/// <c>--trace FILE</c>: an EventPipe session on this very process (DiagnosticsClient on our own
/// pid) for the run's providers, every keyword at level Verbose, with stack walks and rundown off,
/// streamed into a <c>.nettrace</c> by a copy task while the simulation runs. The file appears
/// whole when <see cref="Finish"/> returns, or not at all.
/// </summary>
public sealed class TraceCapture : IDisposable
{
    /// <summary>The runtime's buffer for the session, MB: the simulation writes faster than the copy drains in bursts.</summary>
    public const int BufferMB = 1024;

    private static readonly TimeSpan EnableTimeout = TimeSpan.FromSeconds(10);

    private readonly EventPipeSession _session;
    private readonly FileStream _file;
    private readonly Task _copy;
    private readonly string _temp;
    private readonly string _path;
    private readonly string _option;
    private bool _finished;

    private TraceCapture(EventPipeSession session, FileStream file, string temp, string path, string option)
    {
        _session = session;
        _file = file;
        _temp = temp;
        _path = path;
        _option = option;
        _copy = session.EventStream.CopyToAsync(file);
    }

    /// <summary>The EventSources the session must have enabled before the run starts.</summary>
    public static IReadOnlyList<EventSource> Sources => [KvmTrace.Log, KvmGuestTrace.Log, SchedTrace.Log, VmmTrace.Log];

    /// <summary>Starts the session; returns once every source is enabled. Throws <see cref="BadInputException"/> if the runtime refuses.</summary>
    public static TraceCapture Start(string path, string option = "--trace")
    {
        ArgumentNullException.ThrowIfNull(path);
        var providers = TraceProviders.All.Select(p => new EventPipeProvider(p, EventLevel.Verbose, -1)).ToArray();
        EventPipeSession session;
        try
        {
            session = new DiagnosticsClient(Environment.ProcessId).StartEventPipeSession(
                new EventPipeSessionConfiguration(providers, BufferMB, requestRundown: false, requestStackwalk: false));
        }
        catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or UnauthorizedAccessException)
        {
            // The client's first sentence says what failed; the rest is its advice on containers and TMPDIR.
            string first = e.Message.ReplaceLineEndings(" ").Split(". ", 2)[0].TrimEnd('.');
            throw BadInputException.For(option, $"cannot start an EventPipe session on this process (is DOTNET_EnableDiagnostics=0 set, or /tmp not writable?): {first}");
        }
        string temp = OutputFile.Temporary(path, option);
        var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        var capture = new TraceCapture(session, file, temp, path, option);
        var wait = Stopwatch.StartNew();
        while (!Sources.All(s => s.IsEnabled()) && wait.Elapsed < EnableTimeout)
        {
            Thread.Sleep(1);
        }
        return capture;
    }

    /// <summary>Stops the session, waits until every event is in the file and moves it into place; returns its size in bytes.</summary>
    public long Finish()
    {
        _finished = true;
        _session.Stop();
        _copy.GetAwaiter().GetResult();
        long size = _file.Length;
        _file.Dispose();
        _session.Dispose();
        OutputFile.Commit(_temp, _path, _option);
        return size;
    }

    /// <summary>Without <see cref="Finish"/> (the run failed): ends the session and leaves no file.</summary>
    public void Dispose()
    {
        if (_finished)
        {
            return;
        }
        _finished = true;
        try
        {
            _session.Stop();
            _copy.Wait(EnableTimeout);
        }
        catch (Exception e) when (e is ServerNotAvailableException or ServerErrorException or IOException or AggregateException or ObjectDisposedException)
        {
            // The session is going away in any case.
        }
        _file.Dispose();
        _session.Dispose();
        OutputFile.TryDelete(_temp);
    }
}
