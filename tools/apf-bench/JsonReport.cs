using System.Text.Json;
using Hw;
using KvmApf.Vmm;
using static KvmApf.Tracing.ReportJson;

namespace KvmApf.Bench;

/// <summary>
/// The JSON of bench-contract.md, written with <see cref="Utf8JsonWriter"/> in the contract's key order.
/// <c>run</c> writes schema <see cref="RunSchema"/>; <c>compare</c> writes <see cref="CompareSchema"/>, an
/// object holding the two run documents and the ratio of their totals.
/// </summary>
public static class JsonReport
{
    public const string RunSchema = "kvm-apf/bench/1";
    public const string CompareSchema = "kvm-apf/bench-compare/1";

    /// <summary>The document of one run, UTF-8, ending with a newline.</summary>
    public static byte[] Run(BenchResult result) => Document(w => WriteRun(w, result));

    /// <summary>The document of <c>compare</c>: <c>{ schema, off, on, ratio }</c>, ratio on/off of the totals or null.</summary>
    public static byte[] Compare(BenchResult off, BenchResult on) => Document(w =>
    {
        w.WriteStartObject();
        w.WriteString("schema", CompareSchema);
        w.WritePropertyName("off");
        WriteRun(w, off);
        w.WritePropertyName("on");
        WriteRun(w, on);
        if (TextReport.RatioOf(on.Total, off.Total) is { } ratio)
        {
            w.WriteNumber("ratio", Math.Round(ratio, 6));
        }
        else
        {
            w.WriteNull("ratio");
        }
        w.WriteEndObject();
    });

    private static void WriteRun(Utf8JsonWriter w, BenchResult r)
    {
        w.WriteStartObject();
        w.WriteString("schema", RunSchema);
        WriteConfig(w, r.Config);
        w.WriteStartArray("workers");
        foreach (WorkerResult worker in r.Workers)
        {
            w.WriteStartObject();
            w.WriteString("name", worker.Name);
            w.WriteNumber("counter", worker.Counter);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("total", r.Total);
        w.WriteStartArray("fault_threads");
        foreach (FaultThreadResult fault in r.FaultThreads)
        {
            w.WriteStartObject();
            w.WriteString("name", fault.Name);
            w.WriteNumber("accesses", fault.Accesses);
            w.WriteNumber("faults", fault.Faults);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("vcpus");
        foreach (VcpuResult vcpu in r.Vcpus)
        {
            WriteNumbers(w, null,
                ("id", vcpu.Id),
                ("guest_ns", vcpu.GuestNs),
                ("host_ns", vcpu.HostNs),
                ("stall_ns", vcpu.StallNs),
                ("halt_ns", vcpu.HaltNs));
        }
        w.WriteEndArray();
        WriteNumbers(w, "host",
            ("major_faults", r.Host.MajorFaults),
            ("swap_reads", r.Host.SwapReads),
            ("swap_writes", r.Host.SwapWrites),
            ("reclaimed_pages", r.Host.ReclaimedPages),
            ("peak_cgroup_bytes", r.Host.PeakCgroupBytes));
        WriteNumbers(w, "apf",
            ("not_present", r.Apf.NotPresent),
            ("page_ready", r.Apf.PageReady),
            ("wake_all", r.Apf.WakeAll),
            ("sync_fallbacks", r.Apf.SyncFallbacks),
            ("max_outstanding", r.Apf.MaxOutstanding));
        WriteNumbers(w, "sim",
            ("events", r.Sim.Events),
            ("sim_ns", r.Sim.SimNs),
            ("wall_ms", r.Sim.WallMs));
        // Not in the contract's list (keys may be added): where the vCPUs' time went, all vCPUs together.
        WriteNumbers(w, "shares",
            ("work_threads_ns", r.Shares.WorkThreadsNs),
            ("fault_threads_ns", r.Shares.FaultThreadsNs),
            ("guest_kernel_ns", r.Shares.GuestKernelNs),
            ("host_ns", r.Shares.HostNs),
            ("stall_ns", r.Shares.StallNs),
            ("halt_ns", r.Shares.HaltNs));
        w.WriteEndObject();
    }

    private static void WriteConfig(Utf8JsonWriter w, BenchConfig c)
    {
        w.WriteStartObject("config");
        w.WriteNumber("vcpus", c.Vcpus);
        w.WriteNumber("guest_mem_bytes", c.GuestMemBytes);
        w.WriteNumber("mem_limit_bytes", c.MemLimitBytes);
        w.WriteNumber("fault_threads", c.FaultThreads);
        w.WriteNumber("work_threads", c.WorkThreads);
        w.WriteNumber("array_bytes", c.ArrayBytes);
        w.WriteNumber("duration_ns", c.DurationNs);
        w.WriteNumber("seed", c.Seed);
        w.WriteString("paging", c.Paging == PagingMode.Shadow ? "shadow" : "tdp");
        w.WriteBoolean("apf", c.Apf);
        w.WriteString("abi", c.Abi);
        w.WriteNumber("apf_per_vcpu", c.ApfPerVcpu);
        w.WriteBoolean("guest_preempt", c.GuestPreempt);
        w.WriteBoolean("guest_pv", c.GuestPv);
        w.WriteBoolean("apf_halt", c.ApfHalt);
        WriteCosts(w, c.Costs);
        w.WriteEndObject();
    }

    /// <summary><c>config.costs</c>: every value of the cost model under its <c>--cost</c> name, the disk nested as <c>Disk</c>.</summary>
    private static void WriteCosts(Utf8JsonWriter w, CostModel costs)
    {
        w.WriteStartObject("costs");
        foreach (CostEntry e in Costs.All.Where(e => !e.Name.StartsWith(Costs.DiskPrefix, StringComparison.Ordinal)))
        {
            w.WriteNumber(e.Name, e.Get(costs));
        }
        w.WriteStartObject(Costs.DiskPrefix.TrimEnd('.'));
        foreach (CostEntry e in Costs.All.Where(e => e.Name.StartsWith(Costs.DiskPrefix, StringComparison.Ordinal)))
        {
            w.WriteNumber(e.Name[Costs.DiskPrefix.Length..], e.Get(costs));
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
