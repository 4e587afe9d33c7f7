using System.Globalization;
using System.Text.Json;
using KvmApf.Tracing;
using static KvmApf.Tracing.ReportJson;

namespace KvmApf.KvmStat;

/// <summary>kvm-stat's output: a text report in the spirit of upstream kvm_stat, and the JSON of <c>--json</c>.</summary>
public static class StatReport
{
    /// <summary>Steps of the outstanding-faults time line.</summary>
    public const int OutstandingSteps = 20;

    public static void Text(TextWriter o, RunStats s, IReadOnlyList<long> runs)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(runs);
        double seconds = s.SpanNs / 1e9;
        o.WriteLine($"kvm-stat: run {s.RunId}{(runs.Count > 1 ? $" (the trace holds runs {string.Join(", ", runs)}; --run ID picks one)" : "")}");
        if (s.Config is { } config)
        {
            o.WriteLine($"  {config}");
        }
        o.WriteLine(s.Windowed
            ? $"  measured interval: {F(seconds, 3)} s of simulated time from {F(s.BeginNs / 1e9, 3)} s (vmm_measure_begin to vmm_measure_end)"
            : $"  whole trace: {F(seconds, 3)} s of simulated time, {s.TotalEvents} events");
        o.WriteLine();
        o.WriteLine($" {"Event",-30}{"Total",14}{"/s (sim)",14}");
        foreach (var (name, count) in s.Counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            o.WriteLine($" {name,-30}{count,14}{(seconds > 0 ? F(count / seconds, 1) : "n/a"),14}");
        }
        o.WriteLine();
        var a = s.Apf;
        o.WriteLine($"apf: {a.NotPresent} not present, {a.PageReady} page ready, {a.WakeAll} wake all, "
            + $"{a.SyncFallbacks} sync fallbacks, {a.MaxOutstanding} max outstanding");
        if (s.SyncFallbackReasons.Count > 0)
        {
            o.WriteLine($"sync fallbacks by reason: {string.Join(", ", s.SyncFallbackReasons.Select(kv => $"{kv.Key} {kv.Value}"))}");
        }
        var l = s.Latency;
        o.WriteLine(l.Samples == 0
            ? "not-present -> page-ready latency: no async fault completed"
            : $"not-present -> page-ready latency ({l.Samples} faults): p50 {Us(l.P50)}, p90 {Us(l.P90)}, p99 {Us(l.P99)}, max {Us(l.Max)}");
        o.WriteLine();
        WriteVcpus(o, s);
        var steps = s.OutstandingOverTime(OutstandingSteps);
        if (steps.Count > 0)
        {
            o.WriteLine();
            o.WriteLine("outstanding async faults, all vCPUs (the most at any time in each step):");
            long peak = Math.Max(1, steps.Max(x => x.Max));
            foreach (var (offset, max) in steps)
            {
                o.WriteLine($"  +{F(offset / 1e9, 3),9} s {max,6} {new string('#', (int)(40 * max / peak))}");
            }
        }
    }

    private static void WriteVcpus(TextWriter o, RunStats s)
    {
        o.WriteLine($"{"vm",3}{"vcpu",5}{"exits",10}{"faults",9}{"not_pr",8}{"ready",8}{"wk_all",7}{"sync",6}{"max_out",8}{"halts",8}"
            + $"{"guest",8}{"host",7}{"stall",7}{"halt",7}");
        foreach (var v in s.Vcpus)
        {
            double all = v.ModeNs.Sum();
            string P(VcpuMode m) => all == 0 ? "n/a" : F(100.0 * v.ModeNs[(int)m] / all, 1) + "%";
            o.WriteLine($"{v.VmId,3}{v.VcpuId,5}{v.Exits,10}{v.PageFaults,9}{v.NotPresent,8}{v.PageReady,8}{v.WakeAll,7}{v.SyncFallbacks,6}"
                + $"{v.MaxOutstanding,8}{v.Halts,8}{P(VcpuMode.Guest),8}{P(VcpuMode.Host),7}{P(VcpuMode.Stall),7}{P(VcpuMode.Halt),7}");
        }
        if (!s.HasRunStart)
        {
            o.WriteLine("  (the trace starts after the run did: the time split covers only what it saw)");
        }
    }

    /// <summary>The JSON of <c>--json</c>: events, apf, per_vcpu, latency_ns, then run, window, outstanding and sync_fallback_reasons.</summary>
    public static byte[] Json(RunStats s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return Document(w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("events");
            foreach (var (name, count) in s.Counts.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                w.WriteNumber(name, count);
            }
            w.WriteEndObject();
            var a = s.Apf;
            WriteNumbers(w, "apf",
                ("not_present", a.NotPresent),
                ("page_ready", a.PageReady),
                ("wake_all", a.WakeAll),
                ("sync_fallbacks", a.SyncFallbacks),
                ("max_outstanding", a.MaxOutstanding));
            w.WriteStartArray("per_vcpu");
            foreach (var v in s.Vcpus)
            {
                WriteVcpu(w, v);
            }
            w.WriteEndArray();
            var l = s.Latency;
            WriteNumbers(w, "latency_ns", ("p50", l.P50), ("p90", l.P90), ("p99", l.P99), ("max", l.Max), ("samples", l.Samples));
            w.WriteStartObject("run");
            w.WriteNumber("id", s.RunId);
            w.WriteString("config", s.Config);
            w.WriteEndObject();
            w.WriteStartObject("window");
            w.WriteString("source", s.Windowed ? "vmm_measure" : "whole_trace");
            w.WriteNumber("begin_ns", s.Windowed ? s.BeginNs : -1);
            w.WriteNumber("end_ns", s.Windowed ? s.EndNs : -1);
            w.WriteNumber("span_ns", s.SpanNs);
            w.WriteEndObject();
            w.WriteStartArray("outstanding");
            foreach (var (offset, max) in s.OutstandingOverTime(OutstandingSteps))
            {
                w.WriteStartObject();
                w.WriteNumber("offset_ns", offset);
                w.WriteNumber("max", max);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("sync_fallback_reasons");
            foreach (var (reason, count) in s.SyncFallbackReasons)
            {
                w.WriteNumber(reason, count);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    private static void WriteVcpu(Utf8JsonWriter w, VcpuFigures v)
    {
        w.WriteStartObject();
        w.WriteNumber("vm", v.VmId);
        w.WriteNumber("vcpu", v.VcpuId);
        w.WriteNumber("exits", v.Exits);
        w.WriteStartObject("exits_by_reason");
        foreach (var (reason, count) in v.ExitsByReason)
        {
            w.WriteNumber(reason, count);
        }
        w.WriteEndObject();
        w.WriteNumber("page_faults", v.PageFaults);
        w.WriteNumber("not_present", v.NotPresent);
        w.WriteNumber("page_ready", v.PageReady);
        w.WriteNumber("wake_all", v.WakeAll);
        w.WriteNumber("sync_fallbacks", v.SyncFallbacks);
        w.WriteNumber("max_outstanding", v.MaxOutstanding);
        w.WriteNumber("halts", v.Halts);
        w.WriteNumber("guest_ns", v.ModeNs[(int)VcpuMode.Guest]);
        w.WriteNumber("host_ns", v.ModeNs[(int)VcpuMode.Host]);
        w.WriteNumber("stall_ns", v.ModeNs[(int)VcpuMode.Stall]);
        w.WriteNumber("halt_ns", v.ModeNs[(int)VcpuMode.Halt]);
        w.WriteEndObject();
    }

    /// <summary>The live view: every event seen so far with its total, and its rate over the last view's stretch of simulated time.</summary>
    public static void Live(TextWriter o, RunStats s, IReadOnlyDictionary<string, long> previous, long simNs, double stretchSeconds)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(previous);
        o.WriteLine($"kvm-stat: run {s.RunId} at {F(simNs / 1e9, 3)} s of simulated time, {s.TotalEvents} events");
        o.WriteLine($" {"Event",-30}{"Total",14}{"/s (sim)",14}");
        foreach (var (name, count) in s.Counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            long delta = count - previous.GetValueOrDefault(name);
            o.WriteLine($" {name,-30}{count,14}{(stretchSeconds > 0 ? F(delta / stretchSeconds, 1) : ""),14}");
        }
        o.WriteLine();
    }

    private static string F(double value, int decimals) => value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    private static string Us(long ns) => F(ns / 1e3, 1) + " us";
}
