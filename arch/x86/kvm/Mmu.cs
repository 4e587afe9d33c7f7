using Hw;

namespace Linux;

/// <summary>The EPT of a VM as the CPU walks it (the root_hpa of a TDP MMU).</summary>
public sealed class EptRoot(Kvm kvm) : ITranslationRoot
{
    public bool TwoDimensional => true;

    public bool TryTranslate(ulong address, bool write, out ulong hostPhysical) => TryTranslatePhysical(address, out hostPhysical);

    public bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical)
    {
        if (kvm.Arch.Ept.TryGetValue(gpa >> Pgtable.PAGE_SHIFT, out ulong spte))
        {
            hostPhysical = Spte.Pfn(spte) << Pgtable.PAGE_SHIFT;
            return true;
        }
        hostPhysical = 0;
        return false;
    }
}

/// <summary>A vCPU's shadow page tables as the CPU walks them: per guest CR3 for user addresses, shared for the guest kernel's direct map.</summary>
public sealed class ShadowRoot(Kvm kvm, X86Cpu cpu) : ITranslationRoot
{
    public bool TwoDimensional => false;

    public bool TryTranslate(ulong address, bool write, out ulong hostPhysical)
    {
        if (address >= cpu.DirectMapBase && cpu.DirectMapBase != 0)
        {
            return TryTranslatePhysical(address - cpu.DirectMapBase, out hostPhysical);
        }
        if (kvm.Arch.Shadow.TryGetValue((cpu.Cr3, address >> Pgtable.PAGE_SHIFT), out ulong spte))
        {
            hostPhysical = Spte.Pfn(spte) << Pgtable.PAGE_SHIFT;
            return true;
        }
        hostPhysical = 0;
        return false;
    }

    public bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical)
    {
        if (kvm.Arch.ShadowDirect.TryGetValue(gpa >> Pgtable.PAGE_SHIFT, out ulong spte))
        {
            hostPhysical = Spte.Pfn(spte) << Pgtable.PAGE_SHIFT;
            return true;
        }
        hostPhysical = 0;
        return false;
    }
}

// arch/x86/kvm/mmu.c (patch 0): the page-fault handlers and the notifier side of the MMU.
public sealed partial class Kernel
{
    /// <summary>kvm_mmu_page_fault(): the vCPU's MMU handles a fault at <paramref name="cr2"/> (a gpa under TDP, a gva under shadow paging).</summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_mmu_page_fault")]
    public SimTask<int> KvmMmuPageFault(KvmVcpu vcpu, ulong cr2, uint errorCode)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return vcpu.Kvm.Arch.TdpEnabled ? TdpPageFault(vcpu, cr2, errorCode) : Paging64PageFault(vcpu, cr2, errorCode);
    }

    /// <summary>tdp_page_fault(): maps the faulting gfn in the EPT, getting the page from the host (sleeping if it is swapped out).</summary>
    [Port("arch/x86/kvm/mmu.c", "tdp_page_fault")]
    private async SimTask<int> TdpPageFault(KvmVcpu vcpu, ulong gpa, uint errorCode)
    {
        ulong gfn = gpa >> Pgtable.PAGE_SHIFT;
        bool write = (errorCode & (uint)PfErr.Write) != 0;
        long mmuSeq = vcpu.Kvm.MmuNotifierSeq;
        ulong pfn = await GfnToPfnAccounted(vcpu, gfn);
        if (pfn == BadPfn)
        {
            return -Errno.EFAULT;
        }
        Current.HostWorkNs += Costs.HostFaultNs;
        if (MmuNotifierRetry(vcpu, mmuSeq))
        {
            return 0; // the page moved while we slept: let the guest fault again
        }
        __DirectMap(vcpu, gfn, pfn, write);
        return 0;
    }

    /// <summary>gfn_to_pfn on the vCPU thread, telling the CPU when the access needed swap I/O (the task's maj_flt moved).</summary>
    private async SimTask<ulong> GfnToPfnAccounted(KvmVcpu vcpu, ulong gfn)
    {
        long majBefore = Current.MajFlt;
        ulong pfn = await GfnToPfn(vcpu.Kvm, gfn);
        if (vcpu.Thread.MajFlt != majBefore)
        {
            vcpu.Cpu.AccountMajorFault();
        }
        return pfn;
    }

    /// <summary>__direct_map(): installs the EPT entry (writable: guest RAM is private anonymous memory).</summary>
    [Port("arch/x86/kvm/mmu.c", "__direct_map")]
    private void __DirectMap(KvmVcpu vcpu, ulong gfn, ulong pfn, bool write)
    {
        vcpu.Kvm.Arch.Ept[gfn] = Spte.Make(pfn, writable: true);
        vcpu.Kvm.Arch.SptesInstalled++;
        if (write)
        {
            KvmSetPfnDirty(pfn);
        }
    }

    /// <summary>
    /// kvm_unmap_hva() → kvm_unmap_rmapp(): drops every spte of the page at <paramref name="hva"/>,
    /// moving a writable spte's implied dirtiness to the page. True if something was zapped.
    /// </summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_unmap_hva")]
    public bool KvmUnmapHva(Kvm kvm, ulong hva)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        if (HvaToGfn(kvm, hva) is not { } gfn)
        {
            return false;
        }
        bool zapped = false;
        if (kvm.Arch.Ept.Remove(gfn, out ulong spte))
        {
            ZapSpte(kvm, spte);
            zapped = true;
        }
        if (kvm.Arch.ShadowDirect.Remove(gfn, out spte))
        {
            ZapSpte(kvm, spte);
            zapped = true;
        }
        if (kvm.Arch.ShadowRmap.Remove(gfn, out var keys))
        {
            foreach (var key in keys)
            {
                if (kvm.Arch.Shadow.Remove(key, out spte))
                {
                    ZapSpte(kvm, spte);
                    zapped = true;
                }
            }
        }
        return zapped;
    }

    /// <summary>rmap_remove(): a writable spte marks the page dirty (2010's EPT had no dirty bit).</summary>
    [Port("arch/x86/kvm/mmu.c", "rmap_remove")]
    private void ZapSpte(Kvm kvm, ulong spte)
    {
        kvm.Arch.SptesZapped++;
        if (Spte.Writable(spte))
        {
            KvmSetPfnDirty(Spte.Pfn(spte));
        }
    }

    /// <summary>
    /// kvm_age_hva() → kvm_age_rmapp(): was the page accessed through an spte? 2.6.32 answers
    /// "old" when sptes have no accessed bit, which is the case for EPT; the port's shadow sptes
    /// carry no accessed bit either (Documentation/deviations.md).
    /// </summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_age_hva")]
    public static bool KvmAgeHva(Kvm kvm, ulong hva) => false;

    /// <summary>kvm_mmu_load(): points the CPU at the vCPU's root.</summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_mmu_load")]
    public static void KvmMmuLoad(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.Cpu.Root = vcpu.Arch.Root;
    }

    /// <summary>kvm_mmu_setup(): the vCPU's MMU, TDP or shadow.</summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_mmu_setup")]
    private static void KvmMmuSetup(KvmVcpu vcpu)
    {
        vcpu.Arch.Root = vcpu.Kvm.Arch.TdpEnabled ? new EptRoot(vcpu.Kvm) : new ShadowRoot(vcpu.Kvm, vcpu.Cpu);
        KvmMmuLoad(vcpu);
    }
}
