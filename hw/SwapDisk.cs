namespace Hw;

/// <summary>Someone waiting for a disk request (the host's bio end_io).</summary>
public interface IDiskCompletion
{
    void DiskRequestDone(DiskRequest request);
}

/// <summary>A read or write of <see cref="Count"/> consecutive 4 KiB blocks starting at <see cref="Block"/>.</summary>
public sealed class DiskRequest(long block, int count, bool write, IDiskCompletion completion, object? cookie = null)
{
    public long Block { get; } = block;
    public int Count { get; } = count;
    public bool Write { get; } = write;
    public IDiskCompletion Completion { get; } = completion;
    /// <summary>The submitter's own reference (the host's page or bio).</summary>
    public object? Cookie { get; } = cookie;
    /// <summary>Virtual time the request reached the queue.</summary>
    public long Submitted { get; internal set; }
    /// <summary>Virtual time its service started.</summary>
    public long Started { get; internal set; }
}

/// <summary>Service-time parameters of a rotating disk; every value documented in Documentation/sim-model.md.</summary>
public sealed record DiskGeometry
{
    /// <summary>Shortest seek (track to track), ns. Seagate Barracuda 7200.12 data sheet: 0.8 ms read.</summary>
    public long MinSeekNs { get; init; } = 800_000;
    /// <summary>Longest seek (full stroke), ns. Same data sheet class of drive: about 17 ms.</summary>
    public long MaxSeekNs { get; init; } = 17_000_000;
    /// <summary>One revolution, ns: 60 s / 7200.</summary>
    public long RotationNs { get; init; } = 8_333_333;
    /// <summary>Sustained transfer, bytes per second: 125 MB/s (Barracuda 7200.12 sustained rate).</summary>
    public long BytesPerSecond { get; init; } = 125_000_000;
    /// <summary>Number of 4 KiB blocks on the device.</summary>
    public long Blocks { get; init; } = 4L << 20;
}

/// <summary>The block device's interface, so a fixture can substitute it.</summary>
public interface IBlockDevice
{
    void Submit(DiskRequest request);

    long Reads { get; }

    long Writes { get; }

    /// <summary>Content of a block written earlier (page tables that were swapped), or null.</summary>
    byte[]? ReadContent(long block);

    void WriteContent(long block, byte[]? content);
}

/// <summary>
/// The swap disk: one FIFO request queue served one request at a time. A request that starts
/// where the previous one ended costs only its transfer; any other pays a seek that grows with
/// the square root of the distance (the usual arm model) and a uniformly random rotational delay.
/// </summary>
public sealed class SwapDisk : SimEvent, IBlockDevice
{
    private readonly EventLoop _loop;
    private readonly Rng _rng;
    private readonly DiskGeometry _geometry;
    private readonly Queue<DiskRequest> _queue = new();
    private readonly Dictionary<long, byte[]> _content = [];
    private DiskRequest? _busy;
    private long _head;

    public SwapDisk(EventLoop loop, Rng rng, DiskGeometry geometry)
    {
        _loop = loop;
        _rng = rng;
        _geometry = geometry;
    }

    public long Reads { get; private set; }

    public long Writes { get; private set; }

    /// <summary>Total time the disk spent serving requests, ns.</summary>
    public long BusyNs { get; private set; }

    /// <summary>Requests waiting, the one in service excluded.</summary>
    public int QueueDepth => _queue.Count;

    public DiskGeometry Geometry => _geometry;

    public void Submit(DiskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Block < 0 || request.Count <= 0 || request.Block + request.Count > _geometry.Blocks)
        {
            throw new ArgumentOutOfRangeException(nameof(request), $"blocks {request.Block}+{request.Count} outside the device");
        }
        request.Submitted = _loop.Now;
        _queue.Enqueue(request);
        if (_busy is null)
        {
            StartNext();
        }
    }

    /// <summary>The service time of <paramref name="request"/> with the head where it is now.</summary>
    public long ServiceTime(DiskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        long transfer = request.Count * (long)PhysicalMemory.PageSize * 1_000_000_000L / _geometry.BytesPerSecond;
        if (request.Block == _head)
        {
            return transfer;
        }
        double distance = Math.Abs(request.Block - _head) / (double)_geometry.Blocks;
        long seek = _geometry.MinSeekNs + (long)((_geometry.MaxSeekNs - _geometry.MinSeekNs) * Math.Sqrt(distance));
        long rotation = _geometry.RotationNs > 0 ? (long)_rng.NextBelow((ulong)_geometry.RotationNs) : 0;
        return seek + rotation + transfer;
    }

    public byte[]? ReadContent(long block) => _content.TryGetValue(block, out var c) ? c : null;

    public void WriteContent(long block, byte[]? content)
    {
        if (content is null)
        {
            _content.Remove(block);
        }
        else
        {
            _content[block] = content;
        }
    }

    private void StartNext()
    {
        if (!_queue.TryDequeue(out var next))
        {
            _busy = null;
            return;
        }
        _busy = next;
        next.Started = _loop.Now;
        long service = ServiceTime(next);
        BusyNs += service;
        _head = next.Block + next.Count;
        _loop.ArmAfter(this, service);
    }

    protected override void Fire()
    {
        var done = _busy!;
        if (done.Write)
        {
            Writes++;
        }
        else
        {
            Reads++;
        }
        StartNext();
        done.Completion.DiskRequestDone(done);
    }
}
