using Hw;

namespace Linux;

// virt/kvm/kvm_main.c (patch 0): VMs, vCPUs, memory slots, gfn → pfn, the MMU notifier and
// kvm_vcpu_block. Lock order: kvm->slots_lock, then kvm->mmu_lock (a spinlock).
public sealed partial class Kernel
{
    private int _nextVmId;

    /// <summary>The VMs of this host.</summary>
    public List<Kvm> VmList { get; } = [];

    /// <summary>KVM_CREATE_VM → kvm_create_vm(): a VM of the calling process, with KVM's MMU notifier on its mm.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_create_vm")]
    public Kvm KvmCreateVm(MmStruct mm, bool tdp)
    {
        var kvm = new Kvm(_nextVmId++, mm);
        kvm.Arch.TdpEnabled = tdp;
        MmuNotifierRegister(new KvmMmuNotifier(this, kvm), mm);
        VmList.Add(kvm);
        return kvm;
    }

    /// <summary>KVM_CREATE_VCPU → kvm_vm_ioctl_create_vcpu() → kvm_vcpu_init() and kvm_arch_vcpu_init().</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_vcpu_init")]
    public KvmVcpu KvmVcpuInit(Kvm kvm, int id, X86Cpu cpu, TaskStruct thread)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        ArgumentNullException.ThrowIfNull(cpu);
        var vcpu = new KvmVcpu(kvm, id, cpu) { Thread = thread };
        KvmArchVcpuInit(vcpu);
        kvm.Vcpus.Add(vcpu);
        return vcpu;
    }

    /// <summary>KVM_SET_USER_MEMORY_REGION → __kvm_set_memory_region(): adds a slot.</summary>
    [Port("virt/kvm/kvm_main.c", "__kvm_set_memory_region")]
    public int __KvmSetMemoryRegion(Kvm kvm, ulong guestPhysAddr, ulong memorySize, ulong userspaceAddr)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        if ((guestPhysAddr | memorySize | userspaceAddr) % Pgtable.PAGE_SIZE != 0)
        {
            return -Errno.EINVAL;
        }
        ulong baseGfn = guestPhysAddr >> Pgtable.PAGE_SHIFT;
        ulong npages = memorySize >> Pgtable.PAGE_SHIFT;
        foreach (var s in kvm.Memslots)
        {
            if (baseGfn < s.BaseGfn + s.Npages && s.BaseGfn < baseGfn + npages)
            {
                return -Errno.EEXIST;
            }
        }
        kvm.Memslots.Add(new KvmMemorySlot(baseGfn, npages, userspaceAddr));
        kvm.MemslotVersion++;
        return 0;
    }

    /// <summary>Removes the slot that starts at <paramref name="guestPhysAddr"/> (a zero-sized KVM_SET_USER_MEMORY_REGION).</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_delete_memory_region", Patches = [0, 7])]
    public int KvmDeleteMemoryRegion(Kvm kvm, ulong guestPhysAddr)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        int removed = kvm.Memslots.RemoveAll(s => s.BaseGfn == guestPhysAddr >> Pgtable.PAGE_SHIFT);
        if (removed == 0)
        {
            return -Errno.EINVAL;
        }
        kvm.MemslotVersion++;
        KvmArchFlushShadow(kvm);
        return 0;
    }

    /// <summary>kvm_gfn_to_hva_cache_init() (patch 7): resolves <paramref name="gpa"/> once and remembers the memslot version.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_gfn_to_hva_cache_init", Patches = [7])]
    public static int KvmGfnToHvaCacheInit(Kvm kvm, GfnToHvaCache ghc, ulong gpa)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        ArgumentNullException.ThrowIfNull(ghc);
        ghc.Gpa = gpa;
        ghc.MemslotVersion = kvm.MemslotVersion;
        ulong hva = GfnToHva(kvm, gpa >> Pgtable.PAGE_SHIFT);
        ghc.Hva = hva == BadHva ? BadHva : hva + (gpa & (Pgtable.PAGE_SIZE - 1));
        return hva == BadHva ? -Errno.EFAULT : 0;
    }

    /// <summary>Translations the gfn→hva cache had to redo because the memslots changed (patch 7).</summary>
    public long HvaCacheRefreshes { get; private set; }

    /// <summary>
    /// kvm_write_guest_cached() (patch 7) of a u32: re-resolves the hva only when the memslot
    /// version moved, then writes through the VMM's mapping (which faults the page in if needed).
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "kvm_write_guest_cached", Patches = [7])]
    public async SimTask<int> KvmWriteGuestCached(Kvm kvm, GfnToHvaCache ghc, uint value)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        ArgumentNullException.ThrowIfNull(ghc);
        MightSleep();
        if (ghc.MemslotVersion != kvm.MemslotVersion)
        {
            HvaCacheRefreshes++;
            KvmGfnToHvaCacheInit(kvm, ghc, ghc.Gpa);
        }
        if (ghc.Hva == BadHva)
        {
            return -Errno.EFAULT;
        }
        var page = GetUserPagesFast(kvm.Mm, ghc.Hva, write: true) ?? await GetUserPages(Current, kvm.Mm, ghc.Hva, write: true);
        if (page is null)
        {
            return -Errno.EFAULT;
        }
        Ram!.WriteU32((page.Pfn << Pgtable.PAGE_SHIFT) | (ghc.Hva & (Pgtable.PAGE_SIZE - 1)), value);
        page.Set(PageFlags.PG_dirty);
        return 0;
    }

    /// <summary>
    /// gfn_to_pfn_async() → hva_to_pfn(async) (patch 8): the page if it can be had without I/O
    /// (present, or a swap-cache hit), else <c>Async</c> = true and no I/O started. Never sleeps.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "gfn_to_pfn_async", Patches = [8])]
    public (ulong Pfn, bool Async) GfnToPfnAsync(Kvm kvm, ulong gfn)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        ulong addr = GfnToHva(kvm, gfn);
        if (addr == BadHva)
        {
            return (BadPfn, false);
        }
        var page = __GetUserPagesFast(kvm.Mm, addr, write: true) ?? GetUserPagesNoio(Current, kvm.Mm, addr, write: true);
        if (page is null)
        {
            return (BadPfn, true);
        }
        KvmSetPfnAccessed(page.Pfn);
        return (page.Pfn, false);
    }

    /// <summary>gfn_to_memslot().</summary>
    [Port("virt/kvm/kvm_main.c", "gfn_to_memslot")]
    public static KvmMemorySlot? GfnToMemslot(Kvm kvm, ulong gfn)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        foreach (var s in kvm.Memslots)
        {
            if (gfn >= s.BaseGfn && gfn < s.BaseGfn + s.Npages)
            {
                return s;
            }
        }
        return null;
    }

    /// <summary>The error hva of gfn_to_hva (bad_hva()).</summary>
    public const ulong BadHva = 0xFFFF_FFFF_FFFF_F000UL;

    /// <summary>gfn_to_hva().</summary>
    [Port("virt/kvm/kvm_main.c", "gfn_to_hva")]
    public static ulong GfnToHva(Kvm kvm, ulong gfn)
    {
        var slot = GfnToMemslot(kvm, gfn);
        return slot is null ? BadHva : slot.UserspaceAddr + ((gfn - slot.BaseGfn) << Pgtable.PAGE_SHIFT);
    }

    /// <summary>The inverse of gfn_to_hva for the MMU notifier (kvm_handle_hva's slot walk).</summary>
    public static ulong? HvaToGfn(Kvm kvm, ulong hva)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        foreach (var s in kvm.Memslots)
        {
            ulong size = s.Npages << Pgtable.PAGE_SHIFT;
            if (hva >= s.UserspaceAddr && hva < s.UserspaceAddr + size)
            {
                return s.BaseGfn + ((hva - s.UserspaceAddr) >> Pgtable.PAGE_SHIFT);
            }
        }
        return null;
    }

    /// <summary>The error pfn (bad_pfn).</summary>
    public const ulong BadPfn = ulong.MaxValue;

    /// <summary>
    /// hva_to_pfn(): get_user_pages_fast, and when the page is not mapped, get_user_pages on the
    /// calling thread, which sleeps for a swap-in.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "hva_to_pfn")]
    public async SimTask<ulong> HvaToPfn(Kvm kvm, ulong addr)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        var page = GetUserPagesFast(kvm.Mm, addr, write: true);
        if (page is null)
        {
            MightSleep();
            page = await GetUserPages(Current, kvm.Mm, addr, write: true);
        }
        if (page is null)
        {
            return BadPfn;
        }
        KvmSetPfnAccessed(page.Pfn);
        return page.Pfn;
    }

    /// <summary>gfn_to_pfn(). May sleep.</summary>
    [Port("virt/kvm/kvm_main.c", "gfn_to_pfn")]
    public SimTask<ulong> GfnToPfn(Kvm kvm, ulong gfn)
    {
        ulong addr = GfnToHva(kvm, gfn);
        return addr == BadHva ? BadPfn : HvaToPfn(kvm, addr);
    }

    /// <summary>kvm_set_pfn_accessed(): the reference reclaim sees.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_set_pfn_accessed")]
    public void KvmSetPfnAccessed(ulong pfn)
    {
        if (PfnToPage(pfn) is { } page)
        {
            MarkPageAccessed(page);
        }
    }

    /// <summary>kvm_set_pfn_dirty().</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_set_pfn_dirty")]
    public void KvmSetPfnDirty(ulong pfn) => PfnToPage(pfn)?.Set(PageFlags.PG_dirty);

    /// <summary>kvm_flush_remote_tlbs(): every vCPU's TLB.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_flush_remote_tlbs")]
    public static void KvmFlushRemoteTlbs(Kvm kvm)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        foreach (var vcpu in kvm.Vcpus)
        {
            vcpu.Cpu.FlushTlb();
        }
    }

    /// <summary>kvm_vcpu_block(): sleeps while the vCPU has nothing to run (it halted).</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_vcpu_block")]
    public async SimTask KvmVcpuBlock(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        MightSleep();
        vcpu.Cpu.Residency.Mark(VcpuState.Halt);
        KvmTrace.Log.kvm_vcpu_block(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, Name);
        await WaitEvent(vcpu.Wq, vcpu.BlockCondition ??= () => KvmArchVcpuRunnable(vcpu) || vcpu.StopRequested);
        KvmTrace.Log.kvm_vcpu_wakeup(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, Name);
        vcpu.Cpu.Residency.Mark(VcpuState.Host);
    }

    /// <summary>mmu_notifier_retry(): did an invalidation run since <paramref name="mmuSeq"/> was read?</summary>
    [Port("include/linux/kvm_host.h", "mmu_notifier_retry")]
    public static bool MmuNotifierRetry(KvmVcpu vcpu, long mmuSeq) =>
        vcpu.Kvm.MmuNotifierCount > 0 || vcpu.Kvm.MmuNotifierSeq != mmuSeq;
}

/// <summary>virt/kvm/kvm_main.c: kvm_mmu_notifier_ops, KVM's callbacks from the host's mm.</summary>
public sealed class KvmMmuNotifier(Kernel kernel, Kvm kvm) : IMmuNotifierOps
{
    [Port("virt/kvm/kvm_main.c", "kvm_mmu_notifier_invalidate_page")]
    public void InvalidatePage(MmStruct mm, ulong address)
    {
        kvm.MmuNotifierSeq++;
        if (kernel.KvmUnmapHva(kvm, address))
        {
            Kernel.KvmFlushRemoteTlbs(kvm);
        }
    }

    [Port("virt/kvm/kvm_main.c", "kvm_mmu_notifier_invalidate_range_start")]
    public void InvalidateRangeStart(MmStruct mm, ulong start, ulong end)
    {
        kvm.MmuNotifierCount++;
        bool flush = false;
        for (ulong a = start; a < end; a += Pgtable.PAGE_SIZE)
        {
            flush |= kernel.KvmUnmapHva(kvm, a);
        }
        if (flush)
        {
            Kernel.KvmFlushRemoteTlbs(kvm);
        }
    }

    [Port("virt/kvm/kvm_main.c", "kvm_mmu_notifier_invalidate_range_end")]
    public void InvalidateRangeEnd(MmStruct mm, ulong start, ulong end)
    {
        kvm.MmuNotifierSeq++;
        kvm.MmuNotifierCount--;
    }

    [Port("virt/kvm/kvm_main.c", "kvm_mmu_notifier_clear_flush_young")]
    public bool ClearFlushYoung(MmStruct mm, ulong address) => Kernel.KvmAgeHva(kvm, address);
}

/// <summary>include/asm-generic/errno-base.h.</summary>
public static class Errno
{
    public const int EFAULT = 14;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENOMEM = 12;
}
