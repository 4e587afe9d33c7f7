namespace Hw;

/// <summary>Why the CPU left guest mode (the basic exit reasons of the Intel SDM, vol. 3, appendix C, that matter here).</summary>
public enum ExitReason
{
    ExternalInterrupt = 1,
    TripleFault = 2,
    InterruptWindow = 7,
    Hlt = 12,
    /// <summary>Exception or NMI: a guest #PF intercepted under shadow paging.</summary>
    ExceptionNmi = 0,
    EptViolation = 48,
}

/// <summary>What the host reads after a VM exit (exit reason, qualification, guest-physical and linear address).</summary>
public readonly record struct VmExit(ExitReason Reason, ulong GuestPhysical = 0, ulong GuestLinear = 0, uint ErrorCode = 0, int Cpl = 0);

/// <summary>An event the host injects at the next VM entry (the VM-entry interruption-information field).</summary>
public readonly record struct EventInjection(byte Vector, bool IsException, uint ErrorCode = 0, bool HasErrorCode = false, ulong Cr2 = 0);

/// <summary>Page-fault error code bits (Intel SDM vol. 3, 4.7).</summary>
[Flags]
public enum PfErr : uint
{
    None = 0,
    Present = 1,
    Write = 2,
    User = 4,
}

/// <summary>x86 exception and interrupt vectors used here.</summary>
public static class Vectors
{
    public const byte PageFault = 14;
    public const byte DoubleFault = 8;
}

/// <summary>
/// The page-table root the CPU walks in guest mode, owned by the host's KVM MMU: with TDP (EPT)
/// it maps guest-physical to host-physical addresses; with shadow paging it maps guest-linear
/// addresses straight to host-physical ones.
/// </summary>
public interface ITranslationRoot
{
    /// <summary>True for EPT (input is a guest-physical address), false for a shadow table (guest-linear).</summary>
    bool TwoDimensional { get; }

    /// <summary>Looks up <paramref name="address"/>; false means a miss that exits to the host.</summary>
    bool TryTranslate(ulong address, bool write, out ulong hostPhysical);
}

/// <summary>
/// Exits that the model handles without leaving the guest's flow of time: MSR and CPUID accesses
/// and local APIC writes. The host's handler runs at once and its cost is charged to the vCPU
/// (see Documentation/sim-model.md, "inline exits"). None of these may sleep in Linux.
/// </summary>
public interface IInlineExitHandler
{
    /// <summary>WRMSR; false means #GP.</summary>
    bool WriteMsr(int vcpu, uint index, ulong value);

    /// <summary>RDMSR; false means #GP.</summary>
    bool ReadMsr(int vcpu, uint index, out ulong value);

    /// <summary>CPUID leaf <paramref name="leaf"/>, EAX only (the KVM leaves need no more).</summary>
    uint Cpuid(int vcpu, uint leaf);

    /// <summary>End of interrupt written to the local APIC.</summary>
    void ApicEoi(int vcpu);

    /// <summary>An IPI written to the interrupt command register.</summary>
    void ApicSendIpi(int vcpu, int destination, byte vector);
}

/// <summary>The guest kernel's gates: what the CPU calls when it delivers an event (the IDT).</summary>
public interface IInterruptDescriptorTable
{
    /// <summary>An external interrupt or IPI. Interrupt handlers cannot sleep.</summary>
    void DeliverInterrupt(X86Cpu cpu, byte vector);

    /// <summary>An exception (a #PF here); its handler may sleep, so it is awaited. CR2 holds the address.</summary>
    SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode);
}
