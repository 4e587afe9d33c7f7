using Hw;

namespace Linux;

/// <summary>
/// The host's page tables. Unlike Linux, kept in a table of the kernel instance rather than in
/// simulated RAM: the host kernel's own memory is not simulated, only the VMM's pages are.
/// </summary>
public sealed class SoftPageTable : PageTable
{
    private readonly Dictionary<ulong, ulong> _ptes = [];

    public override SimTask<ulong> ReadPte(ulong address) => _ptes.GetValueOrDefault(address >> Pgtable.PAGE_SHIFT);

    public override SimTask WritePte(ulong address, ulong pte)
    {
        PokePte(address, pte);
        return SimTask.CompletedTask;
    }

    public override ulong? PeekPte(ulong address) => _ptes.GetValueOrDefault(address >> Pgtable.PAGE_SHIFT);

    public override bool PokePte(ulong address, ulong pte)
    {
        if (pte == 0)
        {
            _ptes.Remove(address >> Pgtable.PAGE_SHIFT);
        }
        else
        {
            _ptes[address >> Pgtable.PAGE_SHIFT] = pte;
        }
        return true;
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

    public override async SimTask<ulong> ReadPte(ulong address)
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

    public override async SimTask WritePte(ulong address, ulong pte)
    {
        ulong table = Pgd;
        for (int level = 3; level > 0; level--)
        {
            ulong at = EntryAddress(table, address, level);
            ulong entry = await ReadEntry(at);
            if (!Pgtable.PtePresent(entry))
            {
                // pte_alloc: a zeroed page for the next level.
                var page = kernel.AllocPage() ?? throw new InvalidOperationException("guest out of memory for page tables");
                ulong newTable = page.Pfn << Pgtable.PAGE_SHIFT;
                await kernel.Current.Context!.Touch(newTable);
                entry = newTable | Pgtable._PAGE_TABLE;
                await WriteEntry(at, entry);
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        await WriteEntry(EntryAddress(table, address, 0), pte);
    }

    public override ulong? PeekPte(ulong address)
    {
        var cpu = kernel.Current.Context!.Cpu!;
        ulong table = Pgd;
        for (int level = 3; level >= 0; level--)
        {
            ulong at = EntryAddress(table, address, level);
            if (!cpu.GuestPhysicalMapped(at))
            {
                return null;
            }
            ulong entry = cpu.ReadGuestU64(at);
            if (level == 0)
            {
                return entry;
            }
            if (!Pgtable.PtePresent(entry))
            {
                return 0;
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        return 0;
    }

    public override bool PokePte(ulong address, ulong pte) => false;

    private async SimTask<ulong> ReadEntry(ulong gpa)
    {
        var ctx = kernel.Current.Context!;
        if (!ctx.Cpu!.GuestPhysicalMapped(gpa))
        {
            await ctx.Touch(gpa);
        }
        return ctx.Cpu!.ReadGuestU64(gpa);
    }

    private async SimTask WriteEntry(ulong gpa, ulong value)
    {
        var ctx = kernel.Current.Context!;
        if (!ctx.Cpu!.GuestPhysicalMapped(gpa))
        {
            await ctx.Touch(gpa);
        }
        ctx.Cpu!.WriteGuestU64(gpa, value);
    }
}
