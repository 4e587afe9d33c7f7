using KvmApf.Tests.Rigs;
using KvmApf.Vmm;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// bench-contract.md: <c>fault_threads[].faults</c> are those of the thread's stores that needed a
/// swap-in on the host. A store is counted when it retires and its swap-in with it, once however
/// many swap-ins it needed (its guest page table page and its data page), so that in any measured
/// interval the faults are among the stores: also in one so short that the threads' first stores
/// are still waiting for the disk when it ends.
/// </summary>
[TestFixture, Category("scenario"), Description("fault_threads: faults are a subset of the stores of the measured interval")]
public sealed class FaultThreadFiguresTests
{
    [TestCase(false, 30 * Ms, TestName = "Run_WindowShorterThanAFirstSwapIn_FaultsAmongTheStores(off, 30 ms)")]
    [TestCase(false, 300 * Ms, TestName = "Run_FaultingWindow_FaultsAmongTheStores(off, 300 ms)")]
    [TestCase(true, 300 * Ms, TestName = "Run_FaultingWindow_FaultsAmongTheStores(on, 300 ms)")]
    public void Run_FaultsAmongTheStores(bool apf, long durationNs)
    {
        var result = BenchRunner.Run(GuestBmRun.Small with { Apf = apf, DurationNs = durationNs });
        using (Assert.EnterMultipleScope())
        {
            foreach (var thread in result.FaultThreads)
            {
                Assert.That(thread.Faults, Is.LessThanOrEqualTo(thread.Accesses), thread.Name);
            }
            if (durationNs >= 300 * Ms)
            {
                Assert.That(result.FaultThreads.Sum(t => t.Faults), Is.Positive, "the interval has stores that needed a swap-in");
                Assert.That(result.FaultThreads.Sum(t => t.Faults), Is.LessThanOrEqualTo(result.Host.MajorFaults),
                    "a store counts once, however many of the host's major faults it took");
            }
        }
    }
}
