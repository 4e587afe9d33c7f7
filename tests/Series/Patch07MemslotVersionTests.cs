using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 7 keeps a memslot version number so that a translation cached across memslot changes
/// knows when to refresh: the async PF area's gpa→hva is resolved once, at the MSR write, in the
/// kvm_gfn_to_hva_cache shape seeds/004 asked for, and re-resolved only after the slots changed.
/// Tested through what depends on it: the reason word the host writes still reaches the guest
/// when the VMM moves the area's memory, and lands nowhere when the area has no memory at all.
/// </summary>
[TestFixture, Category("patch-07"), Description("Maintain memslot version number")]
public sealed class Patch07MemslotVersionTests
{
    private const ulong NewAreaHva = 0x7f20_0000_0000UL;
    private static readonly ulong AreaSlotGpa = HostApfRig.AreaGfn << Pgtable.PAGE_SHIFT;
    private static readonly ulong AreaOffset = HostApfRig.AreaGpaOf(0) & (Pgtable.PAGE_SIZE - 1);

    /// <summary>The VMM gives the area's slot new memory (KVM_SET_USER_MEMORY_REGION: delete, then add at another hva).</summary>
    private static void MoveAreaSlot(HostApfRig rig)
    {
        Assert.That(rig.Host.KvmDeleteMemoryRegion(rig.Vm, AreaSlotGpa), Is.Zero);
        Kernel.DoMmapPgoff(rig.VmmMm, NewAreaHva, Pgtable.PAGE_SIZE, write: true);
        Assert.That(rig.Host.__KvmSetMemoryRegion(rig.Vm, AreaSlotGpa, Pgtable.PAGE_SIZE, NewAreaHva), Is.Zero);
    }

    [Test]
    public void KvmWriteGuestCached_AreaSlotMovedToOtherMemory_RefreshesOnceAndGuestReadsNewBacking()
    {
        using var rig = new HostApfRig().Boot();
        rig.Evict(HostApfRig.Gfn(0));
        var guest = rig.Guests[0];
        var vcpu = rig.Vcpus[0];
        ulong oldHva = rig.HvaOf(HostApfRig.AreaGfn) + AreaOffset;
        Assert.That(guest.EnableAsyncPf(), Is.True, "the guest registers its area");
        long refreshesBefore = rig.Host.HvaCacheRefreshes;
        long versionBefore = rig.Vm.MemslotVersion;
        ulong cachedBefore = vcpu.Arch.ApfData.Hva;
        MoveAreaSlot(rig);
        var oldWordAtDeliveries = new List<uint?>();
        guest.Delivered += _ => oldWordAtDeliveries.Add(rig.PeekHvaU32(oldHva));
        rig.GoAndTouch(guest, page: 0);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(cachedBefore, Is.EqualTo(oldHva), "precondition: the cache held the old mapping");
            Assert.That(rig.Vm.MemslotVersion, Is.GreaterThan(versionBefore), "the slot change moved the version");
            Assert.That(rig.Host.HvaCacheRefreshes - refreshesBefore, Is.EqualTo(1), "one refresh, at the first write after the change");
            Assert.That(vcpu.Arch.ApfData.Hva, Is.EqualTo(NewAreaHva + AreaOffset), "the cache follows the slot");
            Assert.That(guest.WakeAlls.Count(), Is.EqualTo(1), "the guest read the wake-all's reason in the new memory");
            Assert.That(guest.NotPresents.Count(), Is.EqualTo(1), "and the not-present's");
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EqualTo(guest.NotPresents.Select(f => f.Token)), "and the page-ready's");
            Assert.That(oldWordAtDeliveries, Is.Not.Empty.And.All.EqualTo(0u), "the old memory was never written");
            Assert.That(rig.HostPfnAt(NewAreaHva), Is.Not.Null, "the new memory was faulted in by the write");
        }
    }

    [Test]
    public void KvmWriteGuestCached_SlotsUnchanged_WritesWithoutRefreshing()
    {
        using var rig = new HostApfRig().Boot();
        var vcpu = rig.Vcpus[0];
        Assert.That(rig.Guests[0].EnableAsyncPf(), Is.True);
        long refreshesBefore = rig.Host.HvaCacheRefreshes;
        var results = new List<int>();
        rig.HostThread("writer", async _ =>
        {
            results.Add(await rig.Host.KvmWriteGuestCached(rig.Vm, vcpu.Arch.ApfData, 0x1111));
            results.Add(await rig.Host.KvmWriteGuestCached(rig.Vm, vcpu.Arch.ApfData, 0x2222));
        });
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(results, Is.EqualTo(new[] { 0, 0 }));
            Assert.That(rig.Host.HvaCacheRefreshes, Is.EqualTo(refreshesBefore), "no refresh while the version is unchanged");
            Assert.That(rig.PeekGuestU32(HostApfRig.AreaGpaOf(0)), Is.EqualTo(0x2222u), "the word is at the area");
        }
    }

    [Test]
    public void KvmWriteGuestCached_AreaSlotDeleted_FailsAndWritesNothing()
    {
        using var rig = new HostApfRig().Boot();
        var vcpu = rig.Vcpus[0];
        ulong oldHva = rig.HvaOf(HostApfRig.AreaGfn) + AreaOffset;
        Assert.That(rig.Guests[0].EnableAsyncPf(), Is.True);
        long refreshesBefore = rig.Host.HvaCacheRefreshes;
        Assert.That(rig.Host.KvmDeleteMemoryRegion(rig.Vm, AreaSlotGpa), Is.Zero);
        int r = 0;
        rig.HostThread("writer", async _ => r = await rig.Host.KvmWriteGuestCached(rig.Vm, vcpu.Arch.ApfData, 0x3333));
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r, Is.EqualTo(-Errno.EFAULT), "no memory behind the area any more");
            Assert.That(rig.Host.HvaCacheRefreshes - refreshesBefore, Is.EqualTo(1), "the change was noticed");
            Assert.That(rig.PeekHvaU32(oldHva), Is.Zero, "the old memory was not written");
        }
    }

    [Test]
    public void KvmWriteGuestCached_AreaSlotAddedBackAfterFailedWrite_RefreshesAndWritesNewMemory()
    {
        using var rig = new HostApfRig().Boot();
        var vcpu = rig.Vcpus[0];
        Assert.That(rig.Guests[0].EnableAsyncPf(), Is.True);
        Assert.That(rig.Host.KvmDeleteMemoryRegion(rig.Vm, AreaSlotGpa), Is.Zero);
        var results = new List<int>();
        rig.HostThread("writer", async _ => results.Add(await rig.Host.KvmWriteGuestCached(rig.Vm, vcpu.Arch.ApfData, 0x4444)));
        rig.Run(Ms);
        long refreshesBefore = rig.Host.HvaCacheRefreshes;
        Kernel.DoMmapPgoff(rig.VmmMm, NewAreaHva, Pgtable.PAGE_SIZE, write: true);
        Assert.That(rig.Host.__KvmSetMemoryRegion(rig.Vm, AreaSlotGpa, Pgtable.PAGE_SIZE, NewAreaHva), Is.Zero);
        rig.HostThread("writer", async _ => results.Add(await rig.Host.KvmWriteGuestCached(rig.Vm, vcpu.Arch.ApfData, 0x5555)));
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(results, Is.EqualTo(new[] { -Errno.EFAULT, 0 }), "no memory while the slot was gone; the write after it came back succeeds");
            Assert.That(rig.Host.HvaCacheRefreshes - refreshesBefore, Is.EqualTo(1), "adding the slot moved the version too");
            Assert.That(vcpu.Arch.ApfData.Hva, Is.EqualTo(NewAreaHva + AreaOffset));
            Assert.That(rig.PeekHvaU32(NewAreaHva + AreaOffset), Is.EqualTo(0x5555u), "the word is in the slot's new memory");
        }
    }

    [Test]
    public void KvmDeleteMemoryRegion_SlotMovedWhileGuestRuns_GuestReachesTheNewMemory()
    {
        using var rig = new HostApfRig().Boot();
        const int page = 3;
        ulong gfn = HostApfRig.Gfn(page);
        ulong slotGpa = (HostApfRig.AreaGfn + 1) << Pgtable.PAGE_SHIFT;
        ulong slotBytes = (ulong)rig.Options.GuestMemBytes - slotGpa;
        const ulong newHva = 0x7f30_0000_0000UL;
        var guest = rig.Guests[0];
        bool firstDone = false;
        bool moved = false;
        long done = -1;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(page));
            firstDone = true;
            while (!moved)
            {
                await ctx.Compute(100 * Us);
            }
            await ctx.Store(HostApfRig.Gva(page));
            done = rig.Loop.Now;
        });
        rig.Go();
        rig.RunUntil(() => firstDone);
        ulong? oldPfn = rig.HostPfn(gfn);
        var sptesBefore = rig.SecondaryPfns(gfn);
        // The VMM replaces the memory of the data slot (as when it remaps RAM).
        Assert.That(rig.Host.KvmDeleteMemoryRegion(rig.Vm, slotGpa), Is.Zero);
        Kernel.DoMmapPgoff(rig.VmmMm, newHva, slotBytes, write: true);
        Assert.That(rig.Host.__KvmSetMemoryRegion(rig.Vm, slotGpa, slotBytes, newHva), Is.Zero);
        moved = true;
        rig.RunUntil(() => done >= 0);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(sptesBefore, Is.EqualTo(new[] { oldPfn }), "precondition: the spte mapped the old memory");
            Assert.That(rig.HostPfn(gfn), Is.Not.Null, "the second store reached the slot's new memory");
            Assert.That(rig.SecondaryPfns(gfn), Is.All.EqualTo(rig.HostPfn(gfn)), "no spte still points at the old memory");
        }
    }
}
