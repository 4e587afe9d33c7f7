using KvmApf.Guest;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Mm;

/// <summary>
/// Two threads of one mm, on two vCPUs, fault in a 2 MiB region that has no page table yet; each
/// sleeps while a frame it allocated is zeroed (the store exits to the host), so the two faults
/// overlap in some runs of a sweep over the second thread's start.
/// <list type="bullet">
/// <item>On two pages (__pte_alloc): the second to allocate a table finds the first one's
/// installed, frees its own and uses that one; both pages stay mapped, one table page is used.</item>
/// <item>On one page (do_anonymous_page's <c>pte_none</c> under the PTE lock): the second to get
/// there finds the PTE set, frees its page and returns; one data page is used.</item>
/// </list>
/// </summary>
[TestFixture]
[Category("kernel")]
public class PteAllocTests
{
    private const ulong TwoMiB = 2UL << 20;

    /// <param name="secondPageOffset">Where the second thread stores, from the first one's page: 4096 is the next page, 0 the same.</param>
    /// <param name="pagesUsed">Pages in use afterwards: one table page and a data page per distinct page.</param>
    [TestCase(4096UL, 3, TestName = "TwoThreadsPopulatingOnePmdEntry_BothPagesStayMapped_AndOneTableIsKept")]
    [TestCase(0UL, 2, TestName = "TwoThreadsFaultingOnOnePage_ThePageStaysMapped_AndOneDataPageIsKept")]
    public void TwoThreadsFaultingInAnEmptyRegion_EveryPageStaysMapped_AndNothingLeaks(ulong secondPageOffset, long pagesUsed)
    {
        for (long delay = 0; delay <= 8_000; delay += 250)
        {
            var run = Run(delay, secondPageOffset);
            Assert.That(run.Mapped, Is.EqualTo((true, true)), $"second thread {delay} ns late: both stores' pages mapped");
            Assert.That(run.PagesUsed, Is.EqualTo(pagesUsed), $"second thread {delay} ns late: one table page and one data page per distinct page");
        }
    }

    private static ((bool, bool) Mapped, long PagesUsed) Run(long delay, ulong secondPageOffset)
    {
        var rig = new GuestApfRig(new GuestApfRigOptions { Vcpus = 2, MemLimitBytes = 512 * MiB });
        var start = new PthreadBarrier(2);
        var done = new PthreadBarrier(2);
        var exit = new PthreadBarrier(2);
        (bool, bool) mapped = default;
        long pagesUsed = 0;
        rig.Start(async (r, self) =>
        {
            ulong buf = await r.Libc.Malloc(8 * TwoMiB);
            await self.Context!.Store(buf); // the upper levels of the region's gigabyte exist from here on
            ulong region = ((buf + TwoMiB - 1) & ~(TwoMiB - 1)) + TwoMiB;
            ulong first = region;
            ulong second = region + secondPageOffset;
            await r.Libc.PthreadCreate("second", async t =>
            {
                await r.Libc.PthreadBarrierWait(start);
                if (delay > 0)
                {
                    await t.Context!.Compute(delay);
                }
                await t.Context!.Store(second);
                await r.Libc.PthreadBarrierWait(done);
                await r.Libc.PthreadBarrierWait(exit); // exiting frees its stack: not before the count
            });
            long before = r.Guest.NrUsedPages;
            await r.Libc.PthreadBarrierWait(start);
            await self.Context!.Store(first);
            await r.Libc.PthreadBarrierWait(done);
            pagesUsed = r.Guest.NrUsedPages - before;
            var pt = self.Mm!.PageTable;
            mapped = (Pgtable.PtePresent(pt.PeekPte(first) ?? 0), Pgtable.PtePresent(pt.PeekPte(second) ?? 0));
            await r.Libc.PthreadBarrierWait(exit);
        });
        rig.RunUntilFinished(60_000_000_000);
        return (mapped, pagesUsed);
    }
}
