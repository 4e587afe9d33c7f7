using Hw;

namespace KvmApf.Tests.Rigs;

/// <summary>One request the host sent to the swap device, with the virtual times it was submitted and completed.</summary>
public sealed class DiskTrace(long block, int count, bool write, long submittedNs)
{
    public long Block { get; } = block;

    public int Count { get; } = count;

    public bool Write { get; } = write;

    public long SubmittedNs { get; } = submittedNs;

    /// <summary>Virtual time of the completion, or -1 while the request is in flight.</summary>
    public long CompletedNs { get; internal set; } = -1;

    /// <summary>Submission to completion, ns: what a task waiting for it waits.</summary>
    public long LatencyNs => CompletedNs - SubmittedNs;

    public bool Covers(ulong slot) => (long)slot >= Block && (long)slot < Block + Count;

    public override string ToString() => $"{(Write ? "write" : "read")} {Block}+{Count} @{SubmittedNs}..{CompletedNs}";
}

/// <summary>
/// A block device that passes every request to the real one and records it (a hand-written
/// decorator rather than a substitute: the real disk's timing is what the fixtures measure).
/// <see cref="Submitted"/> and <see cref="Completed"/> run at the request's virtual times, before
/// the host sees the completion, so a fixture can sample the machine exactly then.
/// </summary>
public sealed class RecordingBlockDevice(IBlockDevice inner, EventLoop loop) : IBlockDevice
{
    private readonly List<DiskTrace> _requests = [];

    /// <summary>Every request so far, in submission order.</summary>
    public IReadOnlyList<DiskTrace> Requests => _requests;

    /// <summary>Requests submitted and not completed.</summary>
    public int Outstanding { get; private set; }

    /// <summary>Raised at a request's submission, at its virtual time.</summary>
    public event Action<DiskTrace>? Submitted;

    /// <summary>Raised at a request's completion, before the host's completion handler runs.</summary>
    public event Action<DiskTrace>? Completed;

    public long Reads => inner.Reads;

    public long Writes => inner.Writes;

    public void Submit(DiskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var trace = new DiskTrace(request.Block, request.Count, request.Write, loop.Now);
        _requests.Add(trace);
        Outstanding++;
        Submitted?.Invoke(trace);
        inner.Submit(new DiskRequest(request.Block, request.Count, request.Write, new Forward(this, trace, request), request.Cookie));
    }

    public byte[]? ReadContent(long block) => inner.ReadContent(block);

    public void WriteContent(long block, byte[]? content) => inner.WriteContent(block, content);

    /// <summary>The requests submitted in [<paramref name="fromNs"/>, <paramref name="toNs"/>].</summary>
    public IEnumerable<DiskTrace> Between(long fromNs, long toNs) =>
        _requests.Where(r => r.SubmittedNs >= fromNs && r.SubmittedNs <= toNs);

    private void Done(DiskTrace trace, DiskRequest original)
    {
        trace.CompletedNs = loop.Now;
        Outstanding--;
        Completed?.Invoke(trace);
        original.Completion.DiskRequestDone(original);
    }

    private sealed class Forward(RecordingBlockDevice owner, DiskTrace trace, DiskRequest original) : IDiskCompletion
    {
        public void DiskRequestDone(DiskRequest request) => owner.Done(trace, original);
    }
}
