using Hw;

namespace Linux;

// arch/x86/kernel/smpboot.c (patch 0): bringing up the application processors. Unlike Linux,
// no INIT/SIPI sequence is modelled: every AP starts executing start_secondary at power-on.
public sealed partial class Kernel
{
    /// <summary>native_smp_prepare_boot_cpu() and the paravirt hook the KVM guest installs.</summary>
    [Port("arch/x86/kernel/smpboot.c", "native_smp_prepare_boot_cpu")]
    private void SmpPrepareBootCpu(X86Cpu cpu)
    {
        if (_kvmclockEnabled)
        {
            KvmSmpPrepareBootCpu(cpu);
        }
    }

    /// <summary>start_secondary(): an AP loads the IDT, registers its clock, starts its timer and idles.</summary>
    [Port("arch/x86/kernel/smpboot.c", "start_secondary")]
    private async SimTask StartSecondary(TaskStruct idle)
    {
        await idle.Context!.WaitScheduledIn();
        var cpu = idle.Context.Cpu!;
        cpu.DirectMapBase = GuestLayout.PAGE_OFFSET;
        while (_idt is null)
        {
            await idle.Context.KernelCompute(TickNsec); // wait for the boot CPU's trap_init
        }
        LoadIdt(cpu);
        if (_kvmclockEnabled)
        {
            KvmSetupSecondaryClock(cpu);
        }
        SetupApicTimer(cpu);
        await CpuIdle(idle);
    }
}
