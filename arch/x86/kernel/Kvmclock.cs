using Hw;

namespace Linux;

// arch/x86/kernel/kvmclock.c (patch 0, before patch 1 moves kvm_smp_prepare_boot_cpu to kvm.c):
// the paravirtual clock. Guest time is the hardware clock; what the port keeps is the per-CPU
// registration with the host.
public sealed partial class Kernel
{
    /// <summary>CPUs whose clock is registered with the host, and how many times each was.</summary>
    public int[] KvmClockRegistrations { get; private set; } = [];

    /// <summary>kvm_register_clock(): writes this CPU's pvclock area to MSR_KVM_SYSTEM_TIME.</summary>
    [Port("arch/x86/kernel/kvmclock.c", "kvm_register_clock")]
    internal int KvmRegisterClock(X86Cpu cpu)
    {
        if (KvmClockRegistrations.Length != HwCpus.Count)
        {
            KvmClockRegistrations = new int[HwCpus.Count];
        }
        KvmClockRegistrations[cpu.Id]++;
        ulong area = ((GuestLayout.PerCpuBase + (ulong)cpu.Id) << Pgtable.PAGE_SHIFT) | 1;
        return cpu.Wrmsr(KvmPara.MSR_KVM_SYSTEM_TIME, area) ? 0 : 1;
    }

    /// <summary>kvm_setup_secondary_clock(): each AP registers its clock as it comes up.</summary>
    [Port("arch/x86/kernel/kvmclock.c", "kvm_setup_secondary_clock")]
    internal void KvmSetupSecondaryClock(X86Cpu cpu) => KvmRegisterClock(cpu);

    /// <summary>kvm_smp_prepare_boot_cpu(): the boot CPU registers its clock (in kvmclock.c until patch 1).</summary>
    [Port("arch/x86/kernel/kvmclock.c", "kvm_smp_prepare_boot_cpu")]
    internal void KvmSmpPrepareBootCpu(X86Cpu cpu) => KvmRegisterClock(cpu);

    /// <summary>kvmclock_init(): uses kvmclock when the host offers it.</summary>
    [Port("arch/x86/kernel/kvmclock.c", "kvmclock_init")]
    internal bool KvmclockInit(X86Cpu cpu) =>
        (cpu.Cpuid(KvmPara.KVM_CPUID_FEATURES) & (1u << KvmPara.KVM_FEATURE_CLOCKSOURCE)) != 0;
}
