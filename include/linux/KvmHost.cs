using Hw;

namespace Linux;

/// <summary>include/linux/kvm_host.h: struct kvm_memory_slot.</summary>
public sealed class KvmMemorySlot(ulong baseGfn, ulong npages, ulong userspaceAddr)
{
    public ulong BaseGfn { get; } = baseGfn;
    public ulong Npages { get; } = npages;
    public ulong UserspaceAddr { get; } = userspaceAddr;
}

/// <summary>include/linux/kvm_host.h: struct kvm, one VM.</summary>
public sealed class Kvm(int id, MmStruct mm)
{
    public int Id { get; } = id;

    /// <summary>The VMM's address space, whose anonymous memory backs guest RAM.</summary>
    public MmStruct Mm { get; } = mm;

    /// <summary>Protected by slots_lock: the memory slots.</summary>
    public List<KvmMemorySlot> Memslots { get; } = [];

    public List<KvmVcpu> Vcpus { get; } = [];

    /// <summary>Protected by mmu_lock: bumped by every MMU-notifier invalidation.</summary>
    public long MmuNotifierSeq { get; set; }

    /// <summary>Protected by mmu_lock: invalidations in progress.</summary>
    public int MmuNotifierCount { get; set; }

    public KvmArch Arch { get; } = new();
}

/// <summary>include/linux/kvm_host.h: struct kvm_vcpu.</summary>
public sealed class KvmVcpu(Kvm kvm, int vcpuId, X86Cpu cpu)
{
    public Kvm Kvm { get; } = kvm;

    public int VcpuId { get; } = vcpuId;

    /// <summary>The VMX CPU the vCPU runs on (the host's physical CPU in VMX root mode).</summary>
    public X86Cpu Cpu { get; } = cpu;

    /// <summary>The VMM thread that calls KVM_RUN for this vCPU.</summary>
    public TaskStruct Thread { get; set; } = null!;

    /// <summary>Where the vCPU thread sleeps while the vCPU is halted (kvm_vcpu_block).</summary>
    public WaitQueueHead Wq { get; } = new();

    /// <summary>KVM_REQ_* bits.</summary>
    public long Requests { get; set; }

    public KvmVcpuArch Arch { get; } = new();

    /// <summary>Set by the VMM to make KVM_RUN return (a signal to the vCPU thread).</summary>
    public bool StopRequested { get; set; }

    public override string ToString() => $"vcpu{VcpuId}";
}

/// <summary>include/linux/kvm_host.h: request bits.</summary>
public static class KvmRequests
{
    public const int KVM_REQ_TLB_FLUSH = 0;
    public const int KVM_REQ_MMU_RELOAD = 3;
    public const int KVM_REQ_TRIPLE_FAULT = 10;
}

/// <summary>include/linux/kvm.h: the userspace ABI the port needs.</summary>
public static class KvmAbi
{
    public const int KVM_EXIT_UNKNOWN = 0;
    public const int KVM_EXIT_INTR = 10;
    public const int KVM_EXIT_SHUTDOWN = 8;
    public const int KVM_MP_STATE_RUNNABLE = 0;
    public const int KVM_MP_STATE_HALTED = 3;
}
