namespace Linux;

/// <summary>
/// arch/x86/include/asm/kvm.h (patch 0): struct kvm_vcpu_events, what KVM_GET_VCPU_EVENTS and
/// KVM_SET_VCPU_EVENTS carry between the kernel and the VMM, which saves it with the vCPU's
/// registers and MSRs (migration). The port has no NMI and no SIPI, so it keeps the exception and
/// interrupt parts. Unlike the struct of 2010, a pending #PF's CR2 travels with the exception as
/// its payload, the field Linux 4.20 added (KVM_CAP_EXCEPTION_PAYLOAD): in 2010 it travelled in
/// KVM_GET_SREGS's cr2, and the port keeps a queued #PF's CR2 in the queued exception itself.
/// </summary>
public struct KvmVcpuEvents
{
    /// <summary>exception.injected: an exception is queued (or was being delivered) and must be injected.</summary>
    public bool ExceptionInjected;
    public byte ExceptionNr;
    public bool ExceptionHasErrorCode;
    public uint ExceptionErrorCode;
    /// <summary>exception_has_payload / exception_payload: the CR2 of a #PF.</summary>
    public bool ExceptionHasPayload;
    public ulong ExceptionPayload;

    /// <summary>interrupt.injected: an interrupt was being delivered and must be injected again.</summary>
    public bool InterruptInjected;
    public byte InterruptNr;
}
