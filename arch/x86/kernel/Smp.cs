using Hw;

namespace Linux;

// arch/x86/kernel/smp.c (patch 0): reschedule IPIs.
public sealed partial class Kernel
{
    /// <summary>native_smp_send_reschedule(): an IPI from <paramref name="fromCpu"/> (or the boot CPU) to <paramref name="cpu"/>.</summary>
    [Port("arch/x86/kernel/smp.c", "native_smp_send_reschedule")]
    private void NativeSmpSendReschedule(int fromCpu, int cpu)
    {
        var sender = HwCpus[fromCpu < 0 ? 0 : fromCpu];
        sender.Wrmsr(X2Apic.MSR_X2APIC_ICR, ((ulong)cpu << 32) | IrqVectors.RESCHEDULE_VECTOR);
    }

    /// <summary>smp_reschedule_interrupt(): nothing to do but acknowledge; the return path schedules.</summary>
    [Port("arch/x86/kernel/smp.c", "smp_reschedule_interrupt")]
    private static void SmpRescheduleInterrupt(X86Cpu cpu) => AckAPICIrq(cpu);
}
