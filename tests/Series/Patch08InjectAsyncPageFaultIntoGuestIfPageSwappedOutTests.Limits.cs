using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 8's limits, as the seed reviews asked for them: a per-vCPU cap on outstanding faults
/// (seeds/000, 004), a GFP_NOWAIT allocation that falls back to a synchronous fault (004), and a
/// token that wraps at 2^20 faults per vCPU without harm (000: "there can't be 2^20 outstanding
/// page faults per vcpu simultaneously").
/// </summary>
public sealed partial class Patch08InjectAsyncPageFaultIntoGuestIfPageSwappedOutTests
{
    /// <summary>
    /// Boots a TDP rig with <paramref name="pages"/> evicted pages and one toucher context per page
    /// (async PF enabled at boot), and runs it until every toucher's store completed.
    /// </summary>
    private static HostApfRig RunTouchers(int pages, HostRigOptions options, out List<GuestContext> touchers, Action<HostApfRig>? beforeGo = null)
    {
        var rig = new HostApfRig(options);
        try
        {
            rig.Boot();
            rig.Evict([.. Enumerable.Range(0, pages).Select(p => HostApfRig.Gfn(p))]);
            var guest = rig.Guests[0];
            guest.EnableAtBoot = true;
            var spawned = new List<GuestContext>();
            for (int p = 0; p < pages; p++)
            {
                int page = p;
                spawned.Add(guest.Spawn($"toucher{page}", ctx => ctx.Store(HostApfRig.Gva(page))));
            }
            beforeGo?.Invoke(rig);
            rig.Go();
            rig.RunUntil(() => spawned.All(guest.Finished));
            touchers = spawned;
            return rig;
        }
        catch
        {
            rig.Dispose();
            throw;
        }
    }

    [Test]
    public void KvmSetupAsyncPf_MoreFaultsThanCap_ExcessFaultGoesSynchronous()
    {
        using var rig = RunTouchers(3, new HostRigOptions { AsyncPfPerVcpu = 2 }, out _);
        var guest = rig.Guests[0];
        var fallbacks = rig.Trace.SyncFallback.ToList();
        var thirdRead = rig.ReadsOf(HostApfRig.Gfn(2)).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.NotPresents.Select(f => f.Context), Is.EqualTo(new[] { "toucher0", "toucher1" }),
                "the first two faults went async");
            Assert.That(rig.Host.ApfCounters.MaxOutstanding, Is.EqualTo(2), "never more outstanding than the cap");
            Assert.That(rig.Host.ApfCounters.SyncFallbacks, Is.EqualTo(1), "the third was handled synchronously");
            Assert.That(fallbacks.Select(e => (e.Gva, e.Reason)), Is.EqualTo(new[] { ((long)HostApfRig.Gpa(2), "cap") }));
            Assert.That(rig.VcpuThreads[0].MajFlt, Is.EqualTo(1), "on the vCPU thread");
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.GreaterThanOrEqualTo(thirdRead.LatencyNs - (10 * Us)),
                "which slept through the read of the third page");
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EquivalentTo(guest.NotPresents.Select(f => f.Token)),
                "the two async faults were answered");
        }
    }

    [Test]
    public void KvmSetupAsyncPf_AllocationFails_FaultIsSynchronous()
    {
        using var rig = RunTouchers(1, new HostRigOptions(), out _, r => r.Host.AsyncPfAllocFails = _ => true);
        var read = rig.ReadsOf(HostApfRig.Gfn(0)).Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guests[0].NotPresents, Is.Empty, "no not-present without a work item");
            Assert.That(rig.Host.NrWorkers, Is.Zero, "no work queued");
            Assert.That(rig.Host.ApfCounters.SyncFallbacks, Is.EqualTo(1));
            Assert.That(rig.Trace.SyncFallback.Select(e => e.Reason), Is.EqualTo(new[] { "allocation" }));
            Assert.That(rig.VcpuThreads[0].MajFlt, Is.EqualTo(1), "the vCPU thread faulted the page in itself");
            Assert.That(rig.Cpus[0].Residency[VcpuState.Stall], Is.InRange(read.LatencyNs, read.LatencyNs + (100 * Us)),
                "stalling for the disk read, as before the series");
            Assert.That(rig.Vcpus[0].AsyncPfQueue, Is.Empty);
        }
    }

    [Test]
    public void KvmSetupAsyncPf_OneAllocationFails_OnlyThatFaultIsSynchronous()
    {
        int allocations = 0;
        using var rig = RunTouchers(2, new HostRigOptions(), out _, r => r.Host.AsyncPfAllocFails = _ => ++allocations == 1);
        var guest = rig.Guests[0];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(allocations, Is.EqualTo(2), "one allocation per fault that could go async");
            Assert.That(rig.Trace.SyncFallback.Select(e => (e.Gva, e.Reason)), Is.EqualTo(new[] { ((long)HostApfRig.Gpa(0), "allocation") }));
            Assert.That(guest.NotPresents.Select(f => f.Context), Is.EqualTo(new[] { "toucher1" }), "the next fault went async again");
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EqualTo(guest.NotPresents.Select(f => f.Token)));
        }
    }

    [Test]
    public void KvmSetupAsyncPf_GfnOutsideEveryMemslot_RefusesAndQueuesNothing()
    {
        using var rig = new HostApfRig().Boot();
        var vcpu = rig.Vcpus[0];
        ulong beyondRam = ((ulong)rig.Options.GuestMemBytes >> Pgtable.PAGE_SHIFT) + 16;
        (bool Ok, string? Refusal)? result = null;
        rig.HostThread("setup", async _ => result = await rig.Host.KvmSetupAsyncPf(vcpu, HostApfRig.Gva(0), beyondRam, token: 0, HostApfRig.Cr3Of(0)));
        rig.Run(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(result, Is.EqualTo((false, "bad hva")), "no hva, no work item: the caller faults synchronously");
            Assert.That(vcpu.AsyncPfQueue, Is.Empty);
            Assert.That(vcpu.AsyncPfQueued, Is.Zero);
            Assert.That(rig.Host.NrWorkers, Is.Zero, "no work queued");
            Assert.That(rig.Trace.NotPresent, Is.Empty, "and the guest told nothing");
        }
    }

    [Test]
    public void KvmArchSetupAsyncPf_ApfIdAboutToWrap_TokensStayUniquePerOutstandingFault()
    {
        const uint nearWrap = (1u << 20) - 2;
        using var rig = RunTouchers(4, new HostRigOptions(), out var touchers, r => r.Vcpus[0].Arch.ApfId = nearWrap);
        var guest = rig.Guests[0];
        var notPresent = guest.NotPresents.ToList();
        var maxInFlight = rig.Host.ApfCounters.MaxOutstanding;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(notPresent.Select(f => f.Token), Is.EqualTo(new uint[] { 0xffffe000, 0xfffff000, 0x00000000, 0x00001000 }),
                "(apf_id << 12) | vcpu_id in 32 bits: the id's bits above 20 fall off");
            Assert.That(maxInFlight, Is.EqualTo(4), "all four were outstanding together");
            Assert.That(notPresent.Select(f => f.Token), Is.Unique);
            Assert.That(guest.TokenCollisions, Is.Zero);
            Assert.That(guest.PageReadies.Select(f => f.Token), Is.EquivalentTo(notPresent.Select(f => f.Token)),
                "each token answered exactly once");
            Assert.That(touchers.Select(guest.Finished), Is.All.True, "every waiter was woken by its own page-ready");
            Assert.That(guest.NotPresents.Count(), Is.EqualTo(4), "and none retried into a second async fault");
            Assert.That(guest.WaitingTokens, Is.Empty);
            Assert.That(rig.Vcpus[0].Arch.ApfId, Is.EqualTo(nearWrap + 4), "apf_id itself is a plain u32 counter");
        }
    }
}
