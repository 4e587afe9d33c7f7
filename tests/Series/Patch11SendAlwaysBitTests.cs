using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 11, host half: bit 1 of MSR_KVM_ASYNC_PF_EN is send-always (the guest can take an async
/// PF in kernel mode), so the reserved mask narrows from patch 2's 0x3e to bits 2–5 (0x3c), and
/// the host records the bit as <c>apf_send_user_only</c>. What the bit changes in the fault path
/// is patch 12's (<see cref="Patch12SendAsyncPfOutsideUserspaceTests"/>); the guest's side of the
/// patch is in <see cref="Patch11SendAlwaysBitGuestTests"/>.
/// </summary>
[TestFixture, Category("patch-11"), Description("Let host know whether the guest can handle async PF in non-userspace context.")]
public sealed class Patch11SendAlwaysBitTests
{
    private static readonly ulong Area = HostApfRig.AreaGpaOf(0);

    /// <summary>The reserved bits of the final mask, 0x3c.</summary>
    private static IEnumerable<TestCaseData> ReservedBits() =>
        Enumerable.Range(2, 4).Select(bit => new TestCaseData(bit).SetArgDisplayNames($"bit {bit}"));

    private static HostApfRig Booted(ApfAbi? abi = null) => new HostApfRig(new HostRigOptions { Abi = abi ?? ApfAbi.V3 }).Boot();

    [TestCaseSource(nameof(ReservedBits))]
    public void KvmSetMsr_ReservedBitSet_GpAndNothingChanges(int bit)
    {
        using var rig = Booted();
        var vcpu = rig.Vcpus[0];
        uint msr = rig.Options.Abi.MSR_KVM_ASYNC_PF_EN;
        ulong valid = Area | ApfAbi.KVM_ASYNC_PF_ENABLED | ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS;
        Assert.That(rig.Host.KvmSetMsrCommon(vcpu, msr, valid), Is.Zero, "precondition: a valid value first");
        int queuedBefore = vcpu.AsyncPfQueued;
        int r = rig.Host.KvmSetMsrCommon(vcpu, msr, Area | ApfAbi.KVM_ASYNC_PF_ENABLED | (1UL << bit));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r, Is.Not.Zero, "#GP");
            Assert.That(vcpu.Arch.ApfMsrVal, Is.EqualTo(valid), "the MSR keeps its value");
            Assert.That(vcpu.Arch.ApfSendUserOnly, Is.False, "and send-always its setting");
            Assert.That(vcpu.AsyncPfQueued, Is.EqualTo(queuedBefore), "no second wake-all");
            Assert.That(rig.Cpus[0].Wrmsr(msr, Area | ApfAbi.KVM_ASYNC_PF_ENABLED | (1UL << bit)), Is.False, "the guest's wrmsr faults too");
        }
    }

    [TestCase(0x0ul, true)]
    [TestCase(0x1ul, true)]
    [TestCase(0x2ul, true)]
    [TestCase(0x3ul, true)]
    [TestCase(0x4ul, false)]
    [TestCase(0x3eul, false)]
    [TestCase(0x40ul, true)]
    public void KvmSetMsr_LowSixBits_OnlyEnableAndSendAlwaysAccepted(ulong lowBits, bool accepted)
    {
        using var rig = Booted();
        // Bits 6 and up are the area's address: 0x40 moves it by 64 bytes, still inside the area page.
        int r = rig.Host.KvmSetMsrCommon(rig.Vcpus[0], rig.Options.Abi.MSR_KVM_ASYNC_PF_EN, Area | lowBits);
        Assert.That(r == 0, Is.EqualTo(accepted), $"0x{lowBits:x} with the final mask 0x3c");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void KvmSetMsr_SendAlwaysBit_RecordedAsApfSendUserOnly(bool sendAlways)
    {
        using var rig = Booted(ApfAbi.Merged);
        var vcpu = rig.Vcpus[0];
        ulong value = Area | ApfAbi.KVM_ASYNC_PF_ENABLED | (sendAlways ? ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS : 0);
        int r = rig.Host.KvmSetMsrCommon(vcpu, ApfAbi.Merged.MSR_KVM_ASYNC_PF_EN, value);
        rig.Host.KvmGetMsrCommon(vcpu, ApfAbi.Merged.MSR_KVM_ASYNC_PF_EN, out ulong back);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r, Is.Zero);
            Assert.That(back, Is.EqualTo(value), "the bit reads back");
            Assert.That(vcpu.Arch.ApfSendUserOnly, Is.EqualTo(!sendAlways));
            Assert.That(vcpu.Arch.ApfData.Gpa, Is.EqualTo(Area), "the flag bits are not part of the area's address");
        }
    }

    [Test]
    public void KvmSetMsr_ReenabledWithoutSendAlways_BackToUserOnly()
    {
        using var rig = Booted();
        var vcpu = rig.Vcpus[0];
        uint msr = rig.Options.Abi.MSR_KVM_ASYNC_PF_EN;
        rig.Host.KvmSetMsrCommon(vcpu, msr, Area | ApfAbi.KVM_ASYNC_PF_ENABLED | ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS);
        bool afterSendAlways = vcpu.Arch.ApfSendUserOnly;
        rig.Host.KvmSetMsrCommon(vcpu, msr, Area | ApfAbi.KVM_ASYNC_PF_ENABLED);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(afterSendAlways, Is.False);
            Assert.That(vcpu.Arch.ApfSendUserOnly, Is.True, "each enabling records the bit anew");
        }
    }
}
