using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 2: the paravirtual MSR through which a guest gives the host the address of its 64-byte
/// reason area and enables async PF, the CPUID feature bit that tells the guest the MSR exists,
/// and the capability and saved-MSR list the VMM sees. Both ABI profiles are checked (v3:
/// 0x4b564d00 and feature 3; merged: 0x4b564d02 and feature 4). The reserved-bit mask is patch
/// 11's final one, so its table and the send-always bit are in <see cref="Patch11SendAlwaysBitTests"/>.
/// </summary>
[TestFixture, Category("patch-02"), Description("Add PV MSR to enable asynchronous page faults delivery.")]
public sealed class Patch02PvMsrTests
{
    private static IEnumerable<TestCaseData> Profiles()
    {
        yield return new TestCaseData(ApfAbi.V3, 0x4b564d00u, 3).SetArgDisplayNames("v3");
        yield return new TestCaseData(ApfAbi.Merged, 0x4b564d02u, 4).SetArgDisplayNames("merged");
    }

    private static HostApfRig Booted(ApfAbi abi, bool asyncPf = true) => new HostApfRig(new HostRigOptions { Abi = abi, AsyncPf = asyncPf }).Boot();

    // ---- the MSR --------------------------------------------------------------------------------

    [TestCaseSource(nameof(Profiles))]
    public void KvmSetMsr_AreaAndEnableBit_ReadsBackThroughKvmGetMsr(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi);
        var vcpu = rig.Vcpus[0];
        ulong value = HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        int set = rig.Host.KvmSetMsrCommon(vcpu, msr, value);
        int get = rig.Host.KvmGetMsrCommon(vcpu, msr, out ulong read);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(set, Is.Zero, "accepted");
            Assert.That(get, Is.Zero);
            Assert.That(read, Is.EqualTo(value), "reads back as written");
            Assert.That(Kernel.ApfEnabled(vcpu), Is.True);
            Assert.That(vcpu.Arch.ApfData.Gpa, Is.EqualTo(HostApfRig.AreaGpaOf(0)), "the area's address, flags masked off");
            Assert.That(vcpu.Arch.ApfData.Hva, Is.EqualTo(rig.HvaOf(HostApfRig.AreaGfn) + (HostApfRig.AreaGpaOf(0) & 0xfff)),
                "resolved to the VMM's mapping of the area");
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void Wrmsr_GuestEnablesAsyncPf_RdmsrReadsItBack(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi);
        var cpu = rig.Cpus[0];
        ulong value = HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        bool wrote = cpu.Wrmsr(msr, value);
        bool read = cpu.Rdmsr(msr, out ulong back);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(wrote, Is.True, "no #GP");
            Assert.That(read, Is.True);
            Assert.That(back, Is.EqualTo(value));
            Assert.That(rig.Vcpus[0].Arch.ApfMsrVal, Is.EqualTo(value), "the guest's wrmsr reached kvm_set_msr_common");
        }
    }

    [TestCase(0x04ul)]
    [TestCase(0x08ul)]
    [TestCase(0x10ul)]
    [TestCase(0x20ul)]
    [TestCase(0x3cul)]
    [TestCase(0x24ul)]
    public void KvmSetMsr_AreaNotAlignedTo64Bytes_Gp(ulong misalignment)
    {
        using var rig = Booted(ApfAbi.V3);
        var vcpu = rig.Vcpus[0];
        ulong value = (HostApfRig.AreaGpaOf(0) + misalignment) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        int r = rig.Host.KvmSetMsrCommon(vcpu, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, value);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r, Is.Not.Zero, "#GP");
            Assert.That(vcpu.Arch.ApfMsrVal, Is.Zero, "nothing recorded");
            Assert.That(Kernel.ApfEnabled(vcpu), Is.False);
            Assert.That(vcpu.AsyncPfDone, Is.Empty, "no wake-all queued");
        }
    }

    [Test]
    public void KvmSetMsr_AreaOutsideEveryMemslot_Gp()
    {
        using var rig = Booted(ApfAbi.V3);
        var vcpu = rig.Vcpus[0];
        ulong beyondRam = (ulong)rig.Options.GuestMemBytes + (16 * Pgtable.PAGE_SIZE);
        int r = rig.Host.KvmSetMsrCommon(vcpu, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, beyondRam | ApfAbi.KVM_ASYNC_PF_ENABLED);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r, Is.Not.Zero, "#GP: the area has no hva");
            Assert.That(Kernel.ApfEnabled(vcpu), Is.False, "async PF stays off");
            Assert.That(vcpu.AsyncPfDone, Is.Empty);
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmSetMsr_OtherProfilesIndex_Gp(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi);
        var vcpu = rig.Vcpus[0];
        uint other = abi == ApfAbi.V3 ? ApfAbi.Merged.MSR_KVM_ASYNC_PF_EN : ApfAbi.V3.MSR_KVM_ASYNC_PF_EN;
        int set = rig.Host.KvmSetMsrCommon(vcpu, other, HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED);
        int get = rig.Host.KvmGetMsrCommon(vcpu, other, out _);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(other, Is.Not.EqualTo(msr));
            Assert.That(set, Is.Not.Zero, "wrmsr #GP");
            Assert.That(get, Is.Not.Zero, "rdmsr #GP");
            Assert.That(Kernel.ApfEnabled(vcpu), Is.False);
            Assert.That(rig.Cpus[0].Wrmsr(other, HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED), Is.False, "and from the guest");
        }
    }

    [Test]
    public void KvmSetMsr_HostWithoutAsyncPf_Gp()
    {
        using var rig = Booted(ApfAbi.V3, asyncPf: false);
        int r = rig.Host.KvmSetMsrCommon(rig.Vcpus[0], ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, HostApfRig.AreaGpaOf(0) | ApfAbi.KVM_ASYNC_PF_ENABLED);
        Assert.That(r, Is.Not.Zero, "patch 0's KVM has no such MSR");
    }

    // ---- disabling ------------------------------------------------------------------------------

    [Test]
    public void KvmSetMsr_DisabledWhileFaultsOutstanding_NoWorkLeftBehind()
    {
        using var rig = new HostApfRig().Boot();
        ulong gfn0 = HostApfRig.Gfn(0);
        ulong gfn1 = HostApfRig.Gfn(1);
        rig.Evict(gfn0, gfn1);
        var guest = rig.Guests[0];
        guest.EnableAtBoot = true;
        guest.Spawn("toucher0", ctx => ctx.Store(HostApfRig.Gva(0)));
        guest.Spawn("toucher1", ctx => ctx.Store(HostApfRig.Gva(1)));
        (int Queue, int Done, int Queued)? afterDisable = null;
        long disabledAt = -1;
        guest.Spawn("disabler", async ctx =>
        {
            await ctx.Compute(Ms);
            guest.DisableAsyncPf();
            disabledAt = rig.Loop.Now;
            var v = rig.Vcpus[0];
            afterDisable = (v.AsyncPfQueue.Count, v.AsyncPfDone.Count, v.AsyncPfQueued);
            while (true)
            {
                await ctx.Compute(100 * Us);
            }
        });
        rig.Go();
        rig.RunUntil(() => disabledAt >= 0);
        uint area = rig.PeekGuestU32(guest.AreaGpa) ?? uint.MaxValue;
        rig.Run(20 * Ms);

        var reads = rig.ReadsOf(gfn0).Concat(rig.ReadsOf(gfn1)).ToList();
        var vcpu = rig.Vcpus[0];
        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.NotPresents.Count(), Is.EqualTo(2), "precondition: two async faults outstanding");
            Assert.That(reads.Select(r => r.CompletedNs), Is.All.GreaterThan(disabledAt), "precondition: both reads still in flight when disabled");
            Assert.That(afterDisable, Is.EqualTo((0, 0, 0)), "the queues were cleared by the MSR write");
            Assert.That(area, Is.Zero, "precondition: the guest had consumed its reason word");
            Assert.That(reads.Select(r => r.CompletedNs), Is.All.GreaterThan(0), "the workers did finish later");
            Assert.That(rig.PeekGuestU32(guest.AreaGpa), Is.Zero, "and did not write the area");
            Assert.That(guest.PageFaults.Where(f => f.AtNs > disabledAt), Is.Empty, "nor inject anything");
            Assert.That(rig.Trace.Ready.Where(e => e.TimeNs > disabledAt), Is.Empty, "no page-ready at all");
            Assert.That(vcpu.AsyncPfQueue, Is.Empty);
            Assert.That(vcpu.AsyncPfDone, Is.Empty);
            Assert.That(vcpu.AsyncPfQueued, Is.Zero);
        }
    }

    // ---- what the VMM and the guest are told ----------------------------------------------------

    [TestCaseSource(nameof(Profiles))]
    public void KvmDevIoctlCheckExtension_AsyncPfHost_ReportsCapAndSavesMsr(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Host.KvmDevIoctlCheckExtension(abi.KVM_CAP_ASYNC_PF), Is.EqualTo(1), "KVM_CAP_ASYNC_PF");
            Assert.That(rig.Host.MsrsToSave, Does.Contain(msr), "the VMM saves and restores the MSR (migration)");
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmDevIoctlCheckExtension_BaselineHost_NoCapNoMsr(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi, asyncPf: false);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Host.KvmDevIoctlCheckExtension(abi.KVM_CAP_ASYNC_PF), Is.Zero);
            Assert.That(rig.Host.MsrsToSave, Does.Not.Contain(msr));
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmEmulateCpuid_KvmFeaturesLeaf_AdvertisesAsyncPfAtProfilesBit(ApfAbi abi, uint msr, int featureBit)
    {
        using var rig = Booted(abi);
        using var baseline = Booted(abi, asyncPf: false);
        int otherBit = featureBit == 3 ? 4 : 3;
        uint eax = rig.Host.KvmEmulateCpuid(rig.Vcpus[0], KvmPara.KVM_CPUID_FEATURES);
        uint viaCpu = rig.Cpus[0].Cpuid(KvmPara.KVM_CPUID_FEATURES);
        uint before = baseline.Host.KvmEmulateCpuid(baseline.Vcpus[0], KvmPara.KVM_CPUID_FEATURES);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(eax & (1u << featureBit), Is.Not.Zero, "KVM_FEATURE_ASYNC_PF");
            Assert.That(eax & (1u << otherBit), Is.Zero, "not the other profile's bit");
            Assert.That(viaCpu, Is.EqualTo(eax), "what the guest's CPUID sees");
            Assert.That(before & (1u << featureBit), Is.Zero, "absent without async PF");
            Assert.That(eax & ~(1u << featureBit), Is.EqualTo(before), "the other features unchanged");
        }
    }
}
