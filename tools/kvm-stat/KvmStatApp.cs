using System.Diagnostics;
using System.Globalization;
using KvmApf.Tracing;

namespace KvmApf.KvmStat;

/// <summary>
/// kvm-stat's command line. Exit codes: 0 done, 1 the trace could not be read, 2 bad input (one
/// line on standard error). With <c>--json -</c> the JSON is all that goes to standard output.
/// </summary>
public sealed class KvmStatApp(TextWriter stdout, TextWriter stderr)
{
    public const string Usage = """
        usage: kvm-stat FILE.nettrace [options]     statistics of the run(s) a trace file holds
               kvm-stat --pid PID [options]         attach to a running apf-bench over EventPipe; a view every
                                                    --interval seconds, the report when the process exits or on Ctrl+C
        options:
          --json FILE|-        also write the report as JSON (- : standard output, and nothing else goes there)
          --run ID             the run to report (default: the last run with a measured interval)
          --all                the whole trace instead of bm's measured interval (vmm_measure_begin to _end)
          --interval SECONDS   live view period, wall-clock seconds (1)
        Exit status: 0 done, 1 the trace could not be read, 2 bad input.

        """;

    private sealed record Options(string? File, int? Pid, string? Json, long? Run, bool All, double Interval);

    public int Main(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        Options o;
        try
        {
            if (args.Any(a => a is "--help" or "-h"))
            {
                stdout.Write(Usage);
                return 0;
            }
            o = Parse(args);
        }
        catch (Exception e) when (e is FormatException or BadInputException)
        {
            stderr.WriteLine($"kvm-stat: {e.Message}");
            return 2;
        }
        var stats = new TraceStats();
        try
        {
            if (o.File is { } file)
            {
                TraceInput.ReadFile(file, stats.Add);
            }
            else
            {
                Live(o, stats);
            }
        }
        catch (Microsoft.Diagnostics.NETCore.Client.ServerNotAvailableException e) when (o.File is null)
        {
            // The process is not a .NET process, or its diagnostics are off: the --pid given is wrong. The
            // first sentence says which; the rest is the client's advice on containers and TMPDIR.
            string first = e.Message.ReplaceLineEndings(" ").Split(". ", 2)[0].TrimEnd('.');
            stderr.WriteLine($"kvm-stat: --pid: cannot attach to process {o.Pid}: {first}");
            return 2;
        }
        catch (FormatException e) when (o.File is { } f)
        {
            // TraceEvent's parser: the file ends before the stream does, or is not EventPipe's format at all.
            stderr.WriteLine($"kvm-stat: cannot read '{f}': not a complete .nettrace (truncated, empty, or another format): {e.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException
            or Microsoft.Diagnostics.NETCore.Client.ServerNotAvailableException or Microsoft.Diagnostics.NETCore.Client.ServerErrorException)
        {
            stderr.WriteLine($"kvm-stat: {(o.File is { } f ? $"cannot read '{f}'" : $"cannot trace process {o.Pid}")}: {e.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
        stats.Finish();
        var run = stats.For(o.Run, o.All);
        if (run is null)
        {
            stderr.WriteLine(o.Run is { } id ? $"kvm-stat: --run: the trace has no run {id}" : "kvm-stat: the trace holds no kvm-apf events");
            return o.Run is null ? 1 : 2;
        }
        if (o.Json != "-")
        {
            StatReport.Text(stdout, run, stats.Runs);
        }
        if (o.Json is { } json)
        {
            byte[] bytes = StatReport.Json(run);
            if (json == "-")
            {
                stdout.Write(System.Text.Encoding.UTF8.GetString(bytes));
            }
            else
            {
                try
                {
                    OutputFile.WriteAtomically(json, bytes);
                }
                catch (BadInputException e)
                {
                    stderr.WriteLine($"kvm-stat: {e.Message}");
                    return 2;
                }
            }
        }
        return 0;
    }

    private void Live(Options o, TraceStats stats)
    {
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var wall = Stopwatch.StartNew();
            double nextView = o.Interval;
            var previous = new Dictionary<string, long>(StringComparer.Ordinal);
            long previousNs = 0;
            TraceInput.Attach(o.Pid!.Value, r =>
            {
                stats.Add(r);
                if (o.Json != "-" && wall.Elapsed.TotalSeconds >= nextView && stats.For(null, wholeTrace: true) is { } run)
                {
                    nextView = wall.Elapsed.TotalSeconds + o.Interval;
                    StatReport.Live(stdout, run, previous, run.LastNs, (run.LastNs - previousNs) / 1e9);
                    previous = run.Counts.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
                    previousNs = run.LastNs;
                }
            }, stop.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static bool ProcessExists(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static Options Parse(IReadOnlyList<string> args)
    {
        var o = new Options(null, null, null, null, false, 1);
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[++i]
                : throw new FormatException($"{a}: missing value");
            o = a switch
            {
                "--json" => o with { Json = Value() },
                "--run" => o with { Run = long.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out long r) ? r : throw new FormatException("--run: not a run id") },
                "--pid" => o with { Pid = int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p > 0 ? p : throw new FormatException("--pid: not a process id") },
                "--interval" => o with { Interval = double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s > 0 && double.IsFinite(s) ? s : throw new FormatException("--interval: not a positive number of seconds") },
                "--all" => o with { All = true },
                _ when a.StartsWith('-') => throw new FormatException($"{a}: unknown option (see --help)"),
                _ when o.File is null => o with { File = a },
                _ => throw new FormatException($"{a}: one trace file only"),
            };
        }
        if ((o.File is null) == (o.Pid is null))
        {
            throw new FormatException("give a trace file or --pid PID (see --help)");
        }
        if (o.File is { } file && !File.Exists(file))
        {
            throw new FormatException(Directory.Exists(file) ? $"{file}: is a directory" : $"{file}: no such file");
        }
        if (o.Pid is { } pid && !ProcessExists(pid))
        {
            throw new FormatException($"--pid: no process {pid}");
        }
        if (o.Json is { } json && json != "-")
        {
            OutputFile.CheckWritable(json);
            if (o.File is { } input && OutputFile.SameFile(json, input, "--json"))
            {
                throw BadInputException.For("--json", $"'{json}' is the trace file");
            }
        }
        return o;
    }
}
