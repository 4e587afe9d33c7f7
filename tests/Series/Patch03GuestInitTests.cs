using Hw;
using KvmApf.Tests.Rigs;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 3: a PV guest tells the host where each CPU's async PF reason word is, by writing the
/// word's guest-physical address with the enable bit to MSR_KVM_ASYNC_PF_EN, on the boot CPU
/// (through patch 1's hook), on every AP as it comes up and on every CPU brought online; it
/// writes 0 there when a CPU goes offline and on reboot. Only if the host advertises the
/// feature. The host is a substitute for the CPUs' inline exits that records the writes.
/// </summary>
[TestFixture, Category("patch-03"), Description("Add async PF initialization to PV guest.")]
public sealed class Patch03GuestInitTests
{
    private static readonly ApfAbi[] Profiles = [ApfAbi.V3, ApfAbi.Merged];

    private static GuestHwRig Boot(int cpus, ApfAbi abi, uint features)
    {
        var rig = new GuestHwRig(new GuestHwOptions { Cpus = cpus, Abi = abi, CpuidFeatures = features });
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            rig.Ram.WriteU32(Kernel.ApfReasonGpa(cpu), 0xdead); // whatever an earlier kernel left there
        }
        rig.Boot((_, _) => SimTask.CompletedTask);
        rig.RunFor(5 * rig.Guest.TickNsec);
        return rig;
    }

    private static GuestHwRig Boot(int cpus, ApfAbi abi) => Boot(cpus, abi, GuestHwOptions.Features(abi, asyncPf: true));

    private static List<ulong> EnWrites(GuestHwRig rig, int cpu, ApfAbi abi) =>
        [.. rig.MsrWrites.Where(w => w.Cpu == cpu && w.Index == abi.MSR_KVM_ASYNC_PF_EN).Select(w => w.Value)];

    [TestCaseSource(nameof(Profiles))]
    public void KvmGuestCpuInit_HostAdvertisesAsyncPf_EachCpuWritesItsOwnAlignedAreaWithEnableBit(ApfAbi abi)
    {
        var rig = Boot(3, abi);
        var areas = new List<ulong>();
        using (Assert.EnterMultipleScope())
        {
            for (int cpu = 0; cpu < 3; cpu++)
            {
                var writes = EnWrites(rig, cpu, abi);
                Assert.That(writes, Has.Count.EqualTo(1), $"CPU {cpu} wrote the MSR once");
                if (writes.Count != 1)
                {
                    continue;
                }
                ulong area = writes[0] & ~0x3fUL;
                areas.Add(area);
                Assert.That(writes[0] & 0x3f, Is.EqualTo(ApfAbi.KVM_ASYNC_PF_ENABLED), $"CPU {cpu}: enable bit, nothing else (non-preemptible guest)");
                Assert.That(area % 64, Is.Zero, $"CPU {cpu}: a 64-byte aligned area");
                Assert.That(area, Is.EqualTo(Kernel.ApfReasonGpa(cpu)), $"CPU {cpu}: its own per-CPU area");
                Assert.That(area >> Pgtable.PAGE_SHIFT, Is.EqualTo(GuestLayout.PerCpuBase + (ulong)cpu), $"CPU {cpu}: inside its own per-CPU page");
                Assert.That(rig.Ram.ReadU32(area), Is.Zero, $"CPU {cpu}: the guest zeroed the reason word (it held garbage at power-on)");
                Assert.That(rig.Guest.ApfReasonEnabled[cpu], Is.True);
            }
            Assert.That(areas, Is.Unique, "no two CPUs share an area");
            rig.Exits.DidNotReceive().WriteMsr(Arg.Any<int>(), (abi == ApfAbi.V3 ? ApfAbi.Merged : ApfAbi.V3).MSR_KVM_ASYNC_PF_EN, Arg.Any<ulong>());
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmGuestCpuInit_HostWithoutFeatureBit_WritesNothing(ApfAbi abi)
    {
        var rig = Boot(2, abi, GuestHwOptions.Features(abi, asyncPf: false));
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: false);
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: true);
        rig.Guest.KvmPvRebootNotify();
        using (Assert.EnterMultipleScope())
        {
            rig.Exits.DidNotReceive().WriteMsr(Arg.Any<int>(), abi.MSR_KVM_ASYNC_PF_EN, Arg.Any<ulong>());
            Assert.That(rig.Guest.ApfReasonEnabled, Is.All.False);
            Assert.That(rig.Guest.KvmClockRegistrations, Is.EqualTo(new[] { 1, 1 }), "the guest did boot as a KVM guest");
        }
    }

    [Test]
    public void KvmGuestCpuInit_MergedGuestOnV3Host_WritesNothing()
    {
        // The v3 host advertises bit 3; a guest built against the merged ABI looks for bit 4.
        var rig = Boot(2, ApfAbi.Merged, GuestHwOptions.Features(ApfAbi.V3, asyncPf: true));
        using (Assert.EnterMultipleScope())
        {
            rig.Exits.DidNotReceive().WriteMsr(Arg.Any<int>(), ApfAbi.Merged.MSR_KVM_ASYNC_PF_EN, Arg.Any<ulong>());
            rig.Exits.DidNotReceive().WriteMsr(Arg.Any<int>(), ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, Arg.Any<ulong>());
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmCpuNotify_CpuGoesOfflineAndComesBack_WritesZeroThenItsAreaAgain(ApfAbi abi)
    {
        var rig = Boot(3, abi);
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: false);
        bool enabledWhileOffline = rig.Guest.ApfReasonEnabled[1];
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: true);
        ulong area = Kernel.ApfReasonGpa(1) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(EnWrites(rig, 1, abi), Is.EqualTo(new[] { area, 0UL, area }), "boot, offline, online");
            Assert.That(enabledWhileOffline, Is.False);
            Assert.That(rig.Guest.ApfReasonEnabled[1], Is.True);
            Assert.That(EnWrites(rig, 0, abi), Has.Count.EqualTo(1), "the other CPUs are left alone");
            Assert.That(EnWrites(rig, 2, abi), Has.Count.EqualTo(1));
        }
    }

    [Test]
    public void KvmCpuNotify_CpuGoesOffline_WritesZeroOnThatCpuOnly()
    {
        var rig = Boot(3, ApfAbi.V3);
        rig.Guest.KvmCpuNotify(rig.Cpus[2], online: false);
        using (Assert.EnterMultipleScope())
        {
            rig.Exits.Received(1).WriteMsr(2, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, 0);
            rig.Exits.DidNotReceive().WriteMsr(0, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, 0);
            rig.Exits.DidNotReceive().WriteMsr(1, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN, 0);
            Assert.That(rig.Guest.ApfReasonEnabled, Is.EqualTo(new[] { true, true, false }));
        }
    }

    [TestCaseSource(nameof(Profiles))]
    public void KvmPvRebootNotify_Reboot_EveryCpuWritesZeroOnce(ApfAbi abi)
    {
        var rig = Boot(3, abi);
        rig.Guest.KvmPvRebootNotify();
        rig.Guest.KvmPvRebootNotify(); // a second notification finds async PF already off
        using (Assert.EnterMultipleScope())
        {
            for (int cpu = 0; cpu < 3; cpu++)
            {
                Assert.That(EnWrites(rig, cpu, abi), Is.EqualTo(new[] { Kernel.ApfReasonGpa(cpu) | ApfAbi.KVM_ASYNC_PF_ENABLED, 0UL }), $"CPU {cpu}");
            }
            Assert.That(rig.Guest.ApfReasonEnabled, Is.All.False);
        }
    }

    [Test]
    public void StartSecondary_ApComesUp_EnablesAsyncPfAfterTheBootCpu()
    {
        var rig = Boot(2, ApfAbi.V3);
        var en = rig.MsrWrites.Where(w => w.Index == ApfAbi.V3.MSR_KVM_ASYNC_PF_EN).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(en.Select(w => w.Cpu), Is.EqualTo(new[] { 0, 1 }), "the boot CPU first, from its hook; the AP once it is up");
            Assert.That(rig.MsrWrites.Where(w => w.Cpu == 1).Select(w => w.Index).Take(2),
                Is.EqualTo(new[] { KvmPara.MSR_KVM_SYSTEM_TIME, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN }),
                "start_secondary: the AP's clock, then the CPU notifier's async PF");
        }
    }
}
