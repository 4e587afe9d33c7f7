using System.Globalization;

namespace KvmApf.EngineBench;

/// <summary>
/// engine-bench's command line: <c>[--events N] [--warmup N] [--json]</c>. Bad input is a
/// <see cref="FormatException"/> whose message names the option; the program prints it as one line
/// and exits with 2. The tests compile this file too (tests/Tests.csproj).
/// </summary>
internal sealed record EngineBenchOptions(long Events = 20_000_000, long Warmup = 2_000_000, bool Json = false, bool Help = false)
{
    public const string Usage = """
        usage: engine-bench [--events N] [--warmup N] [--json]
          --events N   events measured per case, 1 or more (20000000)
          --warmup N   events run before measuring, 0 or more (2000000)
          --json       print the figures as JSON instead of text
        Exit status: 0 done, 2 bad input.

        """;

    public static EngineBenchOptions Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var o = new EngineBenchOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string name = args[i];
            string Value() => i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[++i]
                : throw new FormatException($"{name}: missing value");
            o = name switch
            {
                "--json" => o with { Json = true },
                "--events" => o with { Events = Count(name, Value(), 1) },
                "--warmup" => o with { Warmup = Count(name, Value(), 0) },
                "--help" or "-h" => o with { Help = true },
                _ => throw new FormatException($"{name}: unknown option (see --help)"),
            };
        }
        return o;
    }

    private static long Count(string option, string text, long min) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n >= min
            ? n
            : throw new FormatException($"{option}: '{text}' is not a whole number of at least {min}");
}
