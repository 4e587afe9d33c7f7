using Hw;

namespace Linux;

// mm/swap_state.c: the swap cache.
public sealed partial class Kernel
{
    /// <summary>Slots per node of <see cref="_swapperSpace"/>.</summary>
    private const int SwapperSpaceNode = 1024;

    /// <summary>swapper_space: swap-cache pages by slot, a radix tree of one level of nodes allocated as slots are used.</summary>
    private Page?[]?[] _swapperSpace = [];

    /// <summary>Pages in the swap cache.</summary>
    public int SwapCachePages { get; private set; }

    /// <summary>add_to_swap(): gives an anonymous page a slot and puts it in the swap cache.</summary>
    [Port("mm/swap_state.c", "add_to_swap")]
    public bool AddToSwap(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        if (GetSwapPage() is not { } entry)
        {
            return false;
        }
        AddToSwapCache(page, entry);
        page.Set(PageFlags.PG_dirty); // a fresh slot holds nothing yet
        return true;
    }

    /// <summary>add_to_swap_cache().</summary>
    [Port("mm/swap_state.c", "add_to_swap_cache")]
    public void AddToSwapCache(Page page, SwpEntry entry)
    {
        ArgumentNullException.ThrowIfNull(page);
        page.Private = entry;
        page.Set(PageFlags.PG_swapcache | PageFlags.PG_swapbacked);
        int nodes = (int)((SwapInfo!.Pages + SwapperSpaceNode - 1) / SwapperSpaceNode);
        if (_swapperSpace.Length != nodes)
        {
            Array.Resize(ref _swapperSpace, nodes);
        }
        var node = _swapperSpace[entry.Offset / SwapperSpaceNode] ??= new Page?[SwapperSpaceNode];
        ref var slot = ref node[entry.Offset % SwapperSpaceNode];
        if (slot is not null)
        {
            throw new InvalidOperationException($"{Name}: {entry} is already in the swap cache");
        }
        slot = page;
        SwapCachePages++;
    }

    /// <summary>delete_from_swap_cache(): removes the page and drops the cache's reference to the slot.</summary>
    [Port("mm/swap_state.c", "delete_from_swap_cache")]
    public void DeleteFromSwapCache(Page page)
    {
        ArgumentNullException.ThrowIfNull(page);
        var entry = page.Private;
        if (_swapperSpace[entry.Offset / SwapperSpaceNode] is { } node && ReferenceEquals(node[entry.Offset % SwapperSpaceNode], page))
        {
            node[entry.Offset % SwapperSpaceNode] = null;
            SwapCachePages--;
        }
        page.Clear(PageFlags.PG_swapcache);
        page.Private = default;
        SwapFree(entry);
    }

    /// <summary>lookup_swap_cache().</summary>
    [Port("mm/swap_state.c", "lookup_swap_cache")]
    public Page? LookupSwapCache(SwpEntry entry) =>
        entry.Offset / SwapperSpaceNode < (ulong)_swapperSpace.Length && _swapperSpace[entry.Offset / SwapperSpaceNode] is { } node
            ? node[entry.Offset % SwapperSpaceNode]
            : null;

    /// <summary>
    /// read_swap_cache_async(): the swap-cache page for <paramref name="entry"/>, reading it from
    /// the device if it is not cached. A page being read is returned locked; the read's
    /// completion unlocks it. Sleeps only for the memory cgroup charge.
    /// </summary>
    [Port("mm/swap_state.c", "read_swap_cache_async")]
    public async SimTask<Page?> ReadSwapCacheAsync(SwpEntry entry, MemCgroup? mem)
    {
        MightSleep();
        while (true)
        {
            if (LookupSwapCache(entry) is { } cached)
            {
                return cached;
            }
            var page = AllocPage();
            if (page is null)
            {
                return null;
            }
            if (mem is not null)
            {
                await MemCgroupChargeCommon(page, mem);
            }
            if (LookupSwapCache(entry) is not null)
            {
                // Raced with another reader while charging.
                MemCgroupUnchargePage(page);
                __FreePage(page);
                continue;
            }
            page.Set(PageFlags.PG_locked);
            SwapDuplicate(entry);
            AddToSwapCache(page, entry);
            LruCacheAddLru(page);
            SwapReadpage(page);
            return page;
        }
    }

    /// <summary>swapin_readahead(): 2.6.32 reads a cluster of 2^page_cluster slots around the entry;
    /// the port reads the one slot (Documentation/deviations.md).</summary>
    [Port("mm/swap_state.c", "swapin_readahead")]
    public SimTask<Page?> SwapinReadahead(SwpEntry entry, MemCgroup? mem) => ReadSwapCacheAsync(entry, mem);
}
