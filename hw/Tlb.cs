namespace Hw;

/// <summary>
/// A CPU's translation cache: which linear pages translate without a walk. The frame a page
/// translates to is not kept, because nothing reads it: a hit only spares the walk, and the
/// model's user stores carry no data. Unbounded, like the dictionary it replaces (the model
/// charges nothing for a walk, so only correctness depends on what is cached), and flushed in
/// constant time: an entry counts only if it was filled since the last flush, which the KVM
/// MMU notifier does once per reclaimed page.
/// </summary>
/// <remarks>
/// An open-addressing table of 8-byte slots with linear probing: a slot holds the page's 36-bit
/// canonical page number and the 28-bit generation it was filled in. <see cref="Remove"/> shifts
/// the entries behind the removed one back so that no probe chain has a hole. A run whose fault
/// threads store all over a resident array keeps a quarter of a million pages per CPU here, so
/// the slot size is what decides how many lookups hit the host's caches.
/// </remarks>
public sealed class Tlb
{
    private const ulong Fibonacci = 0x9E37_79B9_7F4A_7C15UL;
    private const int GenerationBits = 28;
    private const ulong GenerationMask = (1UL << GenerationBits) - 1;
    private const int MinSlots = 256;

    private ulong[] _slots = new ulong[MinSlots];
    private ulong _generation = 1;
    private int _shift = 64 - 8;

    /// <summary>Pages cached since the last flush.</summary>
    public int Count { get; private set; }

    public bool Contains(ulong vpn)
    {
        ulong key = Key(vpn);
        var slots = _slots;
        int mask = slots.Length - 1;
        for (int i = Home(key); (slots[i] & GenerationMask) == _generation; i = (i + 1) & mask)
        {
            if (slots[i] >> GenerationBits == key)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Caches <paramref name="vpn"/> as translating.</summary>
    public void Add(ulong vpn)
    {
        if ((Count + 1) * 2 > _slots.Length)
        {
            Grow();
        }
        Insert(Key(vpn));
    }

    /// <summary>INVLPG: drops one page.</summary>
    public void Remove(ulong vpn)
    {
        ulong key = Key(vpn);
        var slots = _slots;
        int mask = slots.Length - 1;
        int i = Home(key);
        for (; ; i = (i + 1) & mask)
        {
            if ((slots[i] & GenerationMask) != _generation)
            {
                return;
            }
            if (slots[i] >> GenerationBits == key)
            {
                break;
            }
        }
        // Backward shift: move later entries of the chain into the hole when their home allows it.
        int hole = i;
        for (int j = (hole + 1) & mask; (slots[j] & GenerationMask) == _generation; j = (j + 1) & mask)
        {
            int home = Home(slots[j] >> GenerationBits);
            bool movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
            if (movable)
            {
                slots[hole] = slots[j];
                hole = j;
            }
        }
        slots[hole] = 0;
        Count--;
    }

    /// <summary>Drops every page. A table that grew far beyond what it held is given back, so that lookups stay in cache.</summary>
    public void Flush()
    {
        if (_slots.Length > MinSlots && Count * 8 < _slots.Length)
        {
            int slots = (int)Math.Max(MinSlots, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Count * 4));
            Count = 0;
            Resize(slots);
            return;
        }
        Count = 0;
        if (++_generation > GenerationMask)
        {
            Array.Clear(_slots);
            _generation = 1;
        }
    }

    /// <summary>The page number without the sign extension of a canonical address (address bits 47 to 63 agree).</summary>
    private static ulong Key(ulong vpn)
    {
        ulong extension = vpn >> 35; // address bits 47 to 63
        if (extension != 0 && extension != (1UL << 17) - 1)
        {
            throw new ArgumentOutOfRangeException(nameof(vpn), $"page {vpn:x} is not of a canonical linear address");
        }
        return vpn & ((1UL << 36) - 1);
    }

    private int Home(ulong key) => (int)((key * Fibonacci) >> _shift);

    private void Insert(ulong key)
    {
        var slots = _slots;
        int mask = slots.Length - 1;
        int i = Home(key);
        for (; (slots[i] & GenerationMask) == _generation; i = (i + 1) & mask)
        {
            if (slots[i] >> GenerationBits == key)
            {
                return;
            }
        }
        slots[i] = (key << GenerationBits) | _generation;
        Count++;
    }

    private void Grow() => Resize(_slots.Length * 2);

    /// <summary>A fresh table of <paramref name="slots"/> slots with the current entries in it.</summary>
    private void Resize(int slots)
    {
        var old = _slots;
        ulong generation = _generation;
        _slots = new ulong[slots];
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)slots);
        _generation = 1;
        int live = Count;
        Count = 0;
        if (live == 0)
        {
            return;
        }
        foreach (ulong slot in old)
        {
            if ((slot & GenerationMask) == generation)
            {
                Insert(slot >> GenerationBits);
            }
        }
    }
}
