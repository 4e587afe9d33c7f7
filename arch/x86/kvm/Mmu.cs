using Hw;

namespace Linux;

/// <summary>The EPT of a VM as the CPU walks it (the root_hpa of a TDP MMU).</summary>
public sealed class EptRoot(Kvm kvm) : ITranslationRoot
{
    public bool TwoDimensional => true;

    public bool TryTranslate(ulong address, bool write, out ulong hostPhysical) => TryTranslatePhysical(address, out hostPhysical);

    public bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical) =>
        Spte.TryLookup(kvm.Arch.Ept, gpa >> Pgtable.PAGE_SHIFT, out hostPhysical);
}

/// <summary>A vCPU's shadow page tables as the CPU walks them: per guest CR3 for user addresses, shared for the guest kernel's direct map.</summary>
public sealed class ShadowRoot(Kvm kvm, X86Cpu cpu) : ITranslationRoot
{
    public bool TwoDimensional => false;

    public bool TryTranslate(ulong address, bool write, out ulong hostPhysical) =>
        address >= cpu.DirectMapBase && cpu.DirectMapBase != 0
            ? TryTranslatePhysical(address - cpu.DirectMapBase, out hostPhysical)
            : Spte.TryLookup(kvm.Arch.Shadow, (cpu.Cr3, address >> Pgtable.PAGE_SHIFT), out hostPhysical);

    public bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical) =>
        Spte.TryLookup(kvm.Arch.ShadowDirect, gpa >> Pgtable.PAGE_SHIFT, out hostPhysical);
}

// arch/x86/kvm/mmu.c (patch 0): the page-fault handlers and the notifier side of the MMU.
public sealed partial class Kernel
{
    /// <summary>kvm_mmu_page_fault(): the vCPU's MMU handles a fault at <paramref name="cr2"/> (a gpa under TDP, a gva under shadow paging).</summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_mmu_page_fault")]
    public SimTask<int> KvmMmuPageFault(KvmVcpu vcpu, ulong cr2, uint errorCode)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return vcpu.Kvm.Arch.TdpEnabled ? TdpPageFault(vcpu, cr2, errorCode, prefault: false) : Paging64PageFault(vcpu, cr2, errorCode, vcpu.Cpu.Cr3, prefault: false);
    }

    /// <summary>
    /// tdp_page_fault(): maps the faulting gfn in the EPT. With async PF (patch 8) a page that
    /// needs I/O is handed to a worker and the guest told it is not present; otherwise the
    /// vCPU thread gets the page itself, sleeping through a swap-in. <paramref name="prefault"/>
    /// is patch 9's call before VM entry, which never goes async.
    /// </summary>
    [Port("arch/x86/kvm/mmu.c", "tdp_page_fault", Patches = [0, 8, 9])]
    private async SimTask<int> TdpPageFault(KvmVcpu vcpu, ulong gpa, uint errorCode, bool prefault)
    {
        MightSleep();
        ulong gfn = gpa >> Pgtable.PAGE_SHIFT;
        bool write = (errorCode & (uint)PfErr.Write) != 0;
        long mmuSeq = vcpu.Kvm.MmuNotifierSeq;
        var (handled, pfn) = await TryAsyncPf(vcpu, prefault, gfn, gpa, vcpu.Cpu.Cr3);
        if (handled)
        {
            return 0;
        }
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

    /// <summary>
    /// try_async_pf(): the one place both fault handlers decide between async and synchronous
    /// (the unification seeds/000 asks for). Returns Handled when an async fault was set up, else
    /// the pfn, got synchronously if needed.
    /// </summary>
    [Port("arch/x86/kvm/mmu.c", "try_async_pf", Patches = [8, 12])]
    private async SimTask<(bool Handled, ulong Pfn)> TryAsyncPf(KvmVcpu vcpu, bool noApf, ulong gfn, ulong gva, ulong cr3)
    {
        MightSleep();
        string? refusal = noApf ? "prefault" : CanDoAsyncPf(vcpu);
        bool halt = false;
        if (refusal is "disabled" or "cpl" && AsyncPfHaltVariant && Config.CONFIG_KVM_ASYNC_PF)
        {
            // The halt variant (seeds/000): a guest that cannot take the event still keeps its
            // vCPU for interrupts while the page comes in; the vCPU halts instead of stalling.
            refusal = null;
            halt = true;
        }
        if (refusal is null)
        {
            var (pfn, isAsync) = GfnToPfnAsync(vcpu.Kvm, gfn);
            KvmTrace.Log.kvm_try_async_get_page(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, isAsync ? -1 : (long)pfn, isAsync, Name);
            if (!isAsync)
            {
                return (false, pfn);
            }
            if (halt && AsyncPfWaitsFor(vcpu, gfn))
            {
                vcpu.Arch.ApfHalted = true; // the same page again: halt until it is in
                return (true, 0);
            }
            var (ok, why) = await KvmArchSetupAsyncPf(vcpu, gva, gfn, cr3, halt);
            if (ok)
            {
                vcpu.Cpu.AccountMajorFault();
                return (true, 0);
            }
            refusal = why;
        }
        long majBefore = Current.MajFlt;
        ulong synced = await GfnToPfnAccounted(vcpu, gfn);
        if (!noApf && refusal is not null && refusal != "disabled" && ApfEnabled(vcpu) && Current.MajFlt != majBefore)
        {
            ApfCounters.SyncFallbacks++;
            KvmTrace.Log.kvm_async_pf_sync_fallback(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)gva, refusal, Name);
        }
        return (false, synced);
    }


    /// <summary>True if <paramref name="vcpu"/> already waits for <paramref name="gfn"/> (the halt variant's "same page again").</summary>
    private static bool AsyncPfWaitsFor(KvmVcpu vcpu, ulong gfn)
    {
        foreach (var work in vcpu.AsyncPfQueue)
        {
            if (work.Gfn == gfn && !work.WakeupAll)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// can_do_async_pf() (patch 8, CPL rule widened by patch 12): the guest enabled async PF, no
    /// event waits to be re-injected, the guest can take an interrupt, and it runs in user mode
    /// unless it said it can take async faults in kernel mode (send-always, patch 11). Returns
    /// null when it can, else the rule that forbids it.
    /// </summary>
    [Port("arch/x86/kvm/mmu.c", "can_do_async_pf", Patches = [8, 12])]
    private static string? CanDoAsyncPf(KvmVcpu vcpu)
    {
        if (KvmEventNeedsReinjection(vcpu))
        {
            return "event pending";
        }
        if (!VmxInterruptAllowed(vcpu))
        {
            return "interrupts";
        }
        if (!ApfEnabled(vcpu))
        {
            return "disabled";
        }
        if (vcpu.Arch.ApfSendUserOnly && VmxGetCpl(vcpu) == 0)
        {
            return "cpl";
        }
        return null;
    }

    /// <summary>kvm_arch_setup_async_pf() (patch 8): the token is (apf_id++ &lt;&lt; 12) | vcpu_id, in u32 arithmetic (seeds/004).</summary>
    [Port("arch/x86/kvm/mmu.c", "kvm_arch_setup_async_pf", Patches = [8])]
    private SimTask<(bool Ok, string? Refusal)> KvmArchSetupAsyncPf(KvmVcpu vcpu, ulong gva, ulong gfn, ulong cr3, bool halt)
    {
        uint token = unchecked((vcpu.Arch.ApfId++ << 12) | (uint)vcpu.VcpuId);
        return KvmSetupAsyncPf(vcpu, gva, gfn, token, cr3, halt);
    }

    /// <summary>
    /// The halt variant of async PF that seeds/000 asks for ("inject interrupts for non-PV guests
    /// while waiting for swap-in"; v7's "Halt vcpu if page it tries to access is swapped out"):
    /// when the event cannot be delivered the swap-in still goes to a worker and the vCPU halts,
    /// taking interrupts, until the page is in. Off by default: v3 faults synchronously then.
    /// </summary>
    public bool AsyncPfHaltVariant { get; set; }

    /// <summary>gfn_to_pfn on the vCPU thread, telling the CPU when the access needed swap I/O (the task's maj_flt moved).</summary>
    private async SimTask<ulong> GfnToPfnAccounted(KvmVcpu vcpu, ulong gfn)
    {
        MightSleep();
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
        KvmTrace.Log.kvm_mmu_set_spte(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)gfn, (long)pfn, Name);
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
            RmapRemove(kvm, spte);
            zapped = true;
        }
        if (kvm.Arch.ShadowDirect.Remove(gfn, out spte))
        {
            RmapRemove(kvm, spte);
            zapped = true;
        }
        if (kvm.Arch.ShadowRmap.Remove(gfn, out var keys))
        {
            foreach (var key in keys)
            {
                if (kvm.Arch.Shadow.Remove(key, out spte))
                {
                    RmapRemove(kvm, spte);
                    zapped = true;
                }
            }
        }
        return zapped;
    }

    /// <summary>
    /// kvm_arch_flush_shadow() → kvm_mmu_zap_all(): drops every spte of the VM (a memory slot went
    /// away, so no translation through it may survive), then flushes every vCPU's TLB.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_flush_shadow")]
    public void KvmArchFlushShadow(Kvm kvm)
    {
        ArgumentNullException.ThrowIfNull(kvm);
        var arch = kvm.Arch;
        foreach (ulong spte in arch.Ept.Values.Concat(arch.ShadowDirect.Values).Concat(arch.Shadow.Values))
        {
            RmapRemove(kvm, spte);
        }
        arch.Ept.Clear();
        arch.ShadowDirect.Clear();
        arch.Shadow.Clear();
        arch.ShadowRmap.Clear();
        KvmFlushRemoteTlbs(kvm);
    }

    /// <summary>rmap_remove(): a writable spte marks the page dirty (2010's EPT had no dirty bit).</summary>
    [Port("arch/x86/kvm/mmu.c", "rmap_remove")]
    private void RmapRemove(Kvm kvm, ulong spte)
    {
        kvm.Arch.SptesZapped++;
        KvmTrace.Log.kvm_mmu_zap_spte(TraceRunId, kvm.Id, -1, Now, (long)Spte.Pfn(spte), Spte.Writable(spte), Name);
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
