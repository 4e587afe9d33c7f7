namespace Linux;

/// <summary>mm/swapfile.c: struct swap_info_struct, one swap device.</summary>
public sealed class SwapInfoStruct(long pages)
{
    /// <summary>Slots on the device; slot 0 holds the swap header and is never handed out.</summary>
    public long Pages { get; } = pages;

    /// <summary>SWAP_MAP_MAX: the highest use count a slot can hold.</summary>
    public const byte SWAP_MAP_MAX = 0x3e;

    /// <summary>swap_map: use count of each slot (0 = free), a byte per slot as in Linux.</summary>
    public byte[] SwapMap { get; } = new byte[pages];

    /// <summary>Where the next slot search starts (the cluster cursor).</summary>
    public ulong ClusterNext { get; set; } = 1;

    /// <summary>inuse_pages: slots with a non-zero count.</summary>
    public long InusePages { get; set; }
}

// mm/swapfile.c: allocating and freeing swap slots.
public sealed partial class Kernel
{
    /// <summary>The swap device (one, type 0), when the kernel has one.</summary>
    public SwapInfoStruct? SwapInfo { get; private set; }

    /// <summary>sys_swapon(): uses the kernel's swap device.</summary>
    [Port("mm/swapfile.c", "sys_swapon")]
    public void SysSwapon(long pages)
    {
        if (SwapDevice is null)
        {
            throw new InvalidOperationException($"{Name}: no swap device");
        }
        SwapInfo = new SwapInfoStruct(pages);
    }

    /// <summary>
    /// get_swap_page(): the next free slot after the cursor, so that pages swapped out together
    /// get consecutive slots and are written with one sequential request.
    /// </summary>
    [Port("mm/swapfile.c", "get_swap_page")]
    public SwpEntry? GetSwapPage()
    {
        var si = SwapInfo;
        if (si is null || si.InusePages >= si.Pages - 1)
        {
            return null;
        }
        ulong offset = si.ClusterNext;
        while (si.SwapMap[offset] != 0)
        {
            offset = offset + 1 >= (ulong)si.Pages ? 1 : offset + 1;
        }
        si.SwapMap[offset] = 1;
        si.InusePages++;
        si.ClusterNext = offset + 1 >= (ulong)si.Pages ? 1 : offset + 1;
        return new SwpEntry(0, offset);
    }

    /// <summary>swap_duplicate(): one more reference to the slot (a PTE as well as the swap cache).</summary>
    [Port("mm/swapfile.c", "swap_duplicate")]
    public void SwapDuplicate(SwpEntry entry)
    {
        var map = SwapInfo!.SwapMap;
        if (map[entry.Offset] is 0 or SwapInfoStruct.SWAP_MAP_MAX)
        {
            throw new InvalidOperationException($"{Name}: swap_duplicate of {entry} with count {map[entry.Offset]}");
        }
        map[entry.Offset]++;
    }

    /// <summary>swap_free(): drops a reference; the slot is free at zero.</summary>
    [Port("mm/swapfile.c", "swap_free")]
    public void SwapFree(SwpEntry entry)
    {
        var si = SwapInfo!;
        int count = si.SwapMap[entry.Offset];
        if (count == 0)
        {
            throw new InvalidOperationException($"{Name}: swap_free of unused {entry}");
        }
        si.SwapMap[entry.Offset] = (byte)(count - 1);
        if (count == 1)
        {
            si.InusePages--;
            SwapDevice!.WriteContent((long)entry.Offset, null);
        }
    }
}
