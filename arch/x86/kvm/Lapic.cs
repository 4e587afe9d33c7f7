using Hw;

namespace Linux;

/// <summary>arch/x86/kvm/lapic.h: struct kvm_lapic, the emulated local APIC of a vCPU.</summary>
public sealed class KvmLapic(KvmVcpu vcpu)
{
    public KvmVcpu Vcpu { get; } = vcpu;

    /// <summary>Interrupt request register, one bit per vector.</summary>
    public ApicVectorRegister Irr { get; } = new();

    /// <summary>In-service register.</summary>
    public ApicVectorRegister Isr { get; } = new();

    /// <summary>APIC_LVTT.</summary>
    public ulong Lvtt { get; set; }

    /// <summary>struct kvm_timer: the host hrtimer behind the APIC timer.</summary>
    public SimTimer? Timer { get; set; }

    /// <summary>Timer period, ns (TMICT with a 1 GHz bus clock and divide-by-1).</summary>
    public long PeriodNs { get; set; }

    /// <summary>lapic_timer.pending: expirations not yet injected (2.6.32 reinjects every one).</summary>
    public int Pending { get; set; }

    /// <summary>Timer interrupts injected.</summary>
    public long TimerInjected { get; set; }
}

/// <summary>
/// One of the APIC's 256-bit vector registers (IRR, ISR, TMR), as four 64-bit words instead of
/// the APIC page's eight 32-bit ones; <see cref="Highest"/> is lapic.c's find_highest_vector().
/// </summary>
public sealed class ApicVectorRegister
{
    private readonly ulong[] _words = new ulong[4];

    public bool this[int vector]
    {
        get => (_words[vector >> 6] & (1UL << (vector & 63))) != 0;
        set
        {
            if (value)
            {
                _words[vector >> 6] |= 1UL << (vector & 63);
            }
            else
            {
                _words[vector >> 6] &= ~(1UL << (vector & 63));
            }
        }
    }

    /// <summary>The highest vector set, or -1.</summary>
    public int Highest()
    {
        for (int w = _words.Length - 1; w >= 0; w--)
        {
            if (_words[w] != 0)
            {
                return (w << 6) + 63 - System.Numerics.BitOperations.LeadingZeroCount(_words[w]);
            }
        }
        return -1;
    }
}

// arch/x86/kvm/lapic.c (patch 0), x2APIC register interface only.
public sealed partial class Kernel
{
    /// <summary>kvm_create_lapic().</summary>
    [Port("arch/x86/kvm/lapic.c", "kvm_create_lapic")]
    private void KvmCreateLapic(KvmVcpu vcpu)
    {
        var apic = new KvmLapic(vcpu);
        apic.Timer = new SimTimer(() => KvmTimerFn(apic));
        vcpu.Arch.Apic = apic;
    }

    /// <summary>kvm_x2apic_msr_write() → apic_reg_write().</summary>
    [Port("arch/x86/kvm/lapic.c", "apic_reg_write")]
    private bool ApicRegWrite(KvmVcpu vcpu, uint msr, ulong data)
    {
        var apic = vcpu.Arch.Apic;
        switch (msr)
        {
            case X2Apic.MSR_X2APIC_LVTT:
                apic.Lvtt = data;
                return true;
            case X2Apic.MSR_X2APIC_TMICT:
                StartApicTimer(apic, (long)data);
                return true;
            case X2Apic.MSR_X2APIC_EOI:
                ApicSetEoi(apic);
                return true;
            case X2Apic.MSR_X2APIC_ICR:
                ApicSendIpi(vcpu.Kvm, (int)(data >> 32), (byte)data);
                return true;
            default:
                return false;
        }
    }

    /// <summary>start_apic_timer(): arms the host hrtimer; a count of zero stops it.</summary>
    [Port("arch/x86/kvm/lapic.c", "start_apic_timer")]
    private void StartApicTimer(KvmLapic apic, long count)
    {
        EventLoop.Cancel(apic.Timer!);
        apic.PeriodNs = count;
        if (count > 0)
        {
            Loop.ArmAfter(apic.Timer!, count);
        }
    }

    /// <summary>
    /// kvm_timer_fn() (arch/x86/kvm/timer.c): the host hrtimer expired. Counts one pending tick
    /// and kicks the vCPU; a vCPU that cannot run now gets every missed tick injected later.
    /// </summary>
    [Port("arch/x86/kvm/timer.c", "kvm_timer_fn")]
    private void KvmTimerFn(KvmLapic apic)
    {
        apic.Pending++;
        KvmVcpuKick(apic.Vcpu);
        if ((apic.Lvtt & X2Apic.APIC_LVT_TIMER_PERIODIC) != 0 && apic.PeriodNs > 0)
        {
            Loop.ArmAfter(apic.Timer!, apic.PeriodNs);
        }
    }

    /// <summary>kvm_inject_apic_timer_irqs(): moves one pending tick into the IRR unless the last one is still there.</summary>
    [Port("arch/x86/kvm/lapic.c", "kvm_inject_apic_timer_irqs")]
    private static void KvmInjectApicTimerIrqs(KvmVcpu vcpu)
    {
        var apic = vcpu.Arch.Apic;
        int vector = (int)(apic.Lvtt & 0xff);
        if (apic.Pending > 0 && !apic.Irr[vector])
        {
            apic.Irr[vector] = true;
            apic.Pending--;
            apic.TimerInjected++;
        }
    }

    /// <summary>apic_find_highest_irr() against the processor priority (the highest in-service vector's class).</summary>
    [Port("arch/x86/kvm/lapic.c", "kvm_apic_has_interrupt")]
    public static int KvmApicHasInterrupt(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        var apic = vcpu.Arch.Apic;
        int irr = apic.Irr.Highest();
        if (irr < 0)
        {
            return -1;
        }
        int isr = apic.Isr.Highest();
        return isr >= 0 && (irr >> 4) <= (isr >> 4) ? -1 : irr;
    }

    /// <summary>kvm_get_apic_interrupt(): acknowledges the highest deliverable vector (IRR → ISR).</summary>
    [Port("arch/x86/kvm/lapic.c", "kvm_get_apic_interrupt")]
    private static int KvmGetApicInterrupt(KvmVcpu vcpu)
    {
        int vector = KvmApicHasInterrupt(vcpu);
        if (vector >= 0)
        {
            vcpu.Arch.Apic.Irr[vector] = false;
            vcpu.Arch.Apic.Isr[vector] = true;
        }
        return vector;
    }

    /// <summary>apic_set_eoi(): retires the highest in-service vector; if that unmasks a pending one, the vCPU exits to take it.</summary>
    [Port("arch/x86/kvm/lapic.c", "apic_set_eoi")]
    private void ApicSetEoi(KvmLapic apic)
    {
        int isr = apic.Isr.Highest();
        if (isr >= 0)
        {
            apic.Isr[isr] = false;
        }
        var vcpu = apic.Vcpu;
        if (apic.Pending > 0 || KvmApicHasInterrupt(vcpu) >= 0)
        {
            KvmVcpuKick(vcpu);
        }
    }

    /// <summary>apic_send_ipi() → __apic_accept_irq(): sets the vector in the destination's IRR and kicks it.</summary>
    [Port("arch/x86/kvm/lapic.c", "apic_send_ipi")]
    private void ApicSendIpi(Kvm kvm, int destination, byte vector)
    {
        if (destination < 0 || destination >= kvm.Vcpus.Count)
        {
            return;
        }
        var target = kvm.Vcpus[destination];
        target.Arch.Apic.Irr[vector] = true;
        KvmVcpuKick(target);
    }
}
