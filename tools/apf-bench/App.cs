using KvmApf.Tracing;
using KvmApf.Vmm;

namespace KvmApf.Bench;

/// <summary>Runs one simulation; <see cref="BenchRunner.Run(BenchConfig, IProgress{double}?, RunOptions)"/> in the program, a stand-in in tests.</summary>
public delegate BenchResult BenchRun(BenchConfig config, IProgress<double>? progress, RunOptions options);

/// <summary>
/// apf-bench's commands (bench-contract.md). Exit codes: 0 done, 1 the simulation failed, 2 bad input
/// (one line on <c>stderr</c>, no partial output file). With <c>--json -</c> the JSON is all that goes to
/// <c>stdout</c>. <paramref name="interactive"/>: both outputs are a terminal, so progress is shown by default.
/// <paramref name="apfSupported"/>: the build has the series; without it the default job runs async PF off
/// only, beside the slides' "without" block, and <c>compare</c> is refused.
/// </summary>
public sealed class App(TextWriter stdout, TextWriter stderr, BenchRun runner, bool interactive, bool apfSupported = true)
{
    public const int ExitOk = 0;
    public const int ExitFailed = 1;
    public const int ExitBadInput = 2;

    public int Main(IReadOnlyList<string> args)
    {
        try
        {
            Invocation inv = CommandLine.Parse(args);
            if (inv.Command == Command.Help)
            {
                stdout.Write(CommandLine.Usage);
                return ExitOk;
            }
            if (inv.Config.Validate() is { } problem)
            {
                throw BadInputException.For(problem.Option, problem.Message);
            }
            if (inv.JsonPath is { } path && path != "-")
            {
                OutputFile.CheckWritable(path);
            }
            if (inv.TracePath is { } trace)
            {
                OutputFile.CheckWritable(trace, "--trace");
            }
            if (inv.TimelinePath is { } timeline)
            {
                OutputFile.CheckWritable(timeline, "--timeline");
            }
            CheckDistinctOutputs(inv);
            using var observers = new Observers(inv);
            int code = inv.Command == Command.Run ? RunOne(inv) : RunOffAndOn(inv);
            observers.Finish();
            return code;
        }
        catch (BadInputException e)
        {
            stderr.WriteLine($"apf-bench: {e.Message}");
            return ExitBadInput;
        }
        catch (NotImplementedException e)
        {
            stderr.WriteLine($"apf-bench: the simulation is not complete: {OneLine(e.Message)}");
            return ExitFailed;
        }
        catch (SimulationFailedException e)
        {
            stderr.WriteLine($"apf-bench: the simulation failed: {OneLine(e.Message)}");
            return ExitFailed;
        }
    }

    /// <summary>Two options that name one file would each replace what the other wrote.</summary>
    private static void CheckDistinctOutputs(Invocation inv)
    {
        var outputs = new List<(string Option, string Path)>();
        if (inv.JsonPath is { } json && json != "-")
        {
            outputs.Add(("--json", json));
        }
        if (inv.TracePath is { } trace)
        {
            outputs.Add(("--trace", trace));
        }
        if (inv.TimelinePath is { } timeline)
        {
            outputs.Add(("--timeline", timeline));
        }
        for (int i = 0; i < outputs.Count; i++)
        {
            for (int j = i + 1; j < outputs.Count; j++)
            {
                if (OutputFile.SameFile(outputs[j].Path, outputs[i].Path, outputs[j].Option))
                {
                    throw BadInputException.For(outputs[j].Option, $"'{outputs[j].Path}' is also the {outputs[i].Option} file");
                }
            }
        }
    }

    private int RunOne(Invocation inv)
    {
        BenchResult result = Simulate(inv, inv.Config, "run");
        if (inv.JsonPath != "-")
        {
            TextReport.Run(stdout, result);
        }
        Emit(inv, () => JsonReport.Run(result));
        return ExitOk;
    }

    /// <summary>The default job and <c>compare</c>: the same configuration and seed with async PF off, then on.</summary>
    private int RunOffAndOn(Invocation inv)
    {
        if (!apfSupported)
        {
            return RunBaselineBesideSlides(inv);
        }
        bool text = inv.JsonPath != "-";
        BenchResult off = Simulate(inv, inv.Config with { Apf = false }, "async PF off (1/2)");
        if (text)
        {
            TextReport.Run(stdout, off);
            stdout.WriteLine();
        }
        BenchResult on = Simulate(inv, inv.Config with { Apf = true }, "async PF on (2/2)");
        if (text)
        {
            TextReport.Run(stdout, on);
            stdout.WriteLine();
            TextReport.Compare(stdout, off, on);
        }
        Emit(inv, () => JsonReport.Compare(off, on));
        return ExitOk;
    }

    /// <summary>Before the series: the default job is the "without async pf" run beside the slides' block.</summary>
    private int RunBaselineBesideSlides(Invocation inv)
    {
        if (inv.Command == Command.Compare)
        {
            throw new BadInputException("compare: needs async PF, which comes with the series (patches 2-12) and is not in this build");
        }
        BenchResult off = Simulate(inv, inv.Config with { Apf = false }, "async PF off");
        if (inv.JsonPath != "-")
        {
            TextReport.Run(stdout, off);
            stdout.WriteLine();
            TextReport.BesideSlides(stdout, off);
        }
        Emit(inv, () => JsonReport.Run(off));
        return ExitOk;
    }

    private BenchResult Simulate(Invocation inv, BenchConfig config, string label)
    {
        bool show = inv.Progress ?? (interactive && inv.JsonPath != "-");
        ConsoleProgress? progress = show ? new ConsoleProgress(stderr, label) : null;
        try
        {
            return runner(config, progress, new RunOptions { Pace = inv.Pace });
        }
        catch (NotSupportedException e)
        {
            // The async PF series may not be in yet: then "on" is the option at fault.
            throw config.Apf
                ? BadInputException.For("--apf", $"'on' is not supported by this build: {OneLine(e.Message)}")
                : new BadInputException($"not supported by this build: {OneLine(e.Message)}");
        }
        catch (Exception e) when (e is not (BadInputException or NotImplementedException))
        {
            // Exit code 1 of the contract: one line, not a stack trace (the message says where it stopped).
            throw new SimulationFailedException($"{label}: {e.GetType().Name}: {e.Message}", e);
        }
        finally
        {
            progress?.Clear();
        }
    }

    /// <summary>The runner threw: the run failed (exit code 1), whatever the cause.</summary>
    private sealed class SimulationFailedException(string message, Exception inner) : Exception(message, inner);

    private void Emit(Invocation inv, Func<byte[]> json)
    {
        if (inv.JsonPath == "-")
        {
            stdout.Write(System.Text.Encoding.UTF8.GetString(json()));
            stdout.Flush();
        }
        else if (inv.JsonPath is { } path)
        {
            OutputFile.WriteAtomically(path, json());
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>
    /// What watches the runs through their tracepoints: the <c>--trace</c> session (started first,
    /// so that it is on before anything else listens) and the <c>--timeline</c> listener. Their files
    /// appear on <see cref="Finish"/>; without it (a failed run) none is left.
    /// </summary>
    private sealed class Observers(Invocation inv) : IDisposable
    {
        private readonly TraceCapture? _trace = inv.TracePath is { } path ? TraceCapture.Start(path) : null;
        private readonly TimelineRecorder? _timeline = inv.TimelinePath is { } path ? new TimelineRecorder(path) : null;

        public void Finish()
        {
            _timeline?.Finish();
            _trace?.Finish();
        }

        public void Dispose()
        {
            _timeline?.Dispose();
            _trace?.Dispose();
        }
    }
}
