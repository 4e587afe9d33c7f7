using System.Runtime;
using System.Text;
using KvmApf.Bench;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;

namespace KvmApf.Tests.Bench;

/// <summary>
/// A run holds the garbage collector off (a no-GC region of the runtime) for its first 128 MB of
/// allocation, after collecting what earlier runs left behind, and gives the region back when it
/// ends; a run that cannot have the region (a concurrent one holds it) runs the same without it.
/// </summary>
[TestFixture, NonParallelizable, Category("bench")]
public sealed class BenchRunnerGcTests
{
    [Test]
    public void SlidesRun_OneSecondMeasured_NoCollectionBetweenItsStartAndItsEnd_AndTheRegionIsGivenBack()
    {
        var config = new BenchConfig { Apf = false, DurationNs = 1_000_000_000 };
        BenchRunner.Run(config with { ArrayBytes = 4096, DurationNs = 1_000_000 }); // the JIT's share, out of the count
        int before = GC.CollectionCount(0);

        var result = BenchRunner.Run(config);

        // The collection that opens the region is the only one: without the region, the prefault's
        // 60-odd MB start another in the middle of the run.
        Assert.That(GC.CollectionCount(0) - before, Is.EqualTo(1));
        Assert.That(result.Sim.Gc.Collections, Is.Zero, "none during the run, as the run reports it");
        Assert.That(result.Sim.Gc.AllocatedBytes, Is.InRange(32L << 20, 128L << 20), "the run's allocations, as it reports them");
        Assert.That(GCSettings.LatencyMode, Is.Not.EqualTo(GCLatencyMode.NoGCRegion));
    }

    [Test]
    public void RegionHeldElsewhere_RunStillCompletes_WithTheSameResults()
    {
        string alone = Json(BenchRunner.Run(GuestBmRun.Small));
        Assume.That(GC.TryStartNoGCRegion(16L << 20), Is.True, "the test's own region");
        try
        {
            string beside = Json(BenchRunner.Run(GuestBmRun.Small));
            Assert.That(beside, Is.EqualTo(alone));
        }
        finally
        {
            if (GCSettings.LatencyMode == GCLatencyMode.NoGCRegion)
            {
                GC.EndNoGCRegion();
            }
        }
    }

    private static string Json(BenchResult result) =>
        Encoding.UTF8.GetString(JsonReport.Run(result with { Sim = result.Sim with { WallMs = 0, SetupWallMs = 0 } }));
}
