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

    private ulong[] _vpn = new ulong[256];
    private ulong[] _hpa = new ulong[256];
    private uint[] _filled = new uint[256];
    private uint _generation = 1;
    private int _shift = 64 - 8;

    /// <summary>Translations cached since the last flush.</summary>
    public int Count { get; private set; }

    public bool TryGet(ulong vpn, out ulong hpa)
    {
        int mask = _vpn.Length - 1;
        for (int i = Home(vpn); _filled[i] == _generation; i = (i + 1) & mask)
        {
            if (_vpn[i] == vpn)
            {
                hpa = _hpa[i];
                return true;
            }
        }
        hpa = 0;
        return false;
    }

    public bool Contains(ulong vpn) => TryGet(vpn, out _);

    public void Set(ulong vpn, ulong hpa)
    {
        if ((Count + 1) * 2 > _vpn.Length)
        {
            Grow();
        }
        int mask = _vpn.Length - 1;
        int i = Home(vpn);
        for (; _filled[i] == _generation; i = (i + 1) & mask)
        {
            if (_vpn[i] == vpn)
            {
                _hpa[i] = hpa;
                return;
            }
        }
        _vpn[i] = vpn;
        _hpa[i] = hpa;
        _filled[i] = _generation;
        Count++;
    }

    /// <summary>INVLPG: drops one translation.</summary>
    public void Remove(ulong vpn)
    {
        int mask = _vpn.Length - 1;
        int i = Home(vpn);
        for (; ; i = (i + 1) & mask)
        {
            if (_filled[i] != _generation)
            {
                return;
            }
            if (_vpn[i] == vpn)
            {
                break;
            }
        }
        // Backward shift: move later entries of the chain into the hole when their home allows it.
        int hole = i;
        for (int j = (hole + 1) & mask; _filled[j] == _generation; j = (j + 1) & mask)
        {
            int home = Home(_vpn[j]);
            bool movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
            if (movable)
            {
                _vpn[hole] = _vpn[j];
                _hpa[hole] = _hpa[j];
                hole = j;
            }
        }
        _filled[hole] = 0;
        Count--;
    }

    /// <summary>Drops every translation.</summary>
    public void Flush()
    {
        Count = 0;
        if (++_generation == 0)
        {
            Array.Clear(_filled);
            _generation = 1;
        }
    }

    private int Home(ulong vpn) => (int)((vpn * Fibonacci) >> _shift);

    private void Grow()
    {
        var vpns = _vpn;
        var hpas = _hpa;
        var filled = _filled;
        uint generation = _generation;
        _vpn = new ulong[vpns.Length * 2];
        _hpa = new ulong[vpns.Length * 2];
        _filled = new uint[vpns.Length * 2];
        _shift--;
        _generation = 1;
        Count = 0;
        for (int i = 0; i < vpns.Length; i++)
        {
            if (filled[i] == generation)
            {
                Set(vpns[i], hpas[i]);
            }
        }
    }
}
