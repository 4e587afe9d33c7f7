namespace Hw;

/// <summary>
/// A CPU's translation cache: linear page number → host-physical frame address. Unbounded, like
/// the cache it replaces (the model charges nothing for a walk, so only correctness depends on
/// what is cached), and flushed in constant time: an entry counts only if it was filled since
/// the last flush, which the KVM MMU notifier does once per reclaimed page.
/// An open-addressing table with linear probing; <see cref="Remove"/> shifts the entries behind
/// the removed one back so that no probe chain has a hole.
/// </summary>
public sealed class Tlb
{
    private const ulong Fibonacci = 0x9E37_79B9_7F4A_7C15UL;

    private const int MinSlots = 256;

    private Entry[] _entries = new Entry[MinSlots];
    private uint _generation = 1;
    private int _shift = 64 - 8;

    /// <summary>Translations cached since the last flush.</summary>
    public int Count { get; private set; }

    public bool TryGet(ulong vpn, out ulong hpa)
    {
        var entries = _entries;
        int mask = entries.Length - 1;
        for (int i = Home(vpn); entries[i].Filled == _generation; i = (i + 1) & mask)
        {
            if (entries[i].Vpn == vpn)
            {
                hpa = entries[i].Hpa;
                return true;
            }
        }
        hpa = 0;
        return false;
    }

    public bool Contains(ulong vpn) => TryGet(vpn, out _);

    public void Set(ulong vpn, ulong hpa)
    {
        if ((Count + 1) * 2 > _entries.Length)
        {
            Grow();
        }
        var entries = _entries;
        int mask = entries.Length - 1;
        int i = Home(vpn);
        for (; entries[i].Filled == _generation; i = (i + 1) & mask)
        {
            if (entries[i].Vpn == vpn)
            {
                entries[i].Hpa = hpa;
                return;
            }
        }
        entries[i] = new Entry { Vpn = vpn, Hpa = hpa, Filled = _generation };
        Count++;
    }

    /// <summary>INVLPG: drops one translation.</summary>
    public void Remove(ulong vpn)
    {
        var entries = _entries;
        int mask = entries.Length - 1;
        int i = Home(vpn);
        for (; ; i = (i + 1) & mask)
        {
            if (entries[i].Filled != _generation)
            {
                return;
            }
            if (entries[i].Vpn == vpn)
            {
                break;
            }
        }
        // Backward shift: move later entries of the chain into the hole when their home allows it.
        int hole = i;
        for (int j = (hole + 1) & mask; entries[j].Filled == _generation; j = (j + 1) & mask)
        {
            int home = Home(entries[j].Vpn);
            bool movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
            if (movable)
            {
                entries[hole] = entries[j];
                hole = j;
            }
        }
        entries[hole].Filled = 0;
        Count--;
    }

    /// <summary>Drops every translation. A table that grew far beyond what it held is given back, so that lookups stay in cache.</summary>
    public void Flush()
    {
        if (_entries.Length > MinSlots && Count * 8 < _entries.Length)
        {
            int slots = (int)Math.Max(MinSlots, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Count * 4));
            _entries = new Entry[slots];
            _shift = 64 - System.Numerics.BitOperations.Log2((uint)slots);
            _generation = 1;
            Count = 0;
            return;
        }
        Count = 0;
        if (++_generation == 0)
        {
            Array.Clear(_entries);
            _generation = 1;
        }
    }

    private int Home(ulong vpn) => (int)((vpn * Fibonacci) >> _shift);

    private void Grow()
    {
        var old = _entries;
        uint generation = _generation;
        _entries = new Entry[old.Length * 2];
        _shift--;
        _generation = 1;
        Count = 0;
        foreach (var entry in old)
        {
            if (entry.Filled == generation)
            {
                Set(entry.Vpn, entry.Hpa);
            }
        }
    }

    /// <summary>One slot: filled in generation <see cref="Filled"/> (stale once the generation moves on).</summary>
    private struct Entry
    {
        public ulong Vpn;
        public ulong Hpa;
        public uint Filled;
    }
}
