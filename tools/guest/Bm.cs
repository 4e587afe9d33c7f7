using System.Globalization;
using Hw;
using Linux;

namespace KvmApf.Guest;

/// <summary>bm's options: -f, -w, -m, -t.</summary>
public sealed record BmOptions(int FaultThreads, int WorkThreads, ulong ArrayBytes, long DurationNs);

/// <summary>
/// The benchmark program of the slides as the series' author published it with the v4 cover
/// letter (../shared/reference/bm.md), reimplemented as a guest workload: one shared array
/// prefaulted by the main thread, fault threads storing one byte at random pages of it, work
/// threads incrementing their own counter, a start barrier, a timed run, a stop flag, and the
/// final <c>worker N:</c> and <c>total:</c> lines on the console.
/// </summary>
public sealed class Bm(Libc libc, BmOptions options, CostModel costs)
{
    /// <summary>Fault threads between two looks at the stop flag (the loop runs in batches of stores).</summary>
    private const int FaultBatch = 256;

    /// <summary>A work thread looks at the stop flag every millisecond of its own time.</summary>
    private const long WorkSliceNs = 1_000_000;

    /// <summary>memset of one page during the prefault, ns (4 KiB at ~5 GB/s).</summary>
    private const long PrefaultPageNs = 800;

    private PthreadBarrier _barrier = null!;
    private ulong _array;
    private ulong _counters;
    private bool _stop;

    /// <summary>The work threads' counters, as the program computed them.</summary>
    public long[] Counters { get; } = new long[options.WorkThreads];

    /// <summary>The program's threads, fault threads first.</summary>
    public List<TaskStruct> FaultTasks { get; } = [];

    public List<TaskStruct> WorkTasks { get; } = [];

    private ulong Pages => options.ArrayBytes / Pgtable.PAGE_SIZE;

    /// <summary>main().</summary>
    public async SimTask Main(TaskStruct self)
    {
        _array = await libc.Malloc(options.ArrayBytes);
        _counters = await libc.Malloc(Pgtable.PAGE_SIZE);
        _barrier = new PthreadBarrier(options.FaultThreads + options.WorkThreads + 1);
        for (int i = 0; i < options.FaultThreads; i++)
        {
            FaultTasks.Add(await libc.PthreadCreate($"bm-fault{i}", FaultThread));
        }
        for (int i = 0; i < options.WorkThreads; i++)
        {
            int index = i;
            WorkTasks.Add(await libc.PthreadCreate($"bm-work{i}", t => WorkThread(t, index)));
        }
        // Prefault the whole array with zeros.
        await self.Context!.StoreLoop(new SequentialPages(_array), (long)Pages, PrefaultPageNs);
        await libc.Puts("start");
        await libc.PthreadBarrierWait(_barrier);
        await libc.Sleep(options.DurationNs);
        _stop = true;
        await libc.PthreadBarrierWait(_barrier);
        long total = 0;
        for (int i = 0; i < Counters.Length; i++)
        {
            await libc.Puts(string.Create(CultureInfo.InvariantCulture, $"worker {i}: {Counters[i]}"));
            total += Counters[i];
        }
        await libc.Puts(string.Create(CultureInfo.InvariantCulture, $"total: {total}"));
    }

    /// <summary>fault_thread(): stores one byte at the start of a random page until stopped.</summary>
    private async SimTask FaultThread(TaskStruct self)
    {
        var pages = new RandomPages(libc.Random, _array, Pages);
        await libc.PthreadBarrierWait(_barrier);
        while (!_stop)
        {
            await self.Context!.StoreLoop(pages, FaultBatch, costs.FaultLoopIterationNs);
        }
        await libc.PthreadBarrierWait(_barrier);
    }

    /// <summary>work_thread(): increments its own counter until stopped.</summary>
    private async SimTask WorkThread(TaskStruct self, int index)
    {
        var ctx = self.Context!;
        ulong counter = _counters + ((ulong)index * sizeof(long));
        await libc.PthreadBarrierWait(_barrier);
        long startNs = ctx.UserNs;
        while (!_stop)
        {
            await ctx.Store(counter);
            await ctx.Compute(WorkSliceNs);
        }
        Counters[index] = (ctx.UserNs - startNs) * costs.IncrementsPerMicrosecond / 1000;
        await libc.PthreadBarrierWait(_barrier);
    }


    /// <summary>The fault loop's address: <c>buf + (random() % pages) * 4096</c>.</summary>
    private sealed class RandomPages(GlibcRandom random, ulong start, ulong pages) : IStoreSource
    {
        public ulong NextAddress() => start + ((ulong)random.Next() % pages * Pgtable.PAGE_SIZE);
    }
}

/// <summary>A memset's stores: every page from <paramref name="start"/> on, in order.</summary>
public sealed class SequentialPages(ulong start) : IStoreSource
{
    private ulong _next = start;

    public ulong NextAddress()
    {
        ulong a = _next;
        _next += Pgtable.PAGE_SIZE;
        return a;
    }
}
