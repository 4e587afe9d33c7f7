using Hw;

namespace Linux;

// arch/x86/kvm/paging_tmpl.h, instantiated for 64-bit guests (FNAME = paging64): shadow paging.
// Unlike Linux, the shadow tables are keyed by (guest CR3, guest page) instead of shadowing
// each guest page-table page, so guest page-table writes are not write-protected
// (Documentation/deviations.md); and the guest kernel's direct map is taken to be the linear
// map it is, instead of being walked through the guest's kernel page tables.
public sealed partial class Kernel
{
    /// <summary>struct guest_walker: the result of walking the guest's page tables.</summary>
    private readonly record struct GuestWalker(bool Present, ulong Gfn, uint ErrorCode);

    /// <summary>FNAME(walk_addr): walks the guest's four-level tables in guest memory (reading them may sleep on a swapped page).</summary>
    [Port("arch/x86/kvm/paging_tmpl.h", "paging64_walk_addr")]
    private async SimTask<GuestWalker> Paging64WalkAddr(KvmVcpu vcpu, ulong addr, bool write, bool user, ulong cr3)
    {
        MightSleep();
        uint error = (write ? (uint)PfErr.Write : 0) | (user ? (uint)PfErr.User : 0);
        ulong table = cr3 & Pgtable.PTE_PFN_MASK;
        for (int level = 3; level >= 0; level--)
        {
            ulong pteGpa = table + (((addr >> (Pgtable.PAGE_SHIFT + (9 * level))) & 511) * 8);
            ulong pte = await KvmReadGuest(vcpu, pteGpa);
            if (!Pgtable.PtePresent(pte))
            {
                return new GuestWalker(false, 0, error);
            }
            if ((write && !Pgtable.PteWrite(pte)) || (user && (pte & Pgtable._PAGE_USER) == 0))
            {
                return new GuestWalker(false, 0, error | (uint)PfErr.Present);
            }
            table = pte & Pgtable.PTE_PFN_MASK;
        }
        return new GuestWalker(true, table >> Pgtable.PAGE_SHIFT, error);
    }

    /// <summary>kvm_read_guest() of one u64: a copy_from_user on the VMM's mapping, which faults the page in if needed.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_read_guest")]
    private async SimTask<ulong> KvmReadGuest(KvmVcpu vcpu, ulong gpa)
    {
        MightSleep();
        ulong pfn = await GfnToPfnAccounted(vcpu, gpa >> Pgtable.PAGE_SHIFT);
        return pfn == BadPfn ? 0 : Ram!.ReadU64((pfn << Pgtable.PAGE_SHIFT) | (gpa & (Pgtable.PAGE_SIZE - 1)));
    }

    /// <summary>
    /// FNAME(page_fault): a #PF intercepted under shadow paging. A fault the guest's own tables
    /// explain is injected into the guest; otherwise the gfn is fetched (async with patch 8) and
    /// the spte installed for <paramref name="cr3"/> (patch 9's prefault passes the CR3 the fault
    /// was taken under, which is the CR3 switch the issue names).
    /// </summary>
    [Port("arch/x86/kvm/paging_tmpl.h", "paging64_page_fault", Patches = [0, 8, 9])]
    private async SimTask<int> Paging64PageFault(KvmVcpu vcpu, ulong addr, uint errorCode, ulong cr3, bool prefault)
    {
        MightSleep();
        bool write = (errorCode & (uint)PfErr.Write) != 0;
        bool user = (errorCode & (uint)PfErr.User) != 0;
        ulong directBase = vcpu.Cpu.DirectMapBase;
        ulong gfn;
        if (directBase != 0 && addr >= directBase)
        {
            gfn = (addr - directBase) >> Pgtable.PAGE_SHIFT;
        }
        else
        {
            var walker = await Paging64WalkAddr(vcpu, addr, write, user, cr3);
            if (!walker.Present)
            {
                if (!prefault)
                {
                    KvmInjectPageFault(vcpu, addr, walker.ErrorCode);
                }
                return 0;
            }
            gfn = walker.Gfn;
        }
        long mmuSeq = vcpu.Kvm.MmuNotifierSeq;
        var (handled, pfn) = await TryAsyncPf(vcpu, prefault, gfn, addr, cr3);
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
            return 0;
        }
        Paging64Fetch(vcpu, addr, gfn, pfn, write, directBase != 0 && addr >= directBase, cr3);
        return 0;
    }

    /// <summary>FNAME(fetch): installs the shadow spte and its reverse-map entry.</summary>
    [Port("arch/x86/kvm/paging_tmpl.h", "paging64_fetch")]
    private void Paging64Fetch(KvmVcpu vcpu, ulong addr, ulong gfn, ulong pfn, bool write, bool directMap, ulong cr3)
    {
        var arch = vcpu.Kvm.Arch;
        ulong spte = Spte.Make(pfn, writable: true);
        if (directMap)
        {
            arch.ShadowDirect[gfn] = spte;
        }
        else
        {
            var key = (cr3, addr >> Pgtable.PAGE_SHIFT);
            arch.Shadow[key] = spte;
            if (!arch.ShadowRmap.TryGetValue(gfn, out var keys))
            {
                keys = [];
                arch.ShadowRmap[gfn] = keys;
            }
            if (!keys.Contains(key))
            {
                keys.Add(key);
            }
        }
        arch.SptesInstalled++;
        KvmTrace.Log.kvm_mmu_set_spte(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)gfn, (long)pfn, Name);
        if (write)
        {
            KvmSetPfnDirty(pfn);
        }
    }
}
