using Hw;

namespace Linux;

// arch/x86/kernel/apic/apic.c (patch 0): the guest's local APIC timer, in periodic mode.
public sealed partial class Kernel
{
    /// <summary>Timer interrupts this kernel handled, per CPU.</summary>
    public long[] LocalTimerInterrupts { get; private set; } = [];

    /// <summary>setup_APIC_timer(): periodic at HZ (bus clock taken as 1 GHz, divide by 1).</summary>
    [Port("arch/x86/kernel/apic/apic.c", "setup_APIC_timer")]
    internal void SetupAPICTimer(X86Cpu cpu)
    {
        if (LocalTimerInterrupts.Length != HwCpus.Count)
        {
            LocalTimerInterrupts = new long[HwCpus.Count];
        }
        cpu.Wrmsr(X2Apic.MSR_X2APIC_LVTT, X2Apic.APIC_LVT_TIMER_PERIODIC | IrqVectors.LOCAL_TIMER_VECTOR);
        cpu.Wrmsr(X2Apic.MSR_X2APIC_TMICT, (ulong)TickNsec);
    }

    /// <summary>ack_APIC_irq().</summary>
    [Port("arch/x86/include/asm/apic.h", "ack_APIC_irq")]
    private static void AckAPICIrq(X86Cpu cpu) => cpu.Wrmsr(X2Apic.MSR_X2APIC_EOI, 0);

    /// <summary>smp_apic_timer_interrupt() → local_apic_timer_interrupt() → tick_handle_periodic().</summary>
    [Port("arch/x86/kernel/apic/apic.c", "smp_apic_timer_interrupt")]
    private void SmpApicTimerInterrupt(X86Cpu cpu)
    {
        AckAPICIrq(cpu);
        LocalTimerInterrupts[cpu.Id]++;
        cpu.Charge(Costs.GuestTickNs);
        TickPeriodic(cpu.Id);
    }
}
