namespace Linux;

// mm/mmap.c: anonymous mappings.
public sealed partial class Kernel
{
    /// <summary>do_mmap_pgoff() for MAP_PRIVATE|MAP_ANONYMOUS at a fixed address.</summary>
    [Port("mm/mmap.c", "do_mmap_pgoff")]
    public static VmAreaStruct DoMmapPgoff(MmStruct mm, ulong address, ulong length, bool write)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if ((address & (Pgtable.PAGE_SIZE - 1)) != 0 || length == 0)
        {
            throw new ArgumentException($"bad mapping {address:x}+{length:x}");
        }
        var vma = new VmAreaStruct(address, address + length, write);
        mm.Mmap.Add(vma);
        return vma;
    }
}
