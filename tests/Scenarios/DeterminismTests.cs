using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmApf.Bench;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// DESIGN section 2, "one clock" and "one random source": the same configuration and seed give
/// the same run, byte for byte; the seed is what varies a run. Checked on apf-bench's JSON, the
/// whole observable output of a run, with the one wall-clock figure (<c>sim.wall_ms</c>) masked.
/// </summary>
[TestFixture, Category("scenario"), Description("Determinism: same configuration and seed, same JSON; another seed, another run")]
public sealed partial class DeterminismTests
{
    private string? _seedOne;

    /// <summary>The JSON of <see cref="GuestBmRun.Small"/> with seed 1, run once for the fixture.</summary>
    private string SeedOne => _seedOne ??= RunJson(GuestBmRun.Small);

    [Test]
    public void BenchRunnerRun_SameConfigAndSeed_ByteIdenticalJsonButWallTime()
    {
        string again = RunJson(GuestBmRun.Small with { });
        using JsonDocument doc = JsonDocument.Parse(SeedOne);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(doc.RootElement.GetProperty("host").GetProperty("swap_reads").GetInt64(), Is.GreaterThan(0),
                "the run swapped, so the disk's random delays were drawn");
            Assert.That(again, Is.EqualTo(SeedOne));
        }
    }

    [Test]
    public void BenchRunnerRun_DifferentSeed_ChangesWorkerCounters()
    {
        string other = RunJson(GuestBmRun.Small with { Seed = 2 });
        long[] one = Counters(SeedOne);
        long[] two = Counters(other);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(two, Has.Length.EqualTo(one.Length));
            Assert.That(one, Is.All.GreaterThan(0));
            Assert.That(two, Is.Not.EqualTo(one), "another seed, other disk delays, other counters");
        }
    }

    /// <summary>Runs <paramref name="config"/> and returns its JSON as text with <c>sim.wall_ms</c> set to 0.</summary>
    private static string RunJson(BenchConfig config)
    {
        string json = Encoding.UTF8.GetString(JsonReport.Run(BenchRunner.Run(config)));
        Assert.That(WallMs().Count(json), Is.EqualTo(1), "sim.wall_ms is there to mask");
        return WallMs().Replace(json, "\"wall_ms\": 0");
    }

    private static long[] Counters(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return [.. doc.RootElement.GetProperty("workers").EnumerateArray().Select(w => w.GetProperty("counter").GetInt64())];
    }

    [GeneratedRegex("\"wall_ms\": [0-9]+")]
    private static partial Regex WallMs();
}
