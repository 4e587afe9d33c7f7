using System.Globalization;

namespace KvmApf.Bench;

/// <summary>
/// SIZE and TIME values of the command line (bench-contract.md): a SIZE is an integer with an
/// optional binary suffix K, M, G, T or KiB, MiB, GiB, TiB (powers of 1024, any case); a TIME is
/// an integer with ns, us, ms, s or m. Parse errors are <see cref="FormatException"/> with a
/// message that quotes the value and says what is expected.
/// </summary>
public static class Sizes
{
    private static readonly (string Suffix, int Shift)[] SizeSuffixes =
    [
        ("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40),
    ];

    private static readonly (string Suffix, long Ns)[] TimeSuffixes =
    [
        ("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000),
    ];

    /// <summary>Bytes of a SIZE such as <c>2G</c>, <c>512MiB</c> or <c>4096</c>.</summary>
    public static long ParseSize(string text)
    {
        string notSize = $"'{text}' is not a size (use an integer with K, M, G or T)";
        (string digits, string suffix) = Split(text);
        int shift = -1;
        foreach ((string s, int sh) in SizeSuffixes)
        {
            if (suffix.Equals(s, StringComparison.OrdinalIgnoreCase))
            {
                shift = sh;
            }
        }
        if (digits.Length == 0 || shift < 0)
        {
            throw new FormatException(notSize);
        }
        return Scale(text, digits, 1L << shift, "bytes");
    }

    /// <summary>Nanoseconds of a TIME such as <c>60s</c>, <c>5ms</c> or <c>2m</c>; the unit is required.</summary>
    public static long ParseTime(string text)
    {
        (string digits, string suffix) = Split(text);
        foreach ((string s, long ns) in TimeSuffixes)
        {
            if (digits.Length > 0 && suffix == s)
            {
                return Scale(text, digits, ns, "ns");
            }
        }
        throw new FormatException($"'{text}' is not a time (use an integer with ns, us, ms, s or m)");
    }

    /// <summary>The shortest exact SIZE for <paramref name="bytes"/>: <c>2G</c>, <c>512M</c>, or plain bytes.</summary>
    public static string FormatSize(long bytes)
    {
        for (int i = 4; i >= 1; i--)
        {
            long unit = 1L << (10 * i);
            if (bytes != 0 && bytes % unit == 0)
            {
                return Invariant(bytes / unit) + "KMGT"[i - 1];
            }
        }
        return Invariant(bytes);
    }

    /// <summary>The shortest exact TIME for <paramref name="ns"/> in s, ms, us or ns: <c>60s</c>, <c>1500ms</c>.</summary>
    public static string FormatTime(long ns)
    {
        for (int i = 3; i >= 1; i--)
        {
            (string suffix, long unit) = TimeSuffixes[i];
            if (ns != 0 && ns % unit == 0)
            {
                return Invariant(ns / unit) + suffix;
            }
        }
        return Invariant(ns) + "ns";
    }

    private static (string Digits, string Suffix) Split(string text)
    {
        int i = 0;
        while (i < text.Length && char.IsAsciiDigit(text[i]))
        {
            i++;
        }
        return (text[..i], text[i..]);
    }

    private static long Scale(string text, string digits, long unit, string what)
    {
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long value) || value > long.MaxValue / unit)
        {
            throw new FormatException($"'{text}' is too large (at most 2^63-1 {what})");
        }
        return value * unit;
    }

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
