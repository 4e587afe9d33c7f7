using Hw;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 5 only exports __get_user_pages_fast, so that patch 8's fault path can look a page up
/// without taking mmap_sem and without sleeping. It is tested through that path: a guest access
/// to a page that is resident in the host but has no spte is resolved by the lockless walk, on
/// the vCPU thread, in CPU time: no sleep, no I/O, no host page fault, no work item.
/// </summary>
[TestFixture, Category("patch-05"), Description("Export __get_user_pages_fast.")]
public sealed class Patch05GupFastTests
{
    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void GfnToPfnAsync_PageResidentButNotMapped_LocklessLookupMapsItWithoutSleeping(PagingMode paging)
    {
        using var rig = new HostApfRig(new HostRigOptions { Tdp = paging == PagingMode.Tdp }).Boot();
        const int page = 3;
        ulong gfn = HostApfRig.Gfn(page);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        guest.EnableAtBoot = true;
        (long Stall, int Requests, long PgFault, long MajFlt, long MinFlt, bool Mapped, ulong? Pfn)? before = null;
        long done = -1;
        guest.Spawn("toucher", async ctx =>
        {
            before = (cpu.Residency[VcpuState.Stall], rig.Swap.Requests.Count, rig.Host.PgFault,
                rig.VcpuThreads[0].MajFlt, rig.VcpuThreads[0].MinFlt, rig.SecondaryMapped(gfn), rig.HostPfn(gfn));
            await ctx.Store(HostApfRig.Gva(page));
            done = rig.Loop.Now;
        });
        rig.Go();
        rig.RunUntil(() => done >= 0);

        var b = before!.Value;
        var lookup = rig.Trace.TryAsyncGetPage.Where(e => e.Pfn == (long?)b.Pfn || e.Async).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(b.Pfn, Is.Not.Null, "precondition: the page is resident in the host");
            Assert.That(b.Mapped, Is.False, "precondition: no spte maps it yet");
            Assert.That(lookup.Select(e => (e.Async, e.Pfn)), Is.EqualTo(new[] { (false, (long)b.Pfn!.Value) }),
                "the async-capable path found the page without I/O, at its host frame");
            Assert.That(rig.SecondaryPfns(gfn), Is.Not.Empty.And.All.EqualTo(b.Pfn), "and mapped it");
            Assert.That(cpu.Residency[VcpuState.Stall], Is.EqualTo(b.Stall), "the vCPU thread never slept");
            Assert.That(rig.Swap.Requests, Has.Count.EqualTo(b.Requests), "no I/O");
            Assert.That(rig.Host.PgFault, Is.EqualTo(b.PgFault), "no host page fault: the lockless walk found the PTE");
            Assert.That((rig.VcpuThreads[0].MajFlt, rig.VcpuThreads[0].MinFlt), Is.EqualTo((b.MajFlt, b.MinFlt)));
            Assert.That(guest.NotPresents, Is.Empty, "nothing for the guest to wait for");
            Assert.That(rig.Host.NrWorkers, Is.Zero, "no work item");
        }
    }
}
