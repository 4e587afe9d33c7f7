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

    /// <summary>memslot_version (patch 7): bumped by every committed slot change, so cached translations know when to refresh.</summary>
    public long MemslotVersion { get; set; }

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

    /// <summary>kvm_vcpu_block()'s wake condition, made once per vCPU rather than at every block (the port's, not Linux's: C's wait_event is a macro).</summary>
    internal Func<bool>? BlockCondition { get; set; }

    /// <summary>What vcpu_enter_guest() does after each VM entry (the port's: the frame that waits for the exit, made once).</summary>
    internal Kernel.EnterGuestFrame EnterGuest { get; set; } = null!;

    /// <summary>KVM_REQ_* bits.</summary>
    public long Requests { get; set; }

    public KvmVcpuArch Arch { get; } = new();

    /// <summary>Set by the VMM to make KVM_RUN return (a signal to the vCPU thread).</summary>
    public bool StopRequested { get; set; }

    /// <summary>Protected by async_pf_lock (patch 8): work items from setup until the guest has been told the page is ready.</summary>
    public List<KvmAsyncPf> AsyncPfQueue { get; } = [];

    /// <summary>Protected by async_pf_lock (patch 8): completed items not yet presented to the guest.</summary>
    public List<KvmAsyncPf> AsyncPfDone { get; } = [];

    /// <summary>async_pf.queued (patch 8): items counted against the per-vCPU cap.</summary>
    public int AsyncPfQueued { get; set; }

    /// <summary>The per-vCPU async_pf_lock (patch 8).</summary>
    public Spinlock? AsyncPfLock { get; set; }

    public override string ToString() => $"vcpu{VcpuId}";
}

/// <summary>include/linux/kvm_host.h: struct kvm_async_pf (patch 8), one outstanding async page fault.</summary>
public sealed class KvmAsyncPf(KvmVcpu vcpu)
{
    public KvmVcpu Vcpu { get; } = vcpu;

    /// <summary>The faulting address as the guest gave it (a gpa under TDP, a gva under shadow paging).</summary>
    public ulong Gva { get; init; }

    public ulong Gfn { get; init; }

    /// <summary>The VMM's hva of the page.</summary>
    public ulong Addr { get; init; }

    /// <summary>struct kvm_arch_async_pf: the token, and the guest CR3 for the shadow-paging prefault.</summary>
    public uint Token { get; init; }

    public ulong Cr3 { get; init; }

    /// <summary>A page-ready for every waiter of the vCPU (token ~0), with no page behind it.</summary>
    public bool WakeupAll { get; init; }

    /// <summary>The worker brought the page in (page != NULL in 2.6.38).</summary>
    public bool Done { get; set; }

    /// <summary>The page's frame, once the worker got it.</summary>
    public ulong Pfn { get; set; }

    /// <summary>kvm_clear_async_pf_completion_queue() dropped the item while its worker ran: the worker frees it.</summary>
    public bool Cancelled { get; set; }

    /// <summary>The halt variant: the vCPU halts instead of the guest being told.</summary>
    public bool Halt { get; init; }

    /// <summary>The not-present reached the guest, so a page-ready may follow (5.8's notpresent_injected).</summary>
    public bool NotPresentInjected { get; set; }

    /// <summary>Virtual time of the not-present, for latency figures.</summary>
    public long CreatedNs { get; init; }
}

/// <summary>include/linux/kvm_types.h: struct gfn_to_hva_cache (patch 7, in the shape seeds/004 asks for).</summary>
public sealed class GfnToHvaCache
{
    public ulong Gpa { get; set; }

    public ulong Hva { get; set; }

    /// <summary>The memslot version the hva was resolved under.</summary>
    public long MemslotVersion { get; set; } = -1;
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
