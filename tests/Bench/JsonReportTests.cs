using System.Text.Json;
using Hw;
using KvmApf.Bench;
using KvmApf.Vmm;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("apf-bench: the JSON of bench-contract.md, schema kvm-apf/bench/1")]
public sealed class JsonReportTests
{
    private static readonly string[] TopLevelKeys =
        ["schema", "config", "workers", "total", "fault_threads", "vcpus", "host", "apf", "sim", "shares"];

    private static readonly string[] ConfigKeys =
    [
        "vcpus", "guest_mem_bytes", "mem_limit_bytes", "fault_threads", "work_threads", "array_bytes", "duration_ns", "seed",
        "paging", "apf", "abi", "apf_per_vcpu", "guest_preempt", "guest_pv", "apf_halt", "costs",
    ];

    private static readonly TestCaseData[] Configs =
    [
        new TestCaseData(new BenchConfig()),
        new TestCaseData(new BenchConfig { Apf = true, Paging = PagingMode.Shadow, Seed = ulong.MaxValue }),
        new TestCaseData(new BenchConfig { WorkThreads = 0, FaultThreads = 0, Vcpus = 1 }),
        new TestCaseData(new BenchConfig { WorkThreads = 9, Costs = new CostModel { GuestTickNs = 3000 } }),
    ];

    [TestCaseSource(nameof(Configs))]
    public void Run_HandBuiltResult_FollowsSchema(BenchConfig config)
    {
        BenchResult result = FakeRunner.Result(config);
        using JsonDocument doc = JsonDocument.Parse(JsonReport.Run(result));
        JsonElement root = doc.RootElement;
        JsonElement c = root.GetProperty("config");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(root.GetProperty("schema").GetString(), Is.EqualTo("kvm-apf/bench/1"));
            Assert.That(root.EnumerateObject().Select(p => p.Name), Is.EqualTo(TopLevelKeys));
            Assert.That(c.EnumerateObject().Select(p => p.Name), Is.EqualTo(ConfigKeys));
            Assert.That(c.GetProperty("apf").ValueKind, Is.EqualTo(config.Apf ? JsonValueKind.True : JsonValueKind.False));
            Assert.That(c.GetProperty("paging").GetString(), Is.EqualTo(config.Paging == PagingMode.Shadow ? "shadow" : "tdp"));
            Assert.That(c.GetProperty("seed").GetUInt64(), Is.EqualTo(config.Seed));
            Assert.That(c.GetProperty("guest_mem_bytes").GetInt64(), Is.EqualTo(config.GuestMemBytes));
            Assert.That(c.GetProperty("duration_ns").GetInt64(), Is.EqualTo(config.DurationNs));
            Assert.That(c.GetProperty("costs").GetProperty("GuestTickNs").GetInt64(), Is.EqualTo(config.Costs.GuestTickNs));
            Assert.That(root.GetProperty("total").GetInt64(),
                Is.EqualTo(root.GetProperty("workers").EnumerateArray().Sum(w => w.GetProperty("counter").GetInt64())));
            Assert.That(root.GetProperty("total").GetInt64(), Is.EqualTo(result.Total));
            Assert.That(root.GetProperty("workers").GetArrayLength(), Is.EqualTo(config.WorkThreads));
            Assert.That(root.GetProperty("vcpus").GetArrayLength(), Is.EqualTo(config.Vcpus));
        }
    }

    [Test]
    public void Run_Elements_HaveContractKeysInOrder()
    {
        using JsonDocument doc = JsonDocument.Parse(JsonReport.Run(FakeRunner.Result(new BenchConfig())));
        JsonElement root = doc.RootElement;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Keys(root.GetProperty("workers")[0]), Is.EqualTo(new[] { "name", "counter" }));
            Assert.That(root.GetProperty("workers")[0].GetProperty("name").GetString(), Is.EqualTo("worker 0"));
            Assert.That(Keys(root.GetProperty("fault_threads")[0]), Is.EqualTo(new[] { "name", "accesses", "faults" }));
            Assert.That(Keys(root.GetProperty("vcpus")[0]), Is.EqualTo(new[] { "id", "guest_ns", "host_ns", "stall_ns", "halt_ns" }));
            Assert.That(Keys(root.GetProperty("host")),
                Is.EqualTo(new[] { "major_faults", "swap_reads", "swap_writes", "reclaimed_pages", "peak_cgroup_bytes" }));
            Assert.That(Keys(root.GetProperty("apf")),
                Is.EqualTo(new[] { "not_present", "page_ready", "wake_all", "sync_fallbacks", "max_outstanding" }));
            Assert.That(Keys(root.GetProperty("sim")), Is.EqualTo(new[] { "events", "sim_ns", "wall_ms" }));
        }
    }

    [Test]
    public void Run_Costs_HoldEveryCostWithDiskNested()
    {
        var costs = new CostModel { VmExitNs = 401, Disk = new DiskGeometry { Blocks = 77 } };
        using JsonDocument doc = JsonDocument.Parse(JsonReport.Run(FakeRunner.Result(new BenchConfig { Costs = costs })));
        JsonElement json = doc.RootElement.GetProperty("config").GetProperty("costs");
        JsonElement disk = json.GetProperty("Disk");
        var written = json.EnumerateObject().Where(p => p.Name != "Disk").Select(p => (p.Name, p.Value.GetInt64()))
            .Concat(disk.EnumerateObject().Select(p => ("Disk." + p.Name, p.Value.GetInt64())));
        Assert.That(written, Is.EqualTo(Costs.All.Select(e => (e.Name, e.Get(costs)))));
    }

    [Test]
    public void Run_Output_IsIndentedAndEndsWithNewline()
    {
        string text = System.Text.Encoding.UTF8.GetString(JsonReport.Run(FakeRunner.Result(new BenchConfig())));
        Assert.That(text, Does.StartWith("{\n  \"schema\": \"kvm-apf/bench/1\",\n").And.EndWith("}\n"));
    }

    [Test]
    public void Compare_TwoRuns_HoldsBothAndRatio()
    {
        BenchResult off = FakeRunner.Result(new BenchConfig(), 1_000);
        BenchResult on = FakeRunner.Result(new BenchConfig { Apf = true }, 2_000);
        using JsonDocument doc = JsonDocument.Parse(JsonReport.Compare(off, on));
        JsonElement root = doc.RootElement;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Keys(root), Is.EqualTo(new[] { "schema", "off", "on", "ratio" }));
            Assert.That(root.GetProperty("schema").GetString(), Is.EqualTo("kvm-apf/bench-compare/1"));
            Assert.That(root.GetProperty("off").GetProperty("schema").GetString(), Is.EqualTo("kvm-apf/bench/1"));
            Assert.That(root.GetProperty("on").GetProperty("config").GetProperty("apf").GetBoolean(), Is.True);
            Assert.That(root.GetProperty("ratio").GetDouble(), Is.EqualTo((double)on.Total / off.Total).Within(1e-6));
        }
    }

    [Test]
    public void Compare_ZeroWorkThreads_RatioIsNull()
    {
        var config = new BenchConfig { WorkThreads = 0 };
        using JsonDocument doc = JsonDocument.Parse(JsonReport.Compare(FakeRunner.Result(config), FakeRunner.Result(config with { Apf = true })));
        Assert.That(doc.RootElement.GetProperty("ratio").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    private static string[] Keys(JsonElement element) => [.. element.EnumerateObject().Select(p => p.Name)];
}
