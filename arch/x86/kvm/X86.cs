using Hw;

namespace Linux;

/// <summary>The exits a vCPU's VMX CPU hands to KVM without leaving the guest's flow of time (MSR, CPUID).</summary>
public sealed class KvmInlineExits(Kernel kernel, KvmVcpu vcpu) : IInlineExitHandler
{
    public bool WriteMsr(int cpuId, uint index, ulong value) => kernel.KvmSetMsr(vcpu, index, value) == 0;

    public bool ReadMsr(int cpuId, uint index, out ulong value) => kernel.KvmGetMsr(vcpu, index, out value) == 0;

    public uint Cpuid(int cpuId, uint leaf) => kernel.KvmEmulateCpuid(vcpu, leaf);
}

// arch/x86/kvm/x86.c (patch 0): the vCPU run loop, event injection, MSRs and CPUID.
public sealed partial class Kernel
{
    /// <summary>kvm_arch_vcpu_init(): local APIC and MMU.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_vcpu_init")]
    private void KvmArchVcpuInit(KvmVcpu vcpu)
    {
        KvmCreateLapic(vcpu);
        KvmMmuSetup(vcpu);
        vcpu.Cpu.InlineExits = new KvmInlineExits(this, vcpu);
    }

    /// <summary>
    /// KVM_RUN → kvm_arch_vcpu_ioctl_run() → __vcpu_run(): enters the guest again and again,
    /// blocking while the vCPU is halted, until something must go to userspace.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "__vcpu_run")]
    public async SimTask<int> __VcpuRun(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        MightSleep();
        int r = 1;
        while (r > 0 && !vcpu.StopRequested)
        {
            if (vcpu.Arch.MpState == KvmAbi.KVM_MP_STATE_RUNNABLE)
            {
                r = await VcpuEnterGuest(vcpu);
            }
            else
            {
                await KvmVcpuBlock(vcpu);
                if (KvmArchVcpuRunnable(vcpu))
                {
                    vcpu.Arch.MpState = KvmAbi.KVM_MP_STATE_RUNNABLE;
                }
            }
        }
        return r;
    }

    /// <summary>vcpu_enter_guest(): injects what is pending, runs the guest until it exits, handles the exit.</summary>
    [Port("arch/x86/kvm/x86.c", "vcpu_enter_guest")]
    private async SimTask<int> VcpuEnterGuest(KvmVcpu vcpu)
    {
        KvmInjectApicTimerIrqs(vcpu);
        var injection = InjectPendingEvent(vcpu);
        var exit = await VmxVcpuRun(vcpu, injection);
        VmxCompleteInterrupts(vcpu, exit);
        // Whatever time passes inside the handler is the vCPU thread asleep (its non-sleeping work
        // is paid before the next entry), so it counts as stalled.
        vcpu.Cpu.Residency.Mark(VcpuState.Stall);
        int r = await VmxHandleExit(vcpu, exit);
        Current = vcpu.Thread;
        vcpu.Cpu.Residency.Mark(VcpuState.Host);
        return r;
    }

    /// <summary>
    /// inject_pending_event(): an exception first, then a re-injected interrupt, then the
    /// local APIC's highest deliverable interrupt if the guest can take it (else ask for an
    /// interrupt window).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "inject_pending_event")]
    private static EventInjection? InjectPendingEvent(KvmVcpu vcpu)
    {
        ref var exception = ref vcpu.Arch.Exception;
        if (exception.Pending)
        {
            exception.Pending = false;
            return new EventInjection(exception.Nr, IsException: true, exception.ErrorCode, exception.HasErrorCode, exception.Address);
        }
        ref var interrupt = ref vcpu.Arch.Interrupt;
        if (interrupt.Pending)
        {
            interrupt.Pending = false;
            return new EventInjection(interrupt.Nr, IsException: false);
        }
        if (KvmCpuHasInterrupt(vcpu))
        {
            if (VmxInterruptAllowed(vcpu))
            {
                return new EventInjection((byte)KvmGetApicInterrupt(vcpu), IsException: false);
            }
            EnableIrqWindow(vcpu);
        }
        return null;
    }

    /// <summary>kvm_cpu_has_interrupt().</summary>
    [Port("arch/x86/kvm/irq.c", "kvm_cpu_has_interrupt")]
    private static bool KvmCpuHasInterrupt(KvmVcpu vcpu) => KvmApicHasInterrupt(vcpu) >= 0;

    /// <summary>kvm_inject_page_fault(): queues a #PF for the guest.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_inject_page_fault")]
    public static void KvmInjectPageFault(KvmVcpu vcpu, ulong addr, uint errorCode)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.Arch.Exception = new KvmQueuedException
        {
            Pending = true, Nr = Vectors.PageFault, HasErrorCode = true, ErrorCode = errorCode, Address = addr,
        };
    }

    /// <summary>kvm_arch_vcpu_runnable(): a halted vCPU wakes for an interrupt.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_vcpu_runnable")]
    public static bool KvmArchVcpuRunnable(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return vcpu.Arch.MpState == KvmAbi.KVM_MP_STATE_RUNNABLE
            || vcpu.Arch.Apic.Pending > 0
            || KvmCpuHasInterrupt(vcpu)
            || vcpu.Arch.Interrupt.Pending
            || vcpu.Arch.Exception.Pending;
    }

    /// <summary>kvm_vcpu_kick(): wakes a blocked vCPU thread, or makes a running vCPU exit.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_vcpu_kick")]
    public void KvmVcpuKick(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (vcpu.Wq.Active)
        {
            WakeUp(vcpu.Wq, nrExclusive: 0);
        }
        else
        {
            vcpu.Cpu.Kick();
        }
    }

    /// <summary>kvm_set_msr_common() (and the x2APIC range of kvm_x2apic_msr_write). Non-zero means #GP.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_set_msr_common")]
    public int KvmSetMsr(KvmVcpu vcpu, uint msr, ulong data)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (msr is >= 0x800 and <= 0x8ff)
        {
            return ApicRegWrite(vcpu, msr, data) ? 0 : 1;
        }
        return msr switch
        {
            KvmPara.MSR_KVM_WALL_CLOCK or KvmPara.MSR_KVM_SYSTEM_TIME => 0,
            _ => 1,
        };
    }

    /// <summary>kvm_get_msr_common(). Non-zero means #GP.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_get_msr_common")]
    public int KvmGetMsr(KvmVcpu vcpu, uint msr, out ulong data)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        data = 0;
        return msr is KvmPara.MSR_KVM_WALL_CLOCK or KvmPara.MSR_KVM_SYSTEM_TIME ? 0 : 1;
    }

    /// <summary>Paravirtual features this host offers in CPUID 0x40000001 (do_cpuid_ent).</summary>
    public uint KvmSupportedFeatures { get; set; } = 1u << KvmPara.KVM_FEATURE_CLOCKSOURCE | 1u << KvmPara.KVM_FEATURE_NOP_IO_DELAY;

    /// <summary>kvm_emulate_cpuid(): EAX of the KVM leaves.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_emulate_cpuid")]
    public uint KvmEmulateCpuid(KvmVcpu vcpu, uint leaf) => leaf switch
    {
        KvmPara.KVM_CPUID_SIGNATURE => KvmPara.KVM_CPUID_FEATURES,
        KvmPara.KVM_CPUID_FEATURES => KvmSupportedFeatures,
        _ => 0,
    };
}
