using Hw;

namespace Linux;

/// <summary>include/linux/mm.h: VM_FAULT_* results.</summary>
public static class VmFault
{
    public const int VM_FAULT_OOM = 0x0001;
    public const int VM_FAULT_SIGBUS = 0x0002;
    public const int VM_FAULT_MAJOR = 0x0004;
    public const int VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS;

    /// <summary>FAULT_FLAG_WRITE.</summary>
    public const int FAULT_FLAG_WRITE = 0x01;

    /// <summary>FAULT_FLAG_MINOR (patch 6): fail instead of starting I/O or waiting for it.</summary>
    public const int FAULT_FLAG_MINOR = 0x08;
}

// mm/memory.c: demand paging and get_user_pages, for the host's VMM and the guest's tasks alike.
public sealed partial class Kernel
{
    /// <summary>PGMAJFAULT: faults that needed I/O.</summary>
    public long PgMajFault { get; private set; }

    /// <summary>PGFAULT.</summary>
    public long PgFault { get; private set; }

    /// <summary>handle_mm_fault(): resolves a fault at <paramref name="address"/>. May sleep.</summary>
    /// <remarks>
    /// With FAULT_FLAG_MINOR (patch 6) it never sleeps: a fault that would need I/O, or a wait for I/O, fails.
    /// Not an async method: when the walk to the pte touches no unmapped table page (nearly
    /// always) it goes straight on to handle_pte_fault and returns that task, so that a fault
    /// that sleeps does not suspend one frame more.
    /// </remarks>
    [Port("mm/memory.c", "handle_mm_fault", Patches = [0, 6])]
    public SimTask<int> HandleMmFault(MmStruct mm, VmAreaStruct vma, ulong address, int flags)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if ((flags & VmFault.FAULT_FLAG_MINOR) == 0)
        {
            MightSleep();
        }
        PgFault++;
        return mm.PageTable.PeekPte(address) is { } entry
            ? HandlePteFault(mm, vma, address, entry, flags)
            : HandleMmFaultWalking(mm, vma, address, flags);
    }

    /// <summary>handle_mm_fault() whose walk to the pte has a table page to touch first.</summary>
    private async SimTask<int> HandleMmFaultWalking(MmStruct mm, VmAreaStruct vma, ulong address, int flags)
    {
        ulong entry = await mm.PageTable.ReadPte(address);
        return await HandlePteFault(mm, vma, address, entry, flags);
    }

    /// <summary>handle_pte_fault(): a first touch, a swapped-out page, or a fault someone else resolved meanwhile.</summary>
    [Port("mm/memory.c", "handle_pte_fault")]
    private SimTask<int> HandlePteFault(MmStruct mm, VmAreaStruct vma, ulong address, ulong entry, int flags)
    {
        if (Pgtable.PteNone(entry))
        {
            return DoAnonymousPage(mm, vma, address, flags);
        }
        if (!Pgtable.PtePresent(entry))
        {
            return DoSwapPage(mm, address, entry, flags);
        }
        return 0; // mapped meanwhile (a spurious fault)
    }

    /// <summary>do_anonymous_page(): a zeroed page for a first touch.</summary>
    [Port("mm/memory.c", "do_anonymous_page", Patches = [0, 6])]
    private async SimTask<int> DoAnonymousPage(MmStruct mm, VmAreaStruct vma, ulong address, int flags)
    {
        MightSleep();
        var page = AllocPage();
        if (page is null)
        {
            return VmFault.VM_FAULT_OOM;
        }
        if (mm.MemCgroup is { } mem)
        {
            if ((flags & VmFault.FAULT_FLAG_MINOR) != 0)
            {
                if (!MemCgroupTryChargeSwapin(page, mem))
                {
                    __FreePage(page);
                    return VmFault.VM_FAULT_MAJOR | VmFault.VM_FAULT_ERROR; // would wait for writeback
                }
            }
            else
            {
                await MemCgroupChargeCommon(page, mem);
            }
        }
        await ClearUserHighpage(page);
        page.Set(PageFlags.PG_uptodate);
        if (!Pgtable.PteNone(await mm.PageTable.ReadPte(address))
            || !await mm.PageTable.SetPteIfSame(address, 0, Pgtable.MkPte(page.Pfn, vma.Write)))
        {
            // Someone else mapped it while we slept (zeroing the page, or allocating a table for it).
            MemCgroupUnchargePage(page);
            __FreePage(page);
            return 0;
        }
        PageAddAnonRmap(page, mm, address);
        LruCacheAddLru(page);
        MarkPageAccessed(page);
        return 0;
    }

    /// <summary>clear_user_highpage(): zeroes a new page. In a guest that is a store to the frame, which the host sees.</summary>
    /// <remarks>Not an async method: the store is its last step, so it returns the CPU's task for it.</remarks>
    [Port("include/linux/highmem.h", "clear_user_highpage")]
    private SimTask ClearUserHighpage(Page page)
    {
        MightSleep();
        if (Current.Context is { } ctx)
        {
            return ctx.Touch(page.Pfn << Pgtable.PAGE_SHIFT);
        }
        Current.HostWorkNs += Costs.HostAnonPageNs;
        return SimTask.CompletedTask;
    }

    /// <summary>do_swap_page(): brings a swapped page back, reading it if it is not in the swap cache.</summary>
    [Port("mm/memory.c", "do_swap_page", Patches = [0, 6])]
    private async SimTask<int> DoSwapPage(MmStruct mm, ulong address, ulong origPte, int flags)
    {
        MightSleep();
        bool write = (flags & VmFault.FAULT_FLAG_WRITE) != 0;
        var entry = Pgtable.PteToSwpEntry(origPte);
        int ret = 0;
        var page = LookupSwapCache(entry);
        if ((flags & VmFault.FAULT_FLAG_MINOR) != 0 && (page is null || page.Test(PageFlags.PG_locked)))
        {
            return VmFault.VM_FAULT_MAJOR | VmFault.VM_FAULT_ERROR; // the page needs I/O, or waits for it
        }
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
            if (!page.Test(PageFlags.PG_swapcache) || page.Private != entry)
            {
                // Reclaim or try_to_free_swap took the page out of the swap cache while this task
                // waited for its lock: it may be free now, or another slot's. out_page: the fault
                // is retried, and finds the slot's page (or reads it) afresh.
                return ret;
            }
            if (await mm.PageTable.ReadPte(address) != origPte)
            {
                return ret; // someone else brought it in
            }
            if (!page.Test(PageFlags.PG_uptodate))
            {
                return VmFault.VM_FAULT_SIGBUS;
            }
            if (!await mm.PageTable.SetPteIfSame(address, origPte, Pgtable.MkPte(page.Pfn, write)))
            {
                return ret; // someone else brought it in while the walk slept
            }
            if (write)
            {
                page.Set(PageFlags.PG_dirty); // pte_mkdirty
            }
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
    [Port("mm/memory.c", "get_user_pages", Patches = [0, 6])]
    public async SimTask<Page?> GetUserPages(TaskStruct tsk, MmStruct mm, ulong start, bool write, bool minorOnly = false)
    {
        ArgumentNullException.ThrowIfNull(tsk);
        ArgumentNullException.ThrowIfNull(mm);
        if (!minorOnly)
        {
            MightSleep();
        }
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
            int flags = (write ? VmFault.FAULT_FLAG_WRITE : 0) | (minorOnly ? VmFault.FAULT_FLAG_MINOR : 0);
            int ret = await HandleMmFault(mm, vma, start, flags);
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

// mm/memory.c, patch 6: the get_user_pages variant that fails if a major fault is required.
public sealed partial class Kernel
{
    /// <summary>
    /// get_user_pages_noio(): the page if it is present or in the swap cache (a minor fault maps
    /// it), null if getting it would need I/O. Never sleeps and starts no I/O.
    /// </summary>
    [Port("mm/memory.c", "get_user_pages_noio", Patches = [6])]
    public Page? GetUserPagesNoio(TaskStruct tsk, MmStruct mm, ulong start, bool write)
    {
        var awaiter = GetUserPages(tsk, mm, start, write, minorOnly: true).GetAwaiter();
        if (!awaiter.IsCompleted)
        {
            throw new InvalidOperationException($"BUG: {Name}: get_user_pages_noio slept");
        }
        return awaiter.GetResult();
    }
}
