using System.Globalization;
using System.Text.Json.Nodes;
using KvmApf.Bench;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// bench-contract.md says what each figure of <c>apf-bench run</c>'s JSON means; what they mean
/// ties them together. Each relation below follows from the contract's definitions (or from plain
/// accounting over one measured interval) and is checked on the JSON document itself, over a
/// matrix of configurations around <see cref="GuestBmRun.Small"/>: async PF on and off, both
/// pagings, a non-PV guest, the halt variant, a preemptible guest, the merged ABI, 1 to 3 vCPUs,
/// no fault or no work threads, intervals of 1 and 30 ms, no overcommit, other seeds, a cap of 1.
/// The relations are one list (<see cref="Violations"/>), checked on its own against doctored
/// figures, so that a wrong figure is known to break it.
/// </summary>
[TestFixture, Category("scenario"), Description("bench-contract.md: the figures of a run keep the relations their definitions imply")]
public sealed class ContractRelationsTests
{
    private JsonNode? _reference;

    public static IEnumerable<TestCaseData> Configurations()
    {
        var on = GuestBmRun.Small;
        var off = GuestBmRun.Small with { Apf = false };
        var noOvercommit = 1024 * MiB;
        (string Name, BenchConfig Config)[] cases =
        [
            ("on", on),
            ("off", off),
            ("on, shadow", on with { Paging = PagingMode.Shadow }),
            ("off, shadow", off with { Paging = PagingMode.Shadow }),
            ("on, non-PV guest", on with { GuestPv = false }),
            ("on, non-PV guest, halt variant", on with { GuestPv = false, ApfHalt = true }),
            ("on, halt variant", on with { ApfHalt = true }),
            ("off, halt variant", off with { ApfHalt = true }),
            ("on, preemptible guest", on with { GuestPreempt = true }),
            ("on, merged abi", on with { Abi = "merged" }),
            ("on, shadow, halt variant, preemptible, merged", on with { Paging = PagingMode.Shadow, ApfHalt = true, GuestPreempt = true, Abi = "merged" }),
            ("on, 1 vcpu", on with { Vcpus = 1 }),
            ("off, 1 vcpu", off with { Vcpus = 1 }),
            ("on, 3 vcpus", on with { Vcpus = 3 }),
            ("on, cap 1", on with { ApfPerVcpu = 1 }),
            ("on, no fault threads", on with { FaultThreads = 0 }),
            ("off, no work threads", off with { WorkThreads = 0 }),
            ("on, no threads", on with { FaultThreads = 0, WorkThreads = 0 }),
            ("on, 1 ms", on with { DurationNs = 1 * Ms }),
            ("off, 1 ms", off with { DurationNs = 1 * Ms }),
            ("on, 30 ms, 3 vcpus", on with { DurationNs = 30 * Ms, Vcpus = 3 }),
            ("off, 30 ms", off with { DurationNs = 30 * Ms }),
            ("on, no overcommit", on with { MemLimitBytes = noOvercommit }),
            ("off, no overcommit", off with { MemLimitBytes = noOvercommit }),
            ("on, seed 2", on with { Seed = 2 }),
            ("off, seed 3", off with { Seed = 3 }),
        ];
        return cases.Select(c => new TestCaseData(c.Config).SetArgDisplayNames(c.Name));
    }

    [TestCaseSource(nameof(Configurations))]
    public void Run_Configuration_FiguresKeepTheirRelations(BenchConfig config)
    {
        Assert.That(Violations(RunJson(config)), Is.Empty);
    }

    /// <summary>Doctored figures of one real run, each as a wrong implementation would write it, and the relation that catches it.</summary>
    public static IEnumerable<TestCaseData> Doctored()
    {
        (string Name, Action<JsonNode> Doctor, string Relation)[] cases =
        [
            ("a vCPU ns lost", j => Add(j["vcpus"]![0]!, "stall_ns", -1), "vcpu 0: guest + host + stall + halt"),
            ("a segment in flight not counted", j => Add(j["shares"]!, "work_threads_ns", -1000), "shares: work + fault threads + guest kernel"),
            ("stall not summed", j => Add(j["shares"]!, "stall_ns", 1), "shares.stall_ns"),
            ("a fault without its store", j => j["fault_threads"]![0]!["faults"] = (long)j["fault_threads"]![0]!["accesses"]! + 1, "fault 0: faults"),
            ("stores counted twice", j => Add(j["fault_threads"]![0]!, "accesses", j["fault_threads"]!.AsArray().Sum(f => (long)f!["accesses"]!)), "fault threads' stores"),
            ("total not the workers' sum", j => Add(j, "total", 1), "total"),
            ("a worker missing", j => j["workers"]!.AsArray().RemoveAt(0), "workers: 3"),
            ("peak above the limit", j => j["host"]!["peak_cgroup_bytes"] = (long)j["config"]!["mem_limit_bytes"]! + 4096, "host: peak_cgroup_bytes"),
            ("reads without faults", j => Add(j["host"]!, "swap_reads", (long)j["host"]!["major_faults"]!), "host: swap_reads"),
            ("apf figures with async PF off", j => j["config"]!["apf"] = false, "apf with async PF off"),
            ("apf figures from a non-PV guest", j => j["config"]!["guest_pv"] = false, "apf of a non-PV guest"),
            ("more outstanding than the cap", j => j["apf"]!["max_outstanding"] = (long)j["config"]!["apf_per_vcpu"]! + 1, "apf: max_outstanding"),
            ("page-ready without its not-present", j => Add(j["apf"]!, "page_ready", 2 * (long)j["apf"]!["not_present"]!), "apf: page_ready"),
            ("not-present never answered", j => Add(j["apf"]!, "not_present", 2 * (long)j["apf"]!["not_present"]!), "apf: not_present"),
            ("fallbacks without I/O", j => Add(j["apf"]!, "sync_fallbacks", (long)j["host"]!["major_faults"]! + 3), "apf: sync_fallbacks"),
            ("boot not in sim_ns", j => j["sim"]!["sim_ns"] = (long)j["config"]!["duration_ns"]! - 1, "sim:"),
        ];
        return cases.Select(c => new TestCaseData(c.Doctor, c.Relation).SetArgDisplayNames(c.Name));
    }

    [TestCaseSource(nameof(Doctored))]
    public void Violations_DoctoredFigure_NamesTheRelation(Action<JsonNode> doctor, string relation)
    {
        _reference ??= RunJson(GuestBmRun.Small);
        Assume.That(Violations(_reference), Is.Empty, "the reference run keeps every relation");
        Assume.That((long)_reference["apf"]!["not_present"]!, Is.Positive, "the reference run has async faults");
        var doctored = _reference.DeepClone();
        doctor(doctored);
        Assert.That(Violations(doctored), Has.Some.StartsWith(relation));
    }

    private static JsonNode RunJson(BenchConfig config) => JsonNode.Parse(JsonReport.Run(BenchRunner.Run(config)))!;

    private static void Add(JsonNode node, string key, long delta) => node[key] = (long)node[key]! + delta;

    /// <summary>Every relation of <paramref name="run"/>'s figures that does not hold, one line each, starting with what it is about.</summary>
    private static List<string> Violations(JsonNode run)
    {
        var v = new List<string>();
        void Check(bool holds, FormattableString line)
        {
            if (!holds)
            {
                v.Add(line.ToString(CultureInfo.InvariantCulture));
            }
        }
        long L(JsonNode? n) => (long)n!;
        var c = run["config"]!;
        long duration = L(c["duration_ns"]), vcpuCount = L(c["vcpus"]), cap = L(c["apf_per_vcpu"]), storeNs = L(c["costs"]!["FaultLoopIterationNs"]);
        long faultThreadCount = L(c["fault_threads"]), workThreadCount = L(c["work_threads"]);
        bool apf = (bool)c["apf"]!, pv = (bool)c["guest_pv"]!, halt = (bool)c["apf_halt"]!;
        var vcpus = run["vcpus"]!.AsArray();
        var workers = run["workers"]!.AsArray();
        var faultThreads = run["fault_threads"]!.AsArray();
        var host = run["host"]!;
        var a = run["apf"]!;
        var shares = run["shares"]!;
        var sim = run["sim"]!;

        // vcpus[]: one per vCPU, in order; the four times of each add up to the interval.
        Check(vcpus.Count == vcpuCount, $"vcpus: {vcpus.Count} entries for {vcpuCount} vCPUs");
        for (int i = 0; i < vcpus.Count; i++)
        {
            var u = vcpus[i]!;
            long[] t = [L(u["guest_ns"]), L(u["host_ns"]), L(u["stall_ns"]), L(u["halt_ns"])];
            Check(L(u["id"]) == i, $"vcpu {i}: id {L(u["id"])}");
            Check(t.All(x => x >= 0), $"vcpu {i}: a negative time {string.Join(", ", t)}");
            Check(t.Sum() == duration, $"vcpu {i}: guest + host + stall + halt = {t.Sum()}, not the duration {duration}");
        }

        // workers and total: bm's lines, one per work thread; total is their sum.
        Check(workers.Count == workThreadCount, $"workers: {workers.Count} for {workThreadCount} work threads");
        Check(workers.Select((w, i) => (string?)w!["name"] == $"worker {i}" && L(w["counter"]) >= 0).All(ok => ok), $"workers: names or counters");
        Check(L(run["total"]) == workers.Sum(w => L(w!["counter"])), $"total {L(run["total"])} is not the workers' sum");

        // fault_threads: one per fault thread; a fault is one of the thread's stores.
        Check(faultThreads.Count == faultThreadCount, $"fault_threads: {faultThreads.Count} for {faultThreadCount} fault threads");
        for (int i = 0; i < faultThreads.Count; i++)
        {
            var f = faultThreads[i]!;
            Check((string?)f["name"] == $"fault {i}", $"fault {i}: named {(string?)f["name"]}");
            Check(L(f["faults"]) >= 0 && L(f["faults"]) <= L(f["accesses"]), $"fault {i}: faults {L(f["faults"])} not among its {L(f["accesses"])} stores");
        }
        // bm's fault loop is all the fault threads' user time, FaultLoopIterationNs a store: a store
        // counted in the interval ran in it, but for at most one per thread begun before it opened.
        long stores = faultThreads.Sum(f => L(f!["accesses"]));
        Check(stores * storeNs <= L(shares["fault_threads_ns"]) + (faultThreadCount * storeNs),
            $"fault threads' stores: {stores} of {storeNs} ns do not fit in their {L(shares["fault_threads_ns"])} ns of user time");

        // shares: the vCPUs' time, all vCPUs together. Guest time is the contexts' time: bm's
        // threads' user time and every task's kernel time (the idle tasks' included); bm's main
        // thread, the only other user code, sleeps through the interval.
        long Sum(string key) => vcpus.Sum(u => L(u![key]));
        foreach (string key in new[] { "host_ns", "stall_ns", "halt_ns" })
        {
            Check(L(shares[key]) == Sum(key), $"shares.{key} {L(shares[key])} is not the vCPUs' {Sum(key)}");
        }
        long guest = L(shares["work_threads_ns"]) + L(shares["fault_threads_ns"]) + L(shares["guest_kernel_ns"]);
        Check(guest == Sum("guest_ns"), $"shares: work + fault threads + guest kernel = {guest}, not the vCPUs' guest_ns {Sum("guest_ns")}");
        Check(workThreadCount > 0 || (L(shares["work_threads_ns"]) == 0 && L(run["total"]) == 0), $"shares: work thread time without work threads");
        Check(faultThreadCount > 0 || L(shares["fault_threads_ns"]) == 0, $"shares: fault thread time without fault threads");

        // host: the cgroup never goes above its limit; it holds at least the VMM's own memory.
        long majors = L(host["major_faults"]);
        Check(new[] { "major_faults", "swap_reads", "swap_writes", "reclaimed_pages" }.All(k => L(host[k]) >= 0), $"host: a negative count");
        Check(L(host["peak_cgroup_bytes"]) <= L(c["mem_limit_bytes"]), $"host: peak_cgroup_bytes {L(host["peak_cgroup_bytes"])} above the limit {L(c["mem_limit_bytes"])}");
        Check(L(host["peak_cgroup_bytes"]) >= (long)Machine.VmmOverheadBytes, $"host: peak_cgroup_bytes {L(host["peak_cgroup_bytes"])} below the VMM's own memory");
        // Every swap read is a major fault's (the port reads no more than the faulting slot:
        // deviations.md, swapin_readahead), and both count when the read is submitted (PSWPIN in
        // swap_readpage, the major fault in do_swap_page); a fault that finds its page's read
        // already in flight is major without a read of its own.
        Check(L(host["swap_reads"]) <= majors, $"host: swap_reads {L(host["swap_reads"])} above major_faults {majors}");
        // Without overcommit (the limit holds the VMM and all guest RAM) nothing is reclaimed, so
        // nothing is swapped out or in, no store needs a swap-in and no vCPU waits for a page.
        long charged = L(c["guest_mem_bytes"]) + (long)Machine.VmmOverheadBytes;
        if (L(c["mem_limit_bytes"]) >= charged)
        {
            Check(new[] { "major_faults", "swap_reads", "swap_writes", "reclaimed_pages" }.All(k => L(host[k]) == 0), $"host: swap without overcommit");
            Check(L(host["peak_cgroup_bytes"]) <= charged, $"host: peak_cgroup_bytes {L(host["peak_cgroup_bytes"])} above guest RAM and the VMM");
            Check(Sum("stall_ns") == 0, $"vcpus: stall_ns {Sum("stall_ns")} without overcommit");
            Check(faultThreads.All(f => L(f!["faults"]) == 0), $"fault_threads: faults without overcommit");
        }

        // apf: zeros with async PF off. A non-PV guest never enables it, so nothing is injected
        // and no fault falls back; only the halt variant sets up async faults for it (max_outstanding).
        string[] apfKeys = ["not_present", "page_ready", "wake_all", "sync_fallbacks", "max_outstanding"];
        Check(apfKeys.All(k => L(a[k]) >= 0), $"apf: a negative count");
        Check(apf || apfKeys.All(k => L(a[k]) == 0), $"apf with async PF off: {a.ToJsonString()}");
        Check(pv || apfKeys.SkipLast(1).All(k => L(a[k]) == 0), $"apf of a non-PV guest: {a.ToJsonString()}");
        Check(pv || halt || L(a["max_outstanding"]) == 0, $"apf of a non-PV guest without the halt variant: max_outstanding {L(a["max_outstanding"])}");
        Check(L(a["max_outstanding"]) <= cap, $"apf: max_outstanding {L(a["max_outstanding"])} above the cap {cap}");
        Check(L(a["not_present"]) == 0 || L(a["max_outstanding"]) >= 1, $"apf: not_present {L(a["not_present"])} with max_outstanding 0");
        // A page-ready answers a not-present injected in the interval or one outstanding when it
        // opened; a not-present not answered (bm's guest never disables async PF, so every
        // answer is injected) is still outstanding when the interval closes. No vCPU ever has
        // more outstanding than max_outstanding.
        long outstanding = vcpuCount * L(a["max_outstanding"]);
        Check(L(a["page_ready"]) <= L(a["not_present"]) + outstanding,
            $"apf: page_ready {L(a["page_ready"])} above not_present {L(a["not_present"])} + outstanding {outstanding}");
        Check(L(a["wake_all"]) > 0 || L(a["not_present"]) <= L(a["page_ready"]) + outstanding,
            $"apf: not_present {L(a["not_present"])} above page_ready {L(a["page_ready"])} + outstanding {outstanding}");
        // A fallback is a vCPU thread's fault that did I/O: in the interval, or for at most one per
        // vCPU, just before it opened.
        Check(L(a["sync_fallbacks"]) <= majors + vcpuCount, $"apf: sync_fallbacks {L(a["sync_fallbacks"])} above major_faults {majors} + vCPUs");

        // sim: the loop did something; boot and prefault come before the interval.
        Check(L(sim["events"]) > 0 && L(sim["sim_ns"]) > duration, $"sim: events {L(sim["events"])}, sim_ns {L(sim["sim_ns"])} for a {duration} ns interval");
        return v;
    }
}
