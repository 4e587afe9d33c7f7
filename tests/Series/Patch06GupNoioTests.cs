using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 6: get_user_pages_noio(), the get_user_pages() that fails instead of taking a major
/// fault. It succeeds when the page can be had without I/O (resident, a swap-cache hit, a first
/// touch) and returns nothing, at once, when the page is on swap or is being read in: it never
/// sleeps and never starts a read. Called on a host thread of the VMM, as KVM calls it.
/// </summary>
[TestFixture, Category("patch-06"), Description("Add get_user_pages() variant that fails if major fault is required.")]
public sealed class Patch06GupNoioTests
{
    private readonly record struct DiskState(int Requests, long Reads, int QueueDepth, long PswpIn, long PgMajFault);

    private static DiskState Disk(HostApfRig rig) =>
        new(rig.Swap.Requests.Count, rig.Disk.Reads, rig.Disk.QueueDepth, rig.Host.PswpIn, rig.Host.PgMajFault);

    /// <summary>Calls get_user_pages_noio on a new host thread; returns the page, the thread, and whether it returned before the thread's first sleep.</summary>
    private static (Page? Page, TaskStruct Thread, bool ReturnedAtOnce, long AtNs) Noio(HostApfRig rig, ulong gfn)
    {
        Page? page = null;
        bool returned = false;
        long at = -1;
        var t = rig.HostThread("noio-probe", self =>
        {
            page = rig.Host.GetUserPagesNoio(self, rig.VmmMm, rig.HvaOf(gfn), write: true);
            returned = true;
            at = rig.Loop.Now;
            return SimTask.CompletedTask;
        });
        return (page, t, returned, at);
    }

    [Test]
    public void GetUserPagesNoio_PageOnSwap_FailsWithoutStartingIo()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(0);
        rig.Evict(gfn);
        ulong pte = rig.HostPte(gfn);
        var disk = Disk(rig);
        long now = rig.Loop.Now;
        var (page, thread, atOnce, at) = Noio(rig, gfn);
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Pgtable.PtePresent(pte) || Pgtable.PteNone(pte), Is.False, "precondition: a swap entry");
            Assert.That(page, Is.Null, "a major fault would be needed");
            Assert.That(atOnce, Is.True, "it returned without sleeping");
            Assert.That(at, Is.EqualTo(now), "in no virtual time");
            Assert.That(Disk(rig), Is.EqualTo(disk), "no request submitted, no read done, nothing queued");
            Assert.That(rig.HostPte(gfn), Is.EqualTo(pte), "the PTE is still the swap entry");
            Assert.That((thread.MajFlt, thread.MinFlt), Is.EqualTo((0L, 0L)));
        }
    }

    [Test]
    public void GetUserPagesNoio_SwapCacheHit_MapsThePageWithoutIo()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(0);
        rig.EvictToSwapCache(gfn);
        ulong pte = rig.HostPte(gfn);
        var cached = rig.Host.LookupSwapCache(Pgtable.PteToSwpEntry(pte));
        var disk = Disk(rig);
        long now = rig.Loop.Now;
        var (page, thread, atOnce, at) = Noio(rig, gfn);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Pgtable.PtePresent(pte), Is.False, "precondition: unmapped");
            Assert.That(cached, Is.Not.Null, "precondition: in the swap cache");
            Assert.That(page, Is.SameAs(cached), "the swap-cache page");
            Assert.That(atOnce, Is.True);
            Assert.That(at, Is.EqualTo(now));
            Assert.That(rig.HostPfn(gfn), Is.EqualTo(cached?.Pfn), "mapped again in the VMM");
            Assert.That(Disk(rig), Is.EqualTo(disk), "without I/O");
            Assert.That((thread.MajFlt, thread.MinFlt), Is.EqualTo((0L, 1L)), "a minor fault");
        }
    }

    [Test]
    public void GetUserPagesNoio_PageBeingReadIn_FailsWithoutWaitingForTheRead()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(0);
        rig.Evict(gfn);
        Page? readerGot = null;
        long readerDoneAt = -1;
        rig.HostThread("reader", async self =>
        {
            readerGot = await rig.Host.GetUserPages(self, rig.VmmMm, rig.HvaOf(gfn), write: true);
            readerDoneAt = rig.Loop.Now;
        });
        int inFlight = rig.Swap.Outstanding;
        var (page, _, atOnce, at) = Noio(rig, gfn);
        rig.RunUntil(() => readerDoneAt >= 0);
        var reads = rig.ReadsOf(gfn);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(inFlight, Is.EqualTo(1), "precondition: the reader's read was in flight");
            Assert.That(page, Is.Null, "the page is locked for the read: no waiting for it");
            Assert.That(atOnce, Is.True);
            Assert.That(at, Is.LessThan(readerDoneAt));
            Assert.That(reads, Has.Count.EqualTo(1), "no second read");
            Assert.That(readerGot, Is.Not.Null, "the reader got its page");
        }
    }

    [Test]
    public void GetUserPagesNoio_NeverTouchedPage_FirstTouchWithoutIo()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(200);
        ulong pteBefore = rig.HostPte(gfn);
        var disk = Disk(rig);
        long usage = rig.Cgroup.Usage;
        rig.Cgroup.Limit = usage + (long)Pgtable.PAGE_SIZE; // room for exactly this page
        var (page, thread, atOnce, _) = Noio(rig, gfn);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Pgtable.PteNone(pteBefore), Is.True, "precondition: never touched");
            Assert.That(page, Is.Not.Null, "a zero page needs no I/O");
            Assert.That(rig.Cgroup.Usage, Is.EqualTo(usage + (long)Pgtable.PAGE_SIZE), "charged to the VMM's cgroup, which it fills to the limit");
            Assert.That(atOnce, Is.True);
            Assert.That(rig.HostPfn(gfn), Is.EqualTo(page?.Pfn));
            Assert.That(Disk(rig), Is.EqualTo(disk));
            Assert.That((thread.MajFlt, thread.MinFlt), Is.EqualTo((0L, 1L)));
        }
    }

    [Test]
    public void GetUserPagesNoio_CgroupAtItsLimit_FailsWithoutReclaimOrIo()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(200);
        rig.Cgroup.Limit = rig.Cgroup.Usage;
        long usage = rig.Cgroup.Usage;
        long stolen = rig.Host.PgSteal;
        var disk = Disk(rig);
        var (page, thread, atOnce, _) = Noio(rig, gfn);
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(page, Is.Null, "a new page would not fit under the limit");
            Assert.That(atOnce, Is.True, "no waiting for reclaim");
            Assert.That(rig.Host.PgSteal, Is.EqualTo(stolen), "no reclaim from the no-I/O path");
            Assert.That(Disk(rig), Is.EqualTo(disk), "no swap write started either");
            Assert.That(rig.Cgroup.Usage, Is.EqualTo(usage), "nothing charged");
            Assert.That(Pgtable.PteNone(rig.HostPte(gfn)), Is.True, "nothing mapped");
            Assert.That((thread.MajFlt, thread.MinFlt), Is.EqualTo((0L, 0L)));
        }
    }

    [Test]
    public void GetUserPages_CgroupAtItsLimit_StillReclaimsAndMapsThePage()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn = HostApfRig.Gfn(200);
        rig.Cgroup.Limit = rig.Cgroup.Usage;
        long stolen = rig.Host.PgSteal;
        Page? page = null;
        bool returned = false;
        var thread = rig.HostThread("gup-probe", async self =>
        {
            page = await rig.Host.GetUserPages(self, rig.VmmMm, rig.HvaOf(gfn), write: true);
            returned = true;
        });
        rig.RunUntil(() => returned);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(page, Is.Not.Null, "FAULT_FLAG_MINOR is get_user_pages_noio's alone: the ordinary call makes room");
            Assert.That(rig.Host.PgSteal, Is.GreaterThan(stolen), "by reclaim");
            Assert.That(rig.HostPfn(gfn), Is.EqualTo(page?.Pfn), "and maps the page");
            Assert.That(rig.Cgroup.Usage, Is.LessThanOrEqualTo(rig.Cgroup.Limit));
            Assert.That((thread.MajFlt, thread.MinFlt), Is.EqualTo((0L, 1L)), "a first touch: one minor fault");
        }
    }
}
