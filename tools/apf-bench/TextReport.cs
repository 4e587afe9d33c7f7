using System.Globalization;
using KvmApf.Vmm;

namespace KvmApf.Bench;

/// <summary>
/// The text output: of one run a header, the vCPUs' time shares, host, async PF and simulation figures,
/// then bm's own lines (<c>worker N: COUNT</c>, <c>total: SUM</c>) last; of a comparison the slides'
/// blocks beside the simulation's, with the ratio on/off of each.
/// </summary>
public static class TextReport
{
    /// <summary>Above this many vCPUs the table shows only the average row.</summary>
    private const int MaxVcpuRows = 32;

    private const int Column = 16;

    public static void Run(TextWriter o, BenchResult r)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(r);
        BenchConfig c = r.Config;
        string changed = string.Join(", ", Costs.Changed(c.Costs));
        o.WriteLine($"apf-bench run: async PF {(c.Apf ? "on" : "off")}, {(c.Paging == PagingMode.Shadow ? "shadow" : "tdp")} paging, seed {c.Seed}");
        o.WriteLine($"  guest: {c.Vcpus} vCPUs, {Sizes.FormatSize(c.GuestMemBytes)} memory, cgroup limit {Sizes.FormatSize(c.MemLimitBytes)}");
        o.WriteLine($"  bm: -f {c.FaultThreads} -w {c.WorkThreads} -m {Sizes.FormatSize(c.ArrayBytes)} -t {Sizes.FormatTime(c.DurationNs)}");
        if (c.Apf)
        {
            o.WriteLine($"  async PF: abi {c.Abi}, {c.ApfPerVcpu} per vCPU, guest preempt {(c.GuestPreempt ? "on" : "off")}, "
                + $"guest {(c.GuestPv ? "PV" : "non-PV")}, halt variant {(c.ApfHalt ? "on" : "off")}");
        }
        o.WriteLine($"  costs: {(changed.Length == 0 ? "defaults" : changed)}");
        o.WriteLine();
        WriteVcpus(o, r);
        TimeShares s = r.Shares;
        long guest = s.WorkThreadsNs + s.FaultThreadsNs + s.GuestKernelNs;
        o.WriteLine($"guest time: work threads {Percent(s.WorkThreadsNs, guest)}, fault threads {Percent(s.FaultThreadsNs, guest)}, kernel {Percent(s.GuestKernelNs, guest)}");
        long accesses = r.FaultThreads.Sum(f => f.Accesses);
        long faults = r.FaultThreads.Sum(f => f.Faults);
        o.WriteLine($"fault threads: {accesses} stores, {faults} needed a swap-in ({Percent(faults, accesses)})");
        HostResult h = r.Host;
        o.WriteLine($"host: {h.MajorFaults} major faults, {h.SwapReads} swap reads, {h.SwapWrites} swap writes, "
            + $"{h.ReclaimedPages} pages reclaimed, peak cgroup {Mebibytes(h.PeakCgroupBytes)}");
        ApfResult a = r.Apf;
        o.WriteLine($"apf: {a.NotPresent} not present, {a.PageReady} page ready, {a.WakeAll} wake all, "
            + $"{a.SyncFallbacks} sync fallbacks, {a.MaxOutstanding} max outstanding");
        o.WriteLine($"sim: {r.Sim.Events} events, {Seconds(r.Sim.SimNs)} simulated, {r.Sim.WallMs} ms wall "
            + $"(boot and prefault {r.Sim.SetupWallMs} ms, measured interval {r.Sim.WallMs - r.Sim.SetupWallMs} ms)");
        GcFigures gc = r.Sim.Gc;
        o.WriteLine($"gc: {Mebibytes(gc.AllocatedBytes)} allocated, {gc.Collections} collections, {gc.PauseMs} ms paused (the process's, during the run)");
        for (int i = 0; i < r.Workers.Count; i++)
        {
            o.WriteLine($"worker {i}: {r.Workers[i].Counter}");
        }
        o.WriteLine($"total: {r.Total}");
    }

    /// <summary>bm's lines of both runs beside the slides' (with async PF first, as published) and the ratios.</summary>
    public static void Compare(TextWriter o, BenchResult off, BenchResult on)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(off);
        ArgumentNullException.ThrowIfNull(on);
        o.WriteLine($"bm beside the slides ({Slides.Setup})");
        o.WriteLine($"{"",-18}{"slides",Column}{"simulation",Column}");
        WriteBlock(o, "with async pf", Slides.WithApf, on);
        WriteBlock(o, "without async pf", Slides.WithoutApf, off);
        string slides = Ratio(Slides.WithApf.Sum(), Slides.WithoutApf.Sum());
        o.WriteLine($"{"ratio on/off",-18}{slides,Column}{Ratio(on.Total, off.Total),Column}");
    }

    /// <summary>bm's lines of a run without async PF beside the slides' "without async pf" block.</summary>
    public static void BesideSlides(TextWriter o, BenchResult off)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(off);
        o.WriteLine($"bm beside the slides ({Slides.Setup})");
        o.WriteLine($"{"",-18}{"slides",Column}{"simulation",Column}");
        WriteBlock(o, "without async pf", Slides.WithoutApf, off);
        o.WriteLine($"{"ratio sim/slides",-18}{"",Column}{Ratio(off.Total, Slides.WithoutApf.Sum()),Column}");
    }

    /// <summary><paramref name="on"/> / <paramref name="off"/>, or null when <paramref name="off"/> is zero.</summary>
    public static double? RatioOf(long on, long off) => off == 0 ? null : (double)on / off;

    /// <summary>The ratio with three decimals, or <c>n/a</c> for a zero denominator.</summary>
    public static string Ratio(long on, long off) =>
        RatioOf(on, off) is { } ratio ? ratio.ToString("F3", CultureInfo.InvariantCulture) : "n/a";

    private static void WriteVcpus(TextWriter o, BenchResult r)
    {
        long duration = r.Config.DurationNs;
        o.WriteLine($"{"vcpu",5}{"guest",9}{"host",9}{"stall",9}{"halt",9}   (% of {Sizes.FormatTime(duration)})");
        if (r.Vcpus.Count <= MaxVcpuRows)
        {
            foreach (VcpuResult v in r.Vcpus)
            {
                o.WriteLine($"{v.Id,5}{Percent(v.GuestNs, duration),9}{Percent(v.HostNs, duration),9}{Percent(v.StallNs, duration),9}{Percent(v.HaltNs, duration),9}");
            }
        }
        // In double: 1024 vCPUs over a long run overflow a long.
        double all = (double)duration * r.Vcpus.Count;
        o.WriteLine($"{"all",5}{Percent(r.Vcpus.Sum(v => (double)v.GuestNs), all),9}{Percent(r.Vcpus.Sum(v => (double)v.HostNs), all),9}"
            + $"{Percent(r.Vcpus.Sum(v => (double)v.StallNs), all),9}{Percent(r.Vcpus.Sum(v => (double)v.HaltNs), all),9}");
    }

    private static void WriteBlock(TextWriter o, string title, IReadOnlyList<long> slides, BenchResult sim)
    {
        o.WriteLine(title);
        for (int i = 0; i < Math.Max(slides.Count, sim.Workers.Count); i++)
        {
            string published = i < slides.Count ? slides[i].ToString(CultureInfo.InvariantCulture) : "";
            string simulated = i < sim.Workers.Count ? sim.Workers[i].Counter.ToString(CultureInfo.InvariantCulture) : "";
            o.WriteLine($"{$"  worker {i}:",-18}{published,Column}{simulated,Column}");
        }
        o.WriteLine($"{"  total:",-18}{slides.Sum(),Column}{sim.Total,Column}");
    }

    private static string Percent(double part, double whole) =>
        whole == 0 ? "n/a" : (100.0 * part / whole).ToString("F1", CultureInfo.InvariantCulture) + "%";

    private static string Mebibytes(long bytes) =>
        (bytes / (double)BenchConfig.MiB).ToString("F1", CultureInfo.InvariantCulture) + "M";

    private static string Seconds(long ns) =>
        (ns / 1e9).ToString("F3", CultureInfo.InvariantCulture) + "s";
}
