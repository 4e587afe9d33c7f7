using System.Runtime.CompilerServices;

namespace Hw;

/// <summary>
/// A CPU's translation cache: which linear pages translate without a walk. The frame a page
/// translates to is not kept, because nothing reads it: a hit only spares the walk, and the
/// model's user stores carry no data. Unbounded, like the dictionary it once was (the model
/// charges nothing for a walk, so only correctness depends on what is cached), and flushed in
/// constant time: an entry counts only if it was filled since the last flush, which the KVM
/// MMU notifier does once per reclaimed page.
/// </summary>
/// <remarks>
/// A bitmap of pages, one bit per page, in chunks of 2^15 pages (128 MiB of address space),
/// reached through a three-level directory by the page's 36-bit canonical number. Each 64-bit
/// word of a chunk carries the generation it was filled in; a word of an older generation reads
/// as empty, so a flush only moves the generation on. A run whose fault threads store all over a
/// resident 1 GiB array looks up a quarter of a million pages per CPU: as bits they take 32 KiB
/// (with the generations, 64 KiB), which stays in the host's caches, where a hash table of the
/// same pages did not.
/// </remarks>
public sealed class Tlb
{
    private const int ChunkBits = 15;
    private const int LevelBits = 7; // three levels of 128 entries above the chunks: 7 + 7 + 7 + 15 = 36 bits
    private const int LevelMask = (1 << LevelBits) - 1;
    private const int WordsPerChunk = (1 << ChunkBits) / 64;

    /// <summary>The directory, 1 KiB a level: bits 35-29 of the page number, then 28-22, then 21-15, then a chunk.</summary>
    private readonly Word[]?[]?[]?[] _top = new Word[]?[]?[]?[1 << LevelBits];

    /// <summary>Bumped by every flush; never wraps in practice (64 bits).</summary>
    private ulong _generation = 1;

    /// <summary>Pages cached since the last flush.</summary>
    public int Count { get; private set; }

    /// <summary>True if <paramref name="vpn"/> (a linear page number) is cached.</summary>
    public bool Contains(ulong vpn)
    {
        ulong key = Key(vpn);
        if (Count == 0)
        {
            return false; // flushed since anything was added: often so, with reclaim flushing every CPU per page
        }
        var chunk = _top[(int)(key >> (ChunkBits + (2 * LevelBits)))]?[(int)(key >> (ChunkBits + LevelBits)) & LevelMask]?[(int)(key >> ChunkBits) & LevelMask];
        if (chunk is null)
        {
            return false;
        }
        ref Word word = ref chunk[(int)(key >> 6) & (WordsPerChunk - 1)];
        return word.Generation == _generation && (word.Bits & (1UL << (int)(key & 63))) != 0;
    }

    /// <summary>Caches <paramref name="vpn"/> as translating.</summary>
    public void Add(ulong vpn)
    {
        ulong key = Key(vpn);
        ref Word word = ref WordOf(key, create: true);
        if (word.Generation != _generation)
        {
            word.Generation = _generation;
            word.Bits = 0;
        }
        ulong bit = 1UL << (int)(key & 63);
        if ((word.Bits & bit) == 0)
        {
            word.Bits |= bit;
            Count++;
        }
    }

    /// <summary>INVLPG: drops one page.</summary>
    public void Remove(ulong vpn)
    {
        ulong key = Key(vpn);
        ref Word word = ref WordOf(key, create: false);
        if (Unsafe.IsNullRef(ref word) || word.Generation != _generation)
        {
            return;
        }
        ulong bit = 1UL << (int)(key & 63);
        if ((word.Bits & bit) != 0)
        {
            word.Bits &= ~bit;
            Count--;
        }
    }

    /// <summary>Drops every page.</summary>
    public void Flush()
    {
        Count = 0;
        _generation++;
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

    /// <summary>The word that holds <paramref name="key"/>'s bit; a null reference when it has none and <paramref name="create"/> is false.</summary>
    private ref Word WordOf(ulong key, bool create)
    {
        ref var upper = ref _top[(int)(key >> (ChunkBits + (2 * LevelBits)))];
        if (upper is null)
        {
            if (!create)
            {
                return ref Unsafe.NullRef<Word>();
            }
            upper = new Word[]?[]?[1 << LevelBits];
        }
        ref var lower = ref upper[(int)(key >> (ChunkBits + LevelBits)) & LevelMask];
        if (lower is null)
        {
            if (!create)
            {
                return ref Unsafe.NullRef<Word>();
            }
            lower = new Word[]?[1 << LevelBits];
        }
        ref var chunk = ref lower[(int)(key >> ChunkBits) & LevelMask];
        if (chunk is null)
        {
            if (!create)
            {
                return ref Unsafe.NullRef<Word>();
            }
            chunk = new Word[WordsPerChunk];
        }
        return ref chunk[(int)(key >> 6) & (WordsPerChunk - 1)];
    }

    /// <summary>64 pages' bits and the generation they were filled in.</summary>
    private struct Word
    {
        public ulong Bits;
        public ulong Generation;
    }
}
