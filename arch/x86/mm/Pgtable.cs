using Hw;

namespace Linux;

/// <summary>
/// The host's page tables. Unlike Linux, kept in a table of the kernel instance rather than in
/// simulated RAM: the host kernel's own memory is not simulated, only the VMM's pages are.
/// </summary>
public sealed class SoftPageTable : PageTable
{
    private const int PtrsPerPte = 512;

    /// <summary>The last-level tables, by the address bits above them (the pmd index).</summary>
    private readonly Dictionary<ulong, ulong[]> _pteTables = [];

    /// <summary>The table of the last access: faults of one VMM mapping fall in few tables.</summary>
    private ulong _lastPmd = ulong.MaxValue;
    private ulong[]? _lastTable;

    public override SimTask<ulong> ReadPte(ulong address) => Pte(address);

    public override SimTask<bool> SetPteIfSame(ulong address, ulong expected, ulong pte)
    {
        if (Pte(address) != expected)
        {
            return false;
        }
        PokePte(address, pte);
        return true;
    }

    public override ulong? PeekPte(ulong address) => Pte(address);

    public override bool PokePte(ulong address, ulong pte)
    {
        if (Table(address, create: pte != 0) is { } table)
        {
            table[Index(address)] = pte;
        }
        return true;
    }

    private ulong Pte(ulong address) => Table(address, create: false) is { } table ? table[Index(address)] : 0;

    private static int Index(ulong address) => (int)((address >> Pgtable.PAGE_SHIFT) & (PtrsPerPte - 1));

    private ulong[]? Table(ulong address, bool create)
    {
        ulong pmd = address >> (Pgtable.PAGE_SHIFT + 9);
        if (pmd == _lastPmd)
        {
            return _lastTable;
        }
        if (!_pteTables.TryGetValue(pmd, out var table))
        {
            if (!create)
            {
                return null;
            }
            table = new ulong[PtrsPerPte];
            _pteTables.Add(pmd, table);
        }
        _lastPmd = pmd;
        _lastTable = table;
        return table;
    }
}

/// <summary>
/// A guest's x86-64 four-level page tables, in guest RAM: the hardware walks them, and the
/// guest kernel reads and writes them through its CPU, touching each table page first (a
/// table page the host has swapped out costs the vCPU an EPT violation, as on real hardware).
/// </summary>
public sealed class X86PageTable(Kernel kernel, ulong pgd) : PageTable
{
    public ulong Pgd { get; } = pgd;

    private static ulong EntryAddress(ulong table, ulong address, int level) =>
        table + (((address >> (Pgtable.PAGE_SHIFT + (9 * level))) & 511) * 8);

    /// <remarks>
    /// When every table page on the way is mapped the walk completes at once; otherwise it goes
    /// level by level, touching (and so faulting in) each table page it needs.
    /// </remarks>
    public override SimTask<ulong> ReadPte(ulong address) =>
        TryWalk(address, out ulong pte) ? pte : ReadPteWalking(address);

    /// <remarks>
    /// When every table page on the way is mapped and present the comparison and the store happen
    /// at once; otherwise the walk goes level by level, allocating the missing tables.
    /// </remarks>
    public override SimTask<bool> SetPteIfSame(ulong address, ulong expected, ulong pte) =>
        TrySetMapped(address, expected, pte, out bool written) ? written : SetPteWalking(address, expected, pte);

    /// <summary>The walk with no table page to touch: false if one of them is not mapped.</summary>
    private bool TryWalk(ulong address, out ulong pte)
    {
        var cpu = kernel.Current.Context!.Cpu!;
        pte = 0;
        return WalkUpperLevels(cpu, address, out ulong table) switch
        {
            UpperLevels.Leaf => cpu.TryReadGuestU64(EntryAddress(table, address, 0), out pte),
            UpperLevels.NotPresent => true,
            _ => false,
        };
    }

    /// <summary>
    /// The comparison and store with every table present and mapped (<paramref name="written"/>
    /// says whether the PTE was still <paramref name="expected"/>); false, with nothing read or
    /// written, if a table page is missing or not mapped.
    /// </summary>
    private bool TrySetMapped(ulong address, ulong expected, ulong pte, out bool written)
    {
        var cpu = kernel.Current.Context!.Cpu!;
        written = false;
        return WalkUpperLevels(cpu, address, out ulong table) == UpperLevels.Leaf
            && TrySetEntry(cpu, EntryAddress(table, address, 0), expected, pte, out written);
    }

    /// <summary>The entry at <paramref name="gpa"/> set to <paramref name="value"/> if it holds <paramref name="expected"/>; false if its page is not mapped.</summary>
    private static bool TrySetEntry(X86Cpu cpu, ulong gpa, ulong expected, ulong value, out bool written)
    {
        written = false;
        if (!cpu.TryReadGuestU64(gpa, out ulong current))
        {
            return false;
        }
        if (current == expected)
        {
            cpu.WriteGuestU64(gpa, value);
            written = true;
        }
        return true;
    }

    private enum UpperLevels
    {
        /// <summary>Every upper entry is present: <c>table</c> is the last-level table.</summary>
        Leaf,

        /// <summary>An upper entry is not present (nothing maps the address).</summary>
        NotPresent,

        /// <summary>A table page on the way is not mapped: reading it needs a touch.</summary>
        Unmapped,
    }

    /// <summary>
    /// Reads the PGD, PUD and PMD entries for <paramref name="address"/> through the CPU, touching
    /// nothing; what a walk since the CPU's last TLB flush found is not read again (the CPU's
    /// <see cref="X86Cpu.PagingCache"/>, the same three reads).
    /// </summary>
    private UpperLevels WalkUpperLevels(X86Cpu cpu, ulong address, out ulong table)
    {
        if (cpu.PagingCache.TryLookup(Pgd, address, out table, out _, out _))
        {
            return UpperLevels.Leaf;
        }
        table = Pgd;
        bool write = true;
        bool user = true;
        for (int level = 3; level > 0; level--)
        {
            if (!cpu.TryReadGuestU64(EntryAddress(table, address, level), out ulong entry))
            {
                return UpperLevels.Unmapped;
            }
            if (!Pgtable.PtePresent(entry))
            {
                return UpperLevels.NotPresent;
            }
            write &= Pgtable.PteWrite(entry);
            user &= (entry & Pgtable._PAGE_USER) != 0;
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        cpu.PagingCache.Fill(Pgd, address, table, write, user);
        return UpperLevels.Leaf;
    }

    private async SimTask<ulong> ReadPteWalking(ulong address)
    {
        ulong table = Pgd;
        for (int level = 3; level > 0; level--)
        {
            ulong entry = await ReadEntry(EntryAddress(table, address, level));
            if (!Pgtable.PtePresent(entry))
            {
                return 0;
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        return await ReadEntry(EntryAddress(table, address, 0));
    }

    private async SimTask<bool> SetPteWalking(ulong address, ulong expected, ulong pte)
    {
        ulong table = Pgd;
        for (int level = 3; level > 0; level--)
        {
            ulong at = EntryAddress(table, address, level);
            ulong entry = await ReadEntry(at);
            if (!Pgtable.PtePresent(entry))
            {
                entry = await PopulateEntry(at);
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        return await SetEntry(EntryAddress(table, address, 0), expected, pte);
    }

    /// <summary>
    /// __pud_alloc() / __pmd_alloc() / __pte_alloc(): a zeroed page for the next level, installed
    /// in the entry at <paramref name="at"/> unless another thread of the mm installed one while
    /// this one slept zeroing it; then the new page is freed and the entry found is used. Returns
    /// the entry. The check and the store happen at one instant, as under page_table_lock.
    /// </summary>
    /// <remarks>
    /// So an upper entry only ever goes from not present to present, which the CPU's
    /// paging-structure cache relies on (Documentation/deviations.md, X6).
    /// </remarks>
    [Port("mm/memory.c", "__pte_alloc")]
    private async SimTask<ulong> PopulateEntry(ulong at)
    {
        var page = kernel.AllocPage() ?? throw new InvalidOperationException("guest out of memory for page tables");
        ulong entry = (page.Pfn << Pgtable.PAGE_SHIFT) | Pgtable._PAGE_TABLE;
        await kernel.Current.Context!.Touch(page.Pfn << Pgtable.PAGE_SHIFT);
        if (await SetEntry(at, 0, entry))
        {
            return entry;
        }
        kernel.__FreePage(page); // another thread populated it meanwhile
        return kernel.Current.Context!.Cpu!.ReadGuestU64(at);
    }

    public override ulong? PeekPte(ulong address) => TryWalk(address, out ulong pte) ? pte : null;

    public override bool PokePte(ulong address, ulong pte) => false;

    /// <summary>
    /// The entry at <paramref name="gpa"/> set to <paramref name="value"/> if it holds
    /// <paramref name="expected"/> (true if it did), its table page touched first if it is not
    /// mapped; the comparison and the store happen at one instant.
    /// </summary>
    private async SimTask<bool> SetEntry(ulong gpa, ulong expected, ulong value)
    {
        var ctx = kernel.Current.Context!;
        bool written;
        while (!TrySetEntry(ctx.Cpu!, gpa, expected, value, out written))
        {
            await ctx.Touch(gpa);
        }
        return written;
    }

    private async SimTask<ulong> ReadEntry(ulong gpa)
    {
        var ctx = kernel.Current.Context!;
        if (ctx.Cpu!.TryReadGuestU64(gpa, out ulong entry))
        {
            return entry;
        }
        await ctx.Touch(gpa);
        return ctx.Cpu!.ReadGuestU64(gpa);
    }
}
