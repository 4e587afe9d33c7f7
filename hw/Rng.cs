using System.Text;

namespace Hw;

/// <summary>
/// The run's random source: SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom
/// number generators", OOPSLA 2014). Seeded once per run; each component gets its own stream
/// through <see cref="Split"/>, keyed by the FNV-1a hash of its UTF-8 name (never
/// <c>GetHashCode</c>, which .NET randomizes per process), so adding a component does not move
/// another's sequence.
/// </summary>
public sealed class Rng(ulong seed)
{
    private ulong _state = seed;

    /// <summary>The seed this stream started from.</summary>
    public ulong Seed { get; } = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong NextU64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>), without modulo bias (Lemire's method).</summary>
    public ulong NextBelow(ulong bound)
    {
        ArgumentOutOfRangeException.ThrowIfZero(bound);
        UInt128 m = (UInt128)NextU64() * bound;
        ulong low = (ulong)m;
        if (low < bound)
        {
            ulong threshold = (0 - bound) % bound;
            while (low < threshold)
            {
                m = (UInt128)NextU64() * bound;
                low = (ulong)m;
            }
        }
        return (ulong)(m >> 64);
    }

    /// <summary>A uniform integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public long NextInRange(long min, long max)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, min);
        ulong span = (ulong)(max - min);
        // The full range has 2^64 values, one more than a bound can say: every draw is in it.
        ulong offset = span == ulong.MaxValue ? NextU64() : NextBelow(span + 1);
        return unchecked(min + (long)offset);
    }

    /// <summary>The stream of the component <paramref name="name"/>, derived from this stream's seed only.</summary>
    public Rng Split(string name) => new(Mix(Seed ^ Fnv1a64(name)));

    /// <summary>64-bit FNV-1a of the UTF-8 bytes of <paramref name="text"/>.</summary>
    public static ulong Fnv1a64(string text)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            hash ^= b;
            hash *= 0x100000001B3UL;
        }
        return hash;
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
