namespace Linux;

/// <summary>mm/swapfile.c: struct swap_info_struct, one swap device.</summary>
public sealed class SwapInfoStruct(long pages)
{
    /// <summary>Slots on the device; slot 0 holds the swap header and is never handed out.</summary>
    public long Pages { get; } = pages;

    /// <summary>swap_map: use count of each slot (0 = free).</summary>
    public Dictionary<ulong, int> SwapMap { get; } = [];

    /// <summary>Where the next slot search starts (the cluster cursor).</summary>
    public ulong ClusterNext { get; set; } = 1;

    public long InusePages => SwapMap.Count;
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
        while (si.SwapMap.ContainsKey(offset))
        {
            offset = offset + 1 >= (ulong)si.Pages ? 1 : offset + 1;
        }
        si.SwapMap[offset] = 1;
        si.ClusterNext = offset + 1 >= (ulong)si.Pages ? 1 : offset + 1;
        return new SwpEntry(0, offset);
    }

    /// <summary>swap_duplicate(): one more reference to the slot (a PTE as well as the swap cache).</summary>
    [Port("mm/swapfile.c", "swap_duplicate")]
    public void SwapDuplicate(SwpEntry entry) => SwapInfo!.SwapMap[entry.Offset]++;

    /// <summary>swap_free(): drops a reference; the slot is free at zero.</summary>
    [Port("mm/swapfile.c", "swap_free")]
    public void SwapFree(SwpEntry entry)
    {
        var map = SwapInfo!.SwapMap;
        if (!map.TryGetValue(entry.Offset, out int count))
        {
            throw new InvalidOperationException($"{Name}: swap_free of unused {entry}");
        }
        if (count <= 1)
        {
            map.Remove(entry.Offset);
            SwapDevice!.WriteContent((long)entry.Offset, null);
        }
        else
        {
            map[entry.Offset] = count - 1;
        }
    }
}
