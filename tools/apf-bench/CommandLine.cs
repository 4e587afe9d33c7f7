using System.Globalization;
using KvmApf.Tracing;
using KvmApf.Vmm;

namespace KvmApf.Bench;

/// <summary>What apf-bench was asked to do.</summary>
public enum Command
{
    /// <summary>No arguments: the slides' configuration, async PF off and on, beside the slides.</summary>
    Default,
    Run,
    Compare,
    Help,
}

/// <summary>A parsed command line. <see cref="JsonPath"/> is null without <c>--json</c>, "-" for standard output;
/// <see cref="Progress"/> is null unless <c>--progress</c> or <c>--no-progress</c> was given.</summary>
public sealed record Invocation(Command Command, BenchConfig Config, string? JsonPath = null, bool? Progress = null)
{
    /// <summary><c>--trace FILE</c>: the run's events as a <c>.nettrace</c> (an in-process EventPipe session), or null.</summary>
    public string? TracePath { get; init; }

    /// <summary><c>--timeline FILE</c>: Chrome trace-event JSON of the run for Perfetto, or null.</summary>
    public string? TimelinePath { get; init; }

    /// <summary><c>--pace FACTOR</c>: simulated seconds per wall-clock second; 0 (the default) runs as fast as it can.</summary>
    public double Pace { get; init; }
}

/// <summary>The command line of bench-contract.md. Options take <c>--name VALUE</c> or <c>--name=VALUE</c>; the last one given wins,
/// except <c>--cost</c>, which adds up.</summary>
public static class CommandLine
{
    /// <summary>Parses <paramref name="args"/>; throws <see cref="BadInputException"/> naming the option at fault.
    /// The configuration is not validated here: see <see cref="BenchConfig.Validate"/>.</summary>
    public static Invocation Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Count == 0)
        {
            return new Invocation(Command.Default, new BenchConfig());
        }
        if (args.Any(a => a is "--help" or "-h"))
        {
            return new Invocation(Command.Help, new BenchConfig());
        }
        Command command = args[0] switch
        {
            "run" => Command.Run,
            "compare" => Command.Compare,
            _ when args[0].StartsWith('-') => throw BadInputException.For(args[0], "give a command first (apf-bench run|compare [options]; see --help)"),
            _ => throw BadInputException.For(args[0], "unknown command (run or compare; see --help)"),
        };
        var invocation = new Invocation(command, new BenchConfig());
        for (int i = 1; i < args.Count; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw BadInputException.For(arg, "unexpected argument (options start with --; see --help)");
            }
            int eq = arg.IndexOf('=', StringComparison.Ordinal);
            string name = eq < 0 ? arg : arg[..eq];
            string? inline = eq < 0 ? null : arg[(eq + 1)..];
            string Value(string meta)
            {
                if (inline != null)
                {
                    return inline;
                }
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw BadInputException.For(name, $"missing value ({meta})");
                }
                return args[++i];
            }
            bool Flag()
            {
                if (inline != null)
                {
                    throw BadInputException.For(name, "takes no value");
                }
                return true;
            }
            invocation = Apply(invocation, name, Value, Flag);
        }
        return invocation;
    }

    private static Invocation Apply(Invocation inv, string name, Func<string, string> value, Func<bool> flag)
    {
        BenchConfig c = inv.Config;
        try
        {
            return name switch
            {
                "--vcpus" => inv with { Config = c with { Vcpus = ParseInt(value("N")) } },
                "--guest-mem" => inv with { Config = c with { GuestMemBytes = Sizes.ParseSize(value("SIZE")) } },
                "--mem-limit" => inv with { Config = c with { MemLimitBytes = Sizes.ParseSize(value("SIZE")) } },
                "--fault-threads" => inv with { Config = c with { FaultThreads = ParseInt(value("N")) } },
                "--work-threads" => inv with { Config = c with { WorkThreads = ParseInt(value("N")) } },
                "--array" => inv with { Config = c with { ArrayBytes = Sizes.ParseSize(value("SIZE")) } },
                "--duration" => inv with { Config = c with { DurationNs = Sizes.ParseTime(value("TIME")) } },
                "--seed" => inv with { Config = c with { Seed = ParseSeed(value("N")) } },
                "--paging" => inv with { Config = c with { Paging = ParsePaging(value("tdp or shadow")) } },
                "--apf" => inv with { Config = c with { Apf = ParseOnOff(value("on or off")) } },
                "--abi" => inv with { Config = c with { Abi = ParseAbi(value("v3 or merged")) } },
                "--apf-per-vcpu" => inv with { Config = c with { ApfPerVcpu = ParseInt(value("N")) } },
                "--guest-preempt" => inv with { Config = c with { GuestPreempt = ParseOnOff(value("on or off")) } },
                "--guest-pv" => inv with { Config = c with { GuestPv = ParseOnOff(value("on or off")) } },
                "--apf-halt" => inv with { Config = c with { ApfHalt = ParseOnOff(value("on or off")) } },
                "--cost" => inv with { Config = c with { Costs = Costs.Apply(c.Costs, value("NAME=VALUE")) } },
                "--json" => inv with { JsonPath = ParsePath(value("FILE or -")) },
                "--trace" => inv with { TracePath = ParseFile(value("FILE")) },
                "--timeline" => inv with { TimelinePath = ParseFile(value("FILE")) },
                "--pace" => inv with { Pace = ParsePace(value("FACTOR")) },
                "--progress" => inv with { Progress = flag() },
                "--no-progress" => inv with { Progress = !flag() },
                _ => throw BadInputException.For(name, "unknown option (see --help)"),
            };
        }
        catch (FormatException e)
        {
            throw BadInputException.For(name, e.Message);
        }
    }

    private static int ParseInt(string text)
    {
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
        {
            return value;
        }
        bool digits = text.TrimStart('-').Length > 0 && text.TrimStart('-').All(char.IsAsciiDigit);
        throw new FormatException(digits ? $"'{text}' is out of range" : $"'{text}' is not an integer");
    }

    private static ulong ParseSeed(string text) =>
        ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed)
            ? seed
            : throw new FormatException($"'{text}' is not an unsigned 64-bit integer");

    private static PagingMode ParsePaging(string text) => text switch
    {
        "tdp" => PagingMode.Tdp,
        "shadow" => PagingMode.Shadow,
        _ => throw new FormatException($"'{text}' is not tdp or shadow"),
    };

    private static bool ParseOnOff(string text) => text switch
    {
        "on" => true,
        "off" => false,
        _ => throw new FormatException($"'{text}' is not on or off"),
    };

    private static string ParseAbi(string text) => text is "v3" or "merged" ? text : throw new FormatException($"'{text}' is not v3 or merged");

    private static string ParseFile(string text) =>
        text.Length > 0 && text != "-" ? text : throw new FormatException("give a file name");

    private static double ParsePace(string text) =>
        double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double pace) && pace > 0 && double.IsFinite(pace)
            ? pace
            : throw new FormatException($"'{text}' is not a positive number");

    private static string ParsePath(string text) =>
        text.Length > 0 ? text : throw new FormatException("empty file name (give a file, or - for standard output)");

    /// <summary>The cost names, a few to a line.</summary>
    private static IEnumerable<string> CostNameLines() =>
        Costs.All.Select(e => e.Name).Chunk(5).Select(names => string.Join(", ", names));

    /// <summary>The text of <c>--help</c>.</summary>
    public static string Usage
    {
        get
        {
            var d = new BenchConfig();
            return $"""
                usage: apf-bench                      the slides' benchmark, async PF off then on, beside the slides' numbers
                       apf-bench run [options]        one run
                       apf-bench compare [options]    the same configuration and seed with async PF off, then on
                       apf-bench --help

                options of run and compare (compare ignores --apf):
                  --vcpus N               guest vCPUs, 1 to 1024 ({d.Vcpus})
                  --guest-mem SIZE        guest RAM, 128M to 4T ({Sizes.FormatSize(d.GuestMemBytes)})
                  --mem-limit SIZE        memory cgroup limit of the VMM process ({Sizes.FormatSize(d.MemLimitBytes)})
                  --fault-threads N       bm fault threads, 0 allowed ({d.FaultThreads})
                  --work-threads N        bm work threads, 0 allowed ({d.WorkThreads})
                  --array SIZE            the fault threads' shared array ({Sizes.FormatSize(d.ArrayBytes)})
                  --duration TIME         simulated time measured, at most 60000m ({Sizes.FormatTime(d.DurationNs)})
                  --seed N                the run's seed, unsigned 64-bit ({d.Seed})
                  --paging tdp|shadow     EPT or shadow paging (tdp)
                  --apf on|off            async page faults ({(d.Apf ? "on" : "off")})
                  --abi v3|merged         the async PF ABI: v3's MSR 0x4b564d00 and feature bit 3, or the merged 0x4b564d02 and bit 4 ({d.Abi})
                  --apf-per-vcpu N        outstanding async faults per vCPU before faults go synchronous, 1 to 4096 ({d.ApfPerVcpu})
                  --guest-preempt on|off  a preemptible guest kernel, which takes async PF in kernel mode too ({(d.GuestPreempt ? "on" : "off")})
                  --guest-pv on|off       a paravirtual guest that enables async PF; off is a non-PV guest ({(d.GuestPv ? "on" : "off")})
                  --apf-halt on|off       halt the vCPU for a fault the guest cannot be told of, instead of stalling it ({(d.ApfHalt ? "on" : "off")})
                  --cost NAME=VALUE       set a value of the cost model, repeatable; NAME is one of
                                          {string.Join(",\n                          ", CostNameLines())}
                  --json FILE|-           write the JSON (run: schema {JsonReport.RunSchema}, compare: {JsonReport.CompareSchema});
                                          - writes it to standard output, and nothing else goes there
                  --trace FILE            write the run's tracepoints to FILE (.nettrace; read it with kvm-stat)
                  --timeline FILE         write a timeline of vCPUs and guest tasks to FILE (Chrome trace-event JSON; open it in Perfetto)
                  --pace FACTOR           tie simulated time to wall time: FACTOR simulated seconds per second (1: real time), to watch
                                          a run with dotnet-counters or kvm-stat --pid; the results do not change
                  --progress              show progress on standard error (default: when both outputs are a terminal)
                  --no-progress           never show progress

                SIZE: an integer with K, M, G or T (or KiB, MiB, GiB, TiB), powers of 1024; a plain integer is bytes.
                TIME: an integer with ns, us, ms, s or m.
                Exit status: 0 done, 1 the simulation failed, 2 bad input.

                """;
        }
    }
}
