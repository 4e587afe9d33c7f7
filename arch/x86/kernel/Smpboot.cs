using Hw;

namespace Linux;

// arch/x86/kernel/smpboot.c (patch 0): bringing up the application processors. Unlike Linux,
// no INIT/SIPI sequence is modelled: every AP starts executing start_secondary at power-on.
public sealed partial class Kernel
{
    private Action<X86Cpu>? _smpPrepareBootCpu;

    /// <summary>smp_ops.smp_prepare_boot_cpu: native, unless the KVM guest installed its own (kvm_guest_init since patch 1).</summary>
    private void SmpPrepareBootCpu(X86Cpu cpu) => (_smpPrepareBootCpu ?? NativeSmpPrepareBootCpu)(cpu);

    /// <summary>native_smp_prepare_boot_cpu().</summary>
    [Port("arch/x86/kernel/smpboot.c", "native_smp_prepare_boot_cpu")]
    private static void NativeSmpPrepareBootCpu(X86Cpu cpu)
    {
    }

    /// <summary>start_secondary(): an AP loads the IDT, registers its clock, comes online (patch 3: the CPU
    /// notifier enables async PF on it), starts its timer and idles.</summary>
    [Port("arch/x86/kernel/smpboot.c", "start_secondary", Patches = [0, 3])]
    private async SimTask StartSecondary(TaskStruct idle)
    {
        MightSleep();
        await idle.Context!.WaitScheduledIn();
        var cpu = idle.Context.Cpu!;
        cpu.DirectMapBase = GuestLayout.PAGE_OFFSET;
        while (!_bootCpuDone)
        {
            await idle.Context.KernelCompute(TickNsec); // wait for the boot CPU's trap_init and kvm_guest_init
        }
        LoadIdt(cpu);
        cpu.InterruptsEnabled = true;
        if (_kvmclockEnabled)
        {
            KvmSetupSecondaryClock(cpu);
        }
        await idle.Context.Touch(ApfReasonGpa(cpu.Id));
        KvmCpuNotify(cpu, online: true);
        SetupAPICTimer(cpu);
        await CpuIdle(idle);
    }
}
