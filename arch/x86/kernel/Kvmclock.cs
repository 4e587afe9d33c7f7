using Hw;

namespace Linux;

// arch/x86/kernel/kvmclock.c (patches 0 and 1): the paravirtual clock. Guest time is the hardware
// clock; what the port keeps is the per-CPU registration with the host. Patch 1 moved
// kvm_smp_prepare_boot_cpu() from here to kvm.c.
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

    /// <summary>kvmclock_init(): uses kvmclock when the host offers it (patch 1 no longer installs the boot-CPU hook here).</summary>
    /// <remarks>
    /// Unlike Linux, which registers the boot CPU here ("boot clock") and again in
    /// kvm_smp_prepare_boot_cpu ("primary cpu clock"), the port registers it once: here only
    /// when the kernel has no KVM guest support, whose boot-CPU hook (kvm.c since patch 1) does it.
    /// </remarks>
    [Port("arch/x86/kernel/kvmclock.c", "kvmclock_init", Patches = [0, 1])]
    internal bool KvmclockInit(X86Cpu cpu)
    {
        bool available = (cpu.Cpuid(KvmPara.KVM_CPUID_FEATURES) & (1u << KvmPara.KVM_FEATURE_CLOCKSOURCE)) != 0;
        if (available && !Config.CONFIG_KVM_GUEST)
        {
            KvmRegisterClock(cpu);
        }
        return available;
    }
}
