namespace Hw;

/// <summary>
/// A CPU's paging-structure cache (Intel SDM vol. 3, 4.10.3), its PDE-cache part: for a 2 MiB
/// region of the linear addresses a page-table root maps, the guest-physical address of the
/// last-level table, and whether the three levels above it allow writes and user access. A walk
/// that finds its region here reads only the last level.
/// </summary>
/// <remarks>
/// Flushed with the TLB (INVLPG, MOV to CR3, the MMU notifier's remote flush) and when the MMU
/// root changes, as hardware flushes it. What it keeps is exactly what a walk of the upper levels
/// would find: only walks on which every upper entry is present fill it, and until the next
/// flush nothing they read can change. The guest kernel writes an upper entry only to make it
/// present (it allocates tables and never frees them), and every host change that unmaps a
/// guest page (a table page too) ends with a remote TLB flush. So the guest kernel's own software
/// walks of its page tables use it as well, as a memo of the same three reads (their outcome
/// also depends on whether the table pages are mapped, which the flush covers in the same way).
/// Direct-mapped, 16 entries: a walk's region is nearly always one of the few a task touches.
/// </remarks>
public sealed class PagingStructureCache
{
    private const int RegionShift = 21;
    private const int Entries = 16;

    private readonly Entry[] _entries = new Entry[Entries];

    /// <summary>Upper levels the entry's walk found: the last-level table and the rights all three allow.</summary>
    private struct Entry
    {
        public bool Valid;
        public bool Write;
        public bool User;
        public ulong Root;
        public ulong Region;
        public ulong Table;
    }

    /// <summary>
    /// The last-level table for <paramref name="address"/> under the tables at
    /// <paramref name="root"/> (guest-physical), if a walk since the last flush found it, and
    /// whether the upper levels allow writes (<paramref name="write"/>) and user access
    /// (<paramref name="user"/>).
    /// </summary>
    public bool TryLookup(ulong root, ulong address, out ulong table, out bool write, out bool user)
    {
        ulong region = address >> RegionShift;
        ref Entry e = ref _entries[(int)(region & (Entries - 1))];
        if (e.Valid && e.Region == region && e.Root == root)
        {
            table = e.Table;
            write = e.Write;
            user = e.User;
            return true;
        }
        table = 0;
        write = false;
        user = false;
        return false;
    }

    /// <summary>Keeps what a walk of the upper levels for <paramref name="address"/> found: every entry present.</summary>
    public void Fill(ulong root, ulong address, ulong table, bool write, bool user)
    {
        ulong region = address >> RegionShift;
        _entries[(int)(region & (Entries - 1))] = new Entry { Valid = true, Root = root, Region = region, Table = table, Write = write, User = user };
    }

    /// <summary>Forgets every entry.</summary>
    public void Flush() => Array.Clear(_entries);
}
