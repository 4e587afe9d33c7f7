// engine-bench: events per second and bytes allocated per event of the bare engine.
//
// Each of N coroutines loops: await Outer(), which awaits Inner(), which awaits a timer-based
// delay of 1..MaxDelayNs virtual ns drawn from the coroutine's own Hw.Rng stream. One
// iteration is two events: the timer firing (which sets a SimSignal) and the posted
// continuation that resumes the sleeper (which then completes Inner and Outer inline).
//
// Usage: engine-bench [--events N] [--warmup N] [--json]
using System.Diagnostics;
using System.Globalization;
using Hw;
using KvmApf.EngineBench;

EngineBenchOptions options;
try
{
    options = EngineBenchOptions.Parse(args);
}
catch (FormatException e)
{
    Console.Error.WriteLine($"engine-bench: {e.Message}");
    return 2;
}
if (options.Help)
{
    Console.Write(EngineBenchOptions.Usage);
    return 0;
}
long events = options.Events;
long warmup = options.Warmup;
bool json = options.Json;

var results = new List<CaseResult>();
foreach (int coroutines in (int[])[1000, 10])
{
    var result = Engine.Measure(coroutines, warmup, events);
    results.Add(result);
    if (!json)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{result.Coroutines,5} coroutines: {result.EventsPerSecond / 1e6,7:F2} M events/s, {result.BytesPerEvent,6:F3} bytes/event ({result.Events} events in {result.Seconds:F3} s)"));
    }
}
if (json)
{
    Console.WriteLine(CaseResult.ToJson(results));
}
return 0;

namespace KvmApf.EngineBench
{
    /// <summary>The figures of one case.</summary>
    internal sealed record CaseResult(int Coroutines, long Events, double Seconds, long Bytes)
    {
        public double EventsPerSecond => Events / Seconds;

        public double BytesPerEvent => (double)Bytes / Events;

        public static string ToJson(IEnumerable<CaseResult> results)
        {
            var cases = results.Select(r => string.Create(CultureInfo.InvariantCulture,
                $"{{\"coroutines\":{r.Coroutines},\"events\":{r.Events},\"seconds\":{r.Seconds:R},\"eventsPerSecond\":{Math.Round(r.EventsPerSecond)},\"bytesAllocated\":{r.Bytes},\"bytesPerEvent\":{r.BytesPerEvent:R}}}"));
            return "{\"benchmark\":\"engine\",\"cases\":[" + string.Join(",", cases) + "]}";
        }
    }

    /// <summary>One coroutine and its state.</summary>
    internal sealed class Worker(EventLoop loop, Rng rng)
    {
        public const int MaxDelayNs = 100;

        private readonly Sleeper _sleeper = new(loop);

        public long Iterations { get; private set; }

        public async SimTask Run()
        {
            while (true)
            {
                Iterations += await Outer();
            }
        }

        private async SimTask<long> Outer()
        {
            long slept = await Inner();
            return slept > 0 ? 1 : 0;
        }

        private async SimTask<long> Inner()
        {
            long ns = 1 + (long)rng.NextBelow(MaxDelayNs);
            await _sleeper.Delay(ns);
            return ns;
        }
    }

    internal static class Engine
    {
        public static CaseResult Measure(int coroutines, long warmupEvents, long events)
        {
            var loop = new EventLoop();
            var root = new Rng(42);
            for (int i = 0; i < coroutines; i++)
            {
                new Worker(loop, root.Split("worker-" + i.ToString(CultureInfo.InvariantCulture))).Run().Forget();
            }
            // Virtual time per chunk: roughly 2 events per coroutine per MaxDelayNs / 2 ns.
            long chunkNs = Math.Max(1, 1_000_000L / coroutines);
            RunEvents(loop, warmupEvents, chunkNs);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            long startEvents = loop.EventsProcessed;
            long startBytes = GC.GetAllocatedBytesForCurrentThread();
            long startTicks = Stopwatch.GetTimestamp();
            RunEvents(loop, events, chunkNs);
            double seconds = Stopwatch.GetElapsedTime(startTicks).TotalSeconds;
            long bytes = GC.GetAllocatedBytesForCurrentThread() - startBytes;
            return new CaseResult(coroutines, loop.EventsProcessed - startEvents, seconds, bytes);
        }

        private static void RunEvents(EventLoop loop, long events, long chunkNs)
        {
            long target = loop.EventsProcessed + events;
            while (loop.EventsProcessed < target)
            {
                loop.Run(loop.Now + chunkNs);
            }
        }
    }
}
