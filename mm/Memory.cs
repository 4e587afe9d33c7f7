using Hw;

namespace Linux;

/// <summary>include/linux/mm.h: VM_FAULT_* results.</summary>
public static class VmFault
{
    public const int VM_FAULT_OOM = 0x0001;
    public const int VM_FAULT_SIGBUS = 0x0002;
    public const int VM_FAULT_MAJOR = 0x0004;
    public const int VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS;
}

// mm/memory.c: demand paging and get_user_pages, for the host's VMM and the guest's tasks alike.
public sealed partial class Kernel
{
    /// <summary>PGMAJFAULT: faults that needed I/O.</summary>
    public long PgMajFault { get; private set; }

    /// <summary>PGFAULT.</summary>
    public long PgFault { get; private set; }

    /// <summary>handle_mm_fault() → handle_pte_fault(): resolves a fault at <paramref name="address"/>. May sleep.</summary>
    [Port("mm/memory.c", "handle_mm_fault")]
    public async SimTask<int> HandleMmFault(MmStruct mm, VmAreaStruct vma, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(mm);
        MightSleep();
        PgFault++;
        ulong entry = await mm.PageTable.ReadPte(address);
        if (Pgtable.PteNone(entry))
        {
            return await DoAnonymousPage(mm, vma, address, write);
        }
        if (!Pgtable.PtePresent(entry))
        {
            return await DoSwapPage(mm, address, entry, write);
        }
        return 0; // mapped meanwhile (a spurious fault)
    }

    /// <summary>do_anonymous_page(): a zeroed page for a first touch.</summary>
    [Port("mm/memory.c", "do_anonymous_page")]
    private async SimTask<int> DoAnonymousPage(MmStruct mm, VmAreaStruct vma, ulong address, bool write)
    {
        var page = AllocPage();
        if (page is null)
        {
            return VmFault.VM_FAULT_OOM;
        }
        if (mm.MemCgroup is { } mem)
        {
            await MemCgroupCharge(page, mem);
        }
        await ClearUserHighpage(page);
        page.Set(PageFlags.PG_uptodate);
        if (!Pgtable.PteNone(await mm.PageTable.ReadPte(address)))
        {
            // Someone else mapped it while we slept.
            MemCgroupUncharge(page);
            FreePage(page);
            return 0;
        }
        await mm.PageTable.WritePte(address, Pgtable.MkPte(page.Pfn, vma.Write));
        PageAddAnonRmap(page, mm, address);
        LruCacheAdd(page);
        MarkPageAccessed(page);
        return 0;
    }

    /// <summary>clear_user_highpage(): zeroes a new page. In a guest that is a store to the frame, which the host sees.</summary>
    [Port("include/linux/highmem.h", "clear_user_highpage")]
    private async SimTask ClearUserHighpage(Page page)
    {
        if (Current.Context is { } ctx)
        {
            await ctx.Touch(page.Pfn << Pgtable.PAGE_SHIFT);
        }
        else
        {
            Current.HostWorkNs += Costs.HostAnonPageNs;
        }
    }

    /// <summary>do_swap_page(): brings a swapped page back, reading it if it is not in the swap cache.</summary>
    [Port("mm/memory.c", "do_swap_page")]
    private async SimTask<int> DoSwapPage(MmStruct mm, ulong address, ulong origPte, bool write)
    {
        var entry = Pgtable.PteToSwpEntry(origPte);
        int ret = 0;
        var page = LookupSwapCache(entry);
        if (page is null)
        {
            page = await SwapinReadahead(entry, mm.MemCgroup);
            if (page is null)
            {
                return VmFault.VM_FAULT_OOM;
            }
            ret = VmFault.VM_FAULT_MAJOR;
            PgMajFault++;
        }
        MarkPageAccessed(page);
        await LockPage(page);
        try
        {
            if (await mm.PageTable.ReadPte(address) != origPte)
            {
                return ret; // someone else brought it in
            }
            if (!page.Test(PageFlags.PG_uptodate))
            {
                return VmFault.VM_FAULT_SIGBUS;
            }
            ulong pte = Pgtable.MkPte(page.Pfn, write);
            if (write)
            {
                page.Set(PageFlags.PG_dirty);
            }
            await mm.PageTable.WritePte(address, pte);
            PageAddAnonRmap(page, mm, address);
            SwapFree(entry);
            Current.HostWorkNs += Costs.HostFaultNs;
        }
        finally
        {
            UnlockPage(page);
        }
        return ret;
    }

    /// <summary>follow_page(): the page mapped at <paramref name="address"/>, without faulting.</summary>
    [Port("mm/memory.c", "follow_page")]
    public Page? FollowPage(MmStruct mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(mm);
        ulong pte = mm.PageTable.PeekPte(address) ?? 0;
        if (!Pgtable.PtePresent(pte) || (write && !Pgtable.PteWrite(pte)))
        {
            return null;
        }
        return PfnToPage(Pgtable.PtePfn(pte));
    }

    /// <summary>
    /// get_user_pages() → __get_user_pages() for one page: faults it in as needed, sleeping on
    /// I/O, and counts the task's major and minor faults.
    /// </summary>
    [Port("mm/memory.c", "__get_user_pages")]
    public async SimTask<Page?> GetUserPages(TaskStruct tsk, MmStruct mm, ulong start, bool write)
    {
        ArgumentNullException.ThrowIfNull(tsk);
        ArgumentNullException.ThrowIfNull(mm);
        MightSleep();
        var vma = mm.FindVma(start);
        if (vma is null)
        {
            return null;
        }
        while (true)
        {
            if (FollowPage(mm, start, write) is { } page)
            {
                return page;
            }
            int ret = await HandleMmFault(mm, vma, start, write);
            if ((ret & VmFault.VM_FAULT_ERROR) != 0)
            {
                return null;
            }
            if ((ret & VmFault.VM_FAULT_MAJOR) != 0)
            {
                tsk.MajFlt++;
            }
            else
            {
                tsk.MinFlt++;
            }
        }
    }
}
