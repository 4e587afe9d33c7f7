using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 9: when a swap-in completes, the host maps the page (runs the fault again, never async)
/// before it enters the guest with the page-ready, so the guest's retried access finds the spte
/// and does not exit again. Under shadow paging the prefault uses the CR3 the fault was taken
/// under, since the guest may run another address space by then. A wake-all has no page behind
/// it and skips the prefault.
/// </summary>
[TestFixture, Category("patch-09"), Description("Retry fault before vmentry")]
public sealed class Patch09RetryFaultBeforeVmentryTests
{
    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmArchAsyncPageReady_PageReadyDelivered_RetriedAccessCausesNoVmExit(PagingMode paging)
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(paging);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        long exitsAtDone = -1;
        long doneAt = -1;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(0));
            exitsAtDone = cpu.VmExits;
            doneAt = rig.Loop.Now;
        });
        (bool Mapped, bool MappedToHostPage, long Exits, long Prefaults)? atReady = null;
        guest.Delivered += pf =>
        {
            if (pf.Reason == ApfAbi.KVM_PV_REASON_PAGE_READY && pf.Token != ApfAbi.WakeAllToken)
            {
                bool mapped = paging == PagingMode.Tdp ? rig.Vm.Arch.Ept.ContainsKey(gfn) : rig.ShadowMapped(HostApfRig.Cr3Of(0), HostApfRig.Gva(0));
                atReady = (mapped, rig.SecondaryPfns(gfn).All(p => p == rig.HostPfn(gfn)), cpu.VmExits, rig.Host.PrefaultsBeforeEntry);
            }
        };
        rig.Go();
        rig.RunUntil(() => doneAt >= 0);

        var ready = guest.PageReadies.Single();
        var lookupsAfterReady = rig.Trace.TryAsyncGetPage.Where(e => e.TimeNs >= ready.AtNs && e.TimeNs <= doneAt).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(atReady, Is.Not.Null, "the page-ready was delivered");
            Assert.That(atReady?.Mapped, Is.True, "the spte existed when the guest got the page-ready");
            Assert.That(atReady?.MappedToHostPage, Is.True, "pointing at the page the worker brought in");
            Assert.That(atReady?.Prefaults, Is.EqualTo(1), "one prefault, before that VM entry");
            Assert.That(exitsAtDone, Is.EqualTo(atReady?.Exits), "the retried store completed without a VM exit");
            Assert.That(doneAt - ready.AtNs, Is.LessThan(50 * Us), "and at once");
            Assert.That(lookupsAfterReady, Is.Empty, "no fault between the page-ready and the completed store");
            Assert.That(rig.Host.PrefaultsBeforeEntry, Is.EqualTo(1));
        }
    }

    [Test]
    public void KvmArchAsyncPageReady_ShadowGuestSwitchedAddressSpace_PrefaultsUnderFaultingCr3()
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(PagingMode.Shadow);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        bool stop = false;
        long exitsAtDone = -1;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(0));
            exitsAtDone = cpu.VmExits;
            stop = true;
        }, space: 0);
        var other = guest.SpawnHog(() => stop, "other-process", space: 1);
        (ulong Cr3, bool UnderA, bool UnderB, long Exits)? atReady = null;
        guest.Delivered += pf =>
        {
            if (pf.Reason == ApfAbi.KVM_PV_REASON_PAGE_READY && pf.Token != ApfAbi.WakeAllToken)
            {
                atReady = (cpu.Cr3, rig.ShadowMapped(HostApfRig.Cr3Of(0), HostApfRig.Gva(0)),
                    rig.ShadowMapped(HostApfRig.Cr3Of(1), HostApfRig.Gva(0)), cpu.VmExits);
            }
        };
        rig.Go();
        rig.RunUntil(() => stop && guest.Finished(other));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(atReady?.Cr3, Is.EqualTo(HostApfRig.Cr3Of(1)), "precondition: the guest ran the other address space at the page-ready");
            Assert.That(atReady?.UnderA, Is.True, "the prefault installed the spte under the CR3 of the fault");
            Assert.That(atReady?.UnderB, Is.False, "not under the CR3 loaded at the time");
            Assert.That(exitsAtDone, Is.EqualTo(atReady?.Exits), "so the toucher's retry, back in its own address space, did not exit");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void KvmArchAsyncPageReady_PageSwappedOutAgainBeforeReady_PrefaultFaultsSynchronouslyNeverAsync(PagingMode paging)
    {
        using var rig = HostApfRig.BootWithPageZeroSwapped(paging);
        ulong gfn = HostApfRig.Gfn(0);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        bool sti = false;
        long doneAt = -1;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(HostApfRig.Gva(0));
            doneAt = rig.Loop.Now;
        });
        guest.Spawn("cli-loop", async ctx =>
        {
            // Runs while the toucher waits, interrupts off: the page-ready waits in the done list.
            // It stays in user mode after STI, so can_do_async_pf would allow an async fault then.
            cpu.InterruptsEnabled = false;
            while (!sti)
            {
                await ctx.Compute(100 * Us);
            }
            cpu.InterruptsEnabled = true;
            while (doneAt < 0)
            {
                await ctx.Compute(100 * Us);
            }
        });
        rig.Go();
        rig.RunUntil(() => rig.Trace.Completed.Any());
        rig.Run(Ms);
        int doneBeforeEvict = rig.Vcpus[0].AsyncPfDone.Count;
        rig.Evict(gfn); // the host swaps the page out again before the guest could be told
        sti = true;
        rig.RunUntil(() => doneAt >= 0);

        var np = guest.NotPresents.ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(doneBeforeEvict, Is.EqualTo(1), "precondition: the completion waited for the interrupt window");
            Assert.That(np, Has.Count.EqualTo(1), "the prefault did not start a second async fault");
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EqualTo(np.Select(f => f.Token)), "the page-ready named the first fault's token");
            Assert.That(rig.ReadsOf(gfn), Has.Count.EqualTo(2), "the prefault read the page back itself");
            Assert.That(rig.VcpuThreads[0].MajFlt, Is.EqualTo(1), "on the vCPU thread");
            Assert.That(rig.Host.PrefaultsBeforeEntry, Is.EqualTo(1));
            Assert.That(rig.Trace.SyncFallback, Is.Empty, "a prefault is not an async fault refused");
            Assert.That(rig.Host.ApfCounters.SyncFallbacks, Is.Zero);
        }
    }

    [Test]
    public void KvmCheckAsyncPfCompletion_WakeAll_DeliveredWithoutPrefault()
    {
        using var rig = new HostApfRig().Boot();
        var guest = rig.Guests[0];
        guest.EnableAtBoot = true;
        long sptesAtWakeAll = -1;
        guest.Delivered += pf =>
        {
            if (pf.Token == ApfAbi.WakeAllToken)
            {
                sptesAtWakeAll = rig.Vm.Arch.SptesInstalled;
            }
        };
        rig.Go();
        rig.RunUntil(() => guest.WakeAlls.Any());
        var wakeAll = guest.WakeAlls.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(wakeAll.Reason, Is.EqualTo(ApfAbi.KVM_PV_REASON_PAGE_READY));
            Assert.That(wakeAll.Cr2, Is.EqualTo((ulong)ApfAbi.WakeAllToken));
            Assert.That(rig.Host.PrefaultsBeforeEntry, Is.Zero, "a wake-all has no page to prefault");
            Assert.That(sptesAtWakeAll, Is.Zero, "and mapped nothing (the guest had touched no memory yet)");
            Assert.That(rig.Host.ApfCounters.WakeAll, Is.EqualTo(1));
        }
    }
}
