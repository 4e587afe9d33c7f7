using Hw;

namespace Linux;

// arch/x86/kvm/vmx.c (patch 0): VMX entry, exit handling and event injection. Unlike Linux,
// the kvm_x86_ops indirection is replaced by direct calls (there is no SVM here).
public sealed partial class Kernel
{
    /// <summary>vmx_vcpu_run(): enters the guest after the thread's pending host work, and returns at the next exit.</summary>
    /// <remarks>
    /// Not an async method: the entry is its last step, so the task it returns is the CPU's own,
    /// and a vCPU's entry costs no frame of its own. The caller, vcpu_enter_guest, does what
    /// follows the exit (as Linux's does: <c>++vcpu->stat.exits</c>).
    /// </remarks>
    [Port("arch/x86/kvm/vmx.c", "vmx_vcpu_run")]
    private SimTask<VmExit> VmxVcpuRun(KvmVcpu vcpu, EventInjection? injection)
    {
        MightSleep();
        long hostNs = vcpu.Thread.HostWorkNs;
        KvmTrace.Log.kvm_entry(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, injection?.Vector ?? -1, hostNs, Name);
        vcpu.Thread.HostWorkNs = 0;
        return vcpu.Cpu.Enter(hostNs, injection);
    }

    /// <summary>vmx_complete_interrupts(): an event whose delivery the exit interrupted is queued again.</summary>
    [Port("arch/x86/kvm/vmx.c", "vmx_complete_interrupts")]
    private static void VmxCompleteInterrupts(KvmVcpu vcpu, in VmExit exit)
    {
        if (exit.IdtVectoring is not { } evt)
        {
            return;
        }
        if (evt.IsException)
        {
            vcpu.Arch.Exception = new KvmQueuedException
            {
                Pending = true, Nr = evt.Vector, HasErrorCode = evt.HasErrorCode, ErrorCode = evt.ErrorCode, Reinject = true, Address = evt.Cr2,
            };
        }
        else
        {
            vcpu.Arch.Interrupt = new KvmQueuedInterrupt { Pending = true, Nr = evt.Vector };
        }
    }

    /// <summary>vmx_handle_exit(): dispatches on the exit reason. Returns 1 to re-enter, 0 to return to userspace, &lt;0 on error.</summary>
    /// <remarks>Not an async method: a handler that sleeps is its last step, so it returns the handler's task.</remarks>
    [Port("arch/x86/kvm/vmx.c", "vmx_handle_exit")]
    private SimTask<int> VmxHandleExit(KvmVcpu vcpu, VmExit exit)
    {
        MightSleep();
        KvmTrace.Log.kvm_exit(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, exit.Reason, (long)(exit.Reason == ExitReason.EptViolation ? exit.GuestPhysical : exit.GuestLinear), exit.Cpl, Name);
        switch (exit.Reason)
        {
            case ExitReason.EptViolation:
                return HandleEptViolation(vcpu, exit);
            case ExitReason.ExceptionNmi:
                return HandleException(vcpu, exit);
            case ExitReason.Hlt:
                return HandleHalt(vcpu);
            case ExitReason.InterruptWindow:
                vcpu.Cpu.InterruptWindowRequested = false;
                return 1;
            case ExitReason.ExternalInterrupt:
                return 1;
            case ExitReason.TripleFault:
                return 0;
            default:
                return -Errno.EINVAL;
        }
    }

    /// <summary>handle_ept_violation().</summary>
    [Port("arch/x86/kvm/vmx.c", "handle_ept_violation")]
    private async SimTask<int> HandleEptViolation(KvmVcpu vcpu, VmExit exit)
    {
        MightSleep();
        KvmTrace.Log.kvm_page_fault(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)exit.GuestPhysical, (int)exit.ErrorCode, Name);
        int r = await KvmMmuPageFault(vcpu, exit.GuestPhysical, exit.ErrorCode);
        KvmTrace.Log.kvm_page_fault_done(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)exit.GuestPhysical, r, Name);
        return r < 0 ? r : 1;
    }

    /// <summary>handle_exception(): a #PF intercepted under shadow paging.</summary>
    [Port("arch/x86/kvm/vmx.c", "handle_exception")]
    private async SimTask<int> HandleException(KvmVcpu vcpu, VmExit exit)
    {
        MightSleep();
        KvmTrace.Log.kvm_page_fault(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)exit.GuestLinear, (int)exit.ErrorCode, Name);
        int r = await KvmMmuPageFault(vcpu, exit.GuestLinear, exit.ErrorCode);
        KvmTrace.Log.kvm_page_fault_done(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)exit.GuestLinear, r, Name);
        return r < 0 ? r : 1;
    }

    /// <summary>handle_halt() → kvm_emulate_halt().</summary>
    [Port("arch/x86/kvm/vmx.c", "handle_halt")]
    private static int HandleHalt(KvmVcpu vcpu)
    {
        vcpu.Arch.MpState = KvmAbi.KVM_MP_STATE_HALTED;
        return 1;
    }

    /// <summary>vmx_interrupt_allowed(): RFLAGS.IF and no interrupt shadow.</summary>
    [Port("arch/x86/kvm/vmx.c", "vmx_interrupt_allowed")]
    private static bool VmxInterruptAllowed(KvmVcpu vcpu) => vcpu.Cpu.InterruptAllowed;

    /// <summary>enable_irq_window(): exit as soon as the guest can take an interrupt.</summary>
    [Port("arch/x86/kvm/vmx.c", "enable_irq_window")]
    private static void EnableIrqWindow(KvmVcpu vcpu) => vcpu.Cpu.InterruptWindowRequested = true;

    /// <summary>vmx_get_cpl().</summary>
    [Port("arch/x86/kvm/vmx.c", "vmx_get_cpl")]
    public static int VmxGetCpl(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return vcpu.Cpu.Cpl;
    }
}
