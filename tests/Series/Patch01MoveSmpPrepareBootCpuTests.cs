using Hw;
using KvmApf.Tests.Rigs;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 1 moves kvm_smp_prepare_boot_cpu() from kvmclock.c to kvm.c: kvm_guest_init() installs
/// it, and it registers the boot CPU's clock and then (from patch 3 on) enables async PF there.
/// The patch has no behaviour of its own, so it is tested through what depends on it (DESIGN
/// section 6): the host, played by a substitute for the CPUs' inline exits, sees each CPU's
/// clock registered once, and the boot CPU's registration come through the hook, before the
/// async PF MSR write that the same hook makes.
/// </summary>
[TestFixture, Category("patch-01"), Description("Move kvm_smp_prepare_boot_cpu() from kvmclock.c to kvm.c.")]
public sealed class Patch01MoveSmpPrepareBootCpuTests
{
    private static GuestHwRig Boot(GuestHwOptions options)
    {
        var rig = new GuestHwRig(options);
        rig.Boot((_, _) => SimTask.CompletedTask);
        rig.RunFor(5 * rig.Guest.TickNsec); // the APs come up at their next poll of the boot CPU
        return rig;
    }

    private static List<MsrWrite> Writes(GuestHwRig rig, int cpu, uint index) =>
        [.. rig.MsrWrites.Where(w => w.Cpu == cpu && w.Index == index)];

    [Test]
    public void KvmRegisterClock_BootWithThreeCpus_RegistersEachCpuExactlyOnce()
    {
        var rig = Boot(new GuestHwOptions { Cpus = 3 });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guest.KvmClockRegistrations, Is.EqualTo(new[] { 1, 1, 1 }));
            for (int cpu = 0; cpu < 3; cpu++)
            {
                rig.Exits.Received(1).WriteMsr(cpu, KvmPara.MSR_KVM_SYSTEM_TIME, Arg.Any<ulong>());
                Assert.That(Writes(rig, cpu, KvmPara.MSR_KVM_SYSTEM_TIME).Select(w => w.Value & ~1UL),
                    Is.EqualTo(new[] { (GuestLayout.PerCpuBase + (ulong)cpu) << Pgtable.PAGE_SHIFT }),
                    $"CPU {cpu} registered its own pvclock area once");
            }
        }
    }

    [Test]
    public void KvmSmpPrepareBootCpu_BootCpu_RegistersClockBeforeEnablingAsyncPf()
    {
        var rig = Boot(new GuestHwOptions { Cpus = 2 });
        uint apf = ApfAbi.V3.MSR_KVM_ASYNC_PF_EN;
        var cpu0 = rig.MsrWrites.Where(w => w.Cpu == 0 && (w.Index == KvmPara.MSR_KVM_SYSTEM_TIME || w.Index == apf)).Select(w => w.Index).ToList();
        Assert.That(cpu0, Is.EqualTo(new[] { KvmPara.MSR_KVM_SYSTEM_TIME, apf }),
            "kvm_smp_prepare_boot_cpu: kvm_register_clock, then kvm_guest_cpu_init, each once");
    }

    [Test]
    public void KvmSmpPrepareBootCpu_HostWithoutAsyncPf_StillRegistersBootClock()
    {
        var rig = Boot(new GuestHwOptions { Cpus = 2, CpuidFeatures = GuestHwOptions.Features(ApfAbi.V3, asyncPf: false) });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guest.KvmClockRegistrations, Is.EqualTo(new[] { 1, 1 }), "kvm_guest_init installs the hook whatever the features");
            Assert.That(rig.MsrWrites.Where(w => w.Index == ApfAbi.V3.MSR_KVM_ASYNC_PF_EN), Is.Empty);
        }
    }

    [Test]
    public void KvmSmpPrepareBootCpu_HostWithoutKvmclock_EnablesAsyncPfWithoutRegisteringAClock()
    {
        var rig = Boot(new GuestHwOptions { Cpus = 2, CpuidFeatures = GuestHwOptions.Features(ApfAbi.V3, asyncPf: true, clock: false) });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.MsrWrites.Where(w => w.Index == KvmPara.MSR_KVM_SYSTEM_TIME), Is.Empty);
            Assert.That(Writes(rig, 0, ApfAbi.V3.MSR_KVM_ASYNC_PF_EN), Has.Count.EqualTo(1), "the hook still enables async PF on the boot CPU");
        }
    }

    [Test]
    public void KvmclockInit_GuestWithoutKvmGuestSupport_StillRegistersTheBootCpuClock()
    {
        var rig = Boot(new GuestHwOptions { Cpus = 2, KvmGuest = false });
        Assert.That(rig.Guest.KvmClockRegistrations, Is.EqualTo(new[] { 1, 1 }), "kvmclock is used on every CPU, the boot CPU included");
    }
}
