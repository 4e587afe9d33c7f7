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
/// <remarks><see cref="IdtVectoring"/> is the event whose delivery caused the exit; the host must re-inject it.</remarks>
public readonly record struct VmExit(ExitReason Reason, ulong GuestPhysical = 0, ulong GuestLinear = 0, uint ErrorCode = 0, int Cpl = 0, EventInjection? IdtVectoring = null);

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

    /// <summary>Looks up a guest-physical address for guest kernel software accesses (with a shadow table: the guest's direct map).</summary>
    bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical);
}

/// <summary>x2APIC MSRs the guest programs its local APIC through (Intel SDM vol. 3, 10.12.1.2).</summary>
public static class X2Apic
{
    public const uint MSR_X2APIC_EOI = 0x80b;
    public const uint MSR_X2APIC_ICR = 0x830;
    public const uint MSR_X2APIC_LVTT = 0x832;
    public const uint MSR_X2APIC_TMICT = 0x838;
    /// <summary>LVT timer mode bit 17: periodic.</summary>
    public const ulong APIC_LVT_TIMER_PERIODIC = 1UL << 17;
}

/// <summary>
/// Exits that the model handles without leaving the guest's flow of time: MSR and CPUID accesses
/// and local APIC writes. The host's handler runs at once and its cost is charged to the vCPU
/// (see Documentation/sim-model.md, "inline exits"). None of these may sleep in Linux.
/// </summary>
public interface IInlineExitHandler
{
    /// <summary>WRMSR; false means #GP.</summary>
    bool WriteMsr(int cpuId, uint index, ulong value);

    /// <summary>RDMSR; false means #GP.</summary>
    bool ReadMsr(int cpuId, uint index, out ulong value);

    /// <summary>CPUID leaf <paramref name="leaf"/>, EAX only (the KVM leaves need no more).</summary>
    uint Cpuid(int cpuId, uint leaf);
}

/// <summary>The guest kernel's gates: what the CPU calls when it delivers an event (the IDT).</summary>
public interface IInterruptDescriptorTable
{
    /// <summary>An external interrupt or IPI. Interrupt handlers cannot sleep.</summary>
    void DeliverInterrupt(X86Cpu cpu, byte vector);

    /// <summary>
    /// An exception (a #PF here); its handler may sleep, so it is awaited. CR2 holds the address.
    /// <paramref name="savedCpl"/> is the privilege level of the code the exception interrupted, as
    /// the CPU saves it (CS) in the exception frame: what the handler's return path tests
    /// (<c>user_mode(regs)</c>), since the context itself is at CPL 0 while the handler runs.
    /// </summary>
    SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode, int savedCpl);

    /// <summary>The guest-physical pages that delivering an event on <paramref name="ctx"/> touches
    /// (IDT, handler text, per-CPU data, the kernel stack); returns how many it wrote.</summary>
    int DeliveryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages);
}
