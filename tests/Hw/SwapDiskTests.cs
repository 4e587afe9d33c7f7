using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The swap disk (hw/SwapDisk.cs): one FIFO queue served one request at a time, transfer-only
/// cost at the head position, seek and rotation otherwise, and its counters.
/// </summary>
[TestFixture]
[Category("hw")]
public class SwapDiskTests
{
    private const long BlockTransferNs = 32_768; // 4096 B at the default 125 MB/s

    private EventLoop _loop = null!;
    private Completions _done = null!;

    [SetUp]
    public void SetUp()
    {
        _loop = new EventLoop();
        _done = new Completions(_loop);
    }

    [TestCase(1, 125_000_000L, 32_768L)]
    [TestCase(8, 125_000_000L, 262_144L)]
    [TestCase(1, 100_000_000L, 40_960L)]
    [TestCase(3, 50_000_000L, 245_760L)]
    public void Submit_RequestAtHeadPosition_CostsOnlyTransfer(int count, long bytesPerSecond, long expectedNs)
    {
        var disk = NewDisk(new DiskGeometry { BytesPerSecond = bytesPerSecond });

        disk.Submit(Read(0, count));
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_done.Times, Is.EqualTo(new[] { expectedNs }));
            Assert.That(disk.BusyNs, Is.EqualTo(expectedNs));
        }
    }

    [Test]
    public void Submit_RequestWhereLastOneEnded_CostsOnlyTransfer()
    {
        var disk = NewDisk();
        disk.Submit(Read(1_000, 4));
        _loop.Run();
        long firstDone = _loop.Now;

        disk.Submit(Read(1_004, 2));
        _loop.Run();

        Assert.That(_loop.Now - firstDone, Is.EqualTo(2 * BlockTransferNs));
    }

    private static IEnumerable<TestCaseData> RandomRequests()
    {
        foreach (ulong seed in (ulong[])[1, 2, 3])
        {
            foreach (long block in (long[])[1, 4_096, 2L << 20, (4L << 20) - 1])
            {
                yield return new TestCaseData(seed, block).SetArgDisplayNames($"seed {seed}", $"block {block}");
            }
        }
    }

    [TestCaseSource(nameof(RandomRequests))]
    public void Submit_RequestAwayFromHead_CostsSeekRotationAndTransfer(ulong seed, long block)
    {
        var geometry = new DiskGeometry();
        var disk = new SwapDisk(_loop, new Rng(seed), geometry);

        disk.Submit(Read(block, 1));
        _loop.Run();

        Assert.That(_loop.Now, Is.InRange(
            geometry.MinSeekNs + BlockTransferNs,
            geometry.MaxSeekNs + geometry.RotationNs + BlockTransferNs));
    }

    /// <summary>With rotation made negligible, the seek grows with the square root of the distance (the arm model).</summary>
    [TestCase(0.25, 8_900_000L)]
    [TestCase(1.0, 17_000_000L)]
    [TestCase(1.0 / 1_024, 1_306_250L)]
    public void ServiceTime_NoRotation_SeekGrowsWithSquareRootOfDistance(double fraction, long expectedSeekNs)
    {
        var geometry = new DiskGeometry { RotationNs = 1, Blocks = 1L << 20 };
        var disk = new SwapDisk(_loop, new Rng(1), geometry);
        long block = (long)(fraction * geometry.Blocks);
        if (block == geometry.Blocks)
        {
            block--;
        }

        long service = disk.ServiceTime(Read(block, 1));

        Assert.That(service - BlockTransferNs, Is.EqualTo(expectedSeekNs).Within(20));
    }

    [Test]
    public void Submit_RandomRequestOnDiskWithoutRotation_CostsSeekAndTransfer()
    {
        var geometry = new DiskGeometry { RotationNs = 0, MinSeekNs = 100, MaxSeekNs = 100 };
        var disk = NewDisk(geometry);

        disk.Submit(Read(77, 1));
        _loop.Run();

        Assert.That(_done.Times, Is.EqualTo(new[] { 100 + BlockTransferNs }));
    }

    [Test]
    public void Submit_SeveralAtOnce_ServedFifoOneAtATime()
    {
        var disk = NewDisk();
        var requests = new[] { Read(0, 1), Read(1, 1), Read(500_000, 1), Read(500_001, 2) };

        foreach (var r in requests)
        {
            disk.Submit(r);
        }
        int depthAfterSubmit = disk.QueueDepth;
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(depthAfterSubmit, Is.EqualTo(3), "the first request is in service, not queued");
            Assert.That(_done.Requests, Is.EqualTo(requests));
            Assert.That(requests.Select(r => r.Submitted), Has.All.Zero);
            Assert.That(requests[0].Started, Is.Zero);
            for (int i = 1; i < requests.Length; i++)
            {
                Assert.That(requests[i].Started, Is.EqualTo(_done.Times[i - 1]), $"request {i} starts when {i - 1} completes");
            }
            Assert.That(_done.Times[1], Is.EqualTo(2 * BlockTransferNs));
            Assert.That(_done.Times[2] - _done.Times[1], Is.GreaterThanOrEqualTo(new DiskGeometry().MinSeekNs + BlockTransferNs));
            Assert.That(_done.Times[3] - _done.Times[2], Is.EqualTo(2 * BlockTransferNs));
            Assert.That(_done.Depths, Is.EqualTo(new[] { 2, 1, 0, 0 }));
            Assert.That(disk.BusyNs, Is.EqualTo(_done.Times[3]), "back to back from time 0");
        }
    }

    [Test]
    public void Submit_WhileIdleLater_StartsAtSubmissionTime()
    {
        var disk = NewDisk();
        var late = Read(1, 1);
        disk.Submit(Read(0, 1));
        _loop.Arm(new SimTimer(() => disk.Submit(late)), 1_000_000);

        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_done.Times, Is.EqualTo(new[] { BlockTransferNs, 1_000_000 + BlockTransferNs }));
            Assert.That(late.Submitted, Is.EqualTo(1_000_000));
            Assert.That(late.Started, Is.EqualTo(1_000_000));
            Assert.That(disk.BusyNs, Is.EqualTo(2 * BlockTransferNs));
        }
    }

    [Test]
    public void Submit_FromCompletionCallback_IsServedNext()
    {
        var disk = NewDisk();
        var chained = Read(1, 1);
        var first = new DiskRequest(0, 1, write: false, new Callback(_ => disk.Submit(chained)));

        disk.Submit(first);
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_done.Requests, Is.EqualTo(new[] { chained }));
            Assert.That(_done.Times, Is.EqualTo(new[] { 2 * BlockTransferNs }));
        }
    }

    [Test]
    public void Counters_ReadsAndWrites_CountedAtCompletion()
    {
        var disk = NewDisk();
        disk.Submit(Read(0, 1));
        disk.Submit(Write(1, 1));
        disk.Submit(Read(2, 1));
        var beforeRun = (disk.Reads, disk.Writes);

        _loop.Run(BlockTransferNs);
        var afterOne = (disk.Reads, disk.Writes);
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(beforeRun, Is.EqualTo((0L, 0L)));
            Assert.That(afterOne, Is.EqualTo((1L, 0L)));
            Assert.That(disk.Reads, Is.EqualTo(2));
            Assert.That(disk.Writes, Is.EqualTo(1));
            Assert.That(disk.BusyNs, Is.EqualTo(3 * BlockTransferNs));
        }
    }

    [TestCase(-1L, 1)]
    [TestCase(1024L, 1)]
    [TestCase(1023L, 2)]
    [TestCase(0L, 0)]
    [TestCase(0L, -1)]
    public void Submit_OutOfRange_Throws(long block, int count)
    {
        var disk = NewDisk(new DiskGeometry { Blocks = 1024 });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => disk.Submit(Read(block, count)), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(disk.QueueDepth, Is.Zero);
            Assert.That(_loop.Pending, Is.Zero);
        }
    }

    [Test]
    public void Submit_LastBlockOfDevice_IsAccepted()
    {
        var disk = NewDisk(new DiskGeometry { Blocks = 1024 });

        disk.Submit(Read(1023, 1));
        _loop.Run();

        Assert.That(disk.Reads, Is.EqualTo(1));
    }

    [Test]
    public void WriteContent_ThenRead_RoundTripsAndNullForgets()
    {
        var disk = NewDisk();
        var page = new byte[PhysicalMemory.PageSize];
        page[7] = 42;

        disk.WriteContent(5, page);
        var stored = disk.ReadContent(5);
        disk.WriteContent(5, null);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stored, Is.SameAs(page));
            Assert.That(disk.ReadContent(5), Is.Null);
            Assert.That(disk.ReadContent(6), Is.Null);
        }
    }

    private SwapDisk NewDisk(DiskGeometry? geometry = null)
    {
        var disk = new SwapDisk(_loop, new Rng(1), geometry ?? new DiskGeometry());
        _done.Disk = disk;
        return disk;
    }

    private DiskRequest Read(long block, int count) => new(block, count, write: false, _done);

    private DiskRequest Write(long block, int count) => new(block, count, write: true, _done);

    /// <summary>Records each completion with the virtual time and the queue depth it saw.</summary>
    private sealed class Completions(EventLoop loop) : IDiskCompletion
    {
        public SwapDisk? Disk { get; set; }

        public List<DiskRequest> Requests { get; } = [];

        public List<long> Times { get; } = [];

        public List<int> Depths { get; } = [];

        public void DiskRequestDone(DiskRequest request)
        {
            Requests.Add(request);
            Times.Add(loop.Now);
            Depths.Add(Disk?.QueueDepth ?? -1);
        }
    }

    private sealed class Callback(Action<DiskRequest> action) : IDiskCompletion
    {
        public void DiskRequestDone(DiskRequest request) => action(request);
    }
}
