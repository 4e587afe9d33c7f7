using System.Globalization;
using Hw;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>
/// bm on a tools/vmm <see cref="Machine"/>, driven the way BenchRunner drives it (the console's
/// "start" and "total:" lines), but with the machine in the fixture's hands: it can act at any
/// virtual time (<see cref="At"/>, <see cref="RunUntil"/>) and read the whole machine afterwards.
/// </summary>
public sealed class GuestBmRun
{
    private const long BootBudgetNs = 600_000_000_000;

    /// <summary>
    /// The scenario tests' run: bm for 0.3 s of virtual time over a 256 MiB array, on 2 vCPUs with
    /// 512 MiB of guest RAM and a 128 MiB limit, async PF on, seed 1. Fixtures vary it with <c>with</c>.
    /// </summary>
    public static readonly BenchConfig Small = new()
    {
        Vcpus = 2,
        GuestMemBytes = 512 * BenchConfig.MiB,
        MemLimitBytes = 128 * BenchConfig.MiB,
        ArrayBytes = 256 * BenchConfig.MiB,
        DurationNs = 300_000_000,
        Apf = true,
        Seed = 1,
    };

    public GuestBmRun(BenchConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Machine = new Machine(config);
        Machine.Console.LineWritten = line =>
        {
            if (line == "start")
            {
                StartNs = Machine.Loop.Now;
            }
            else if (line.StartsWith("total:", StringComparison.Ordinal))
            {
                FinishedNs = Machine.Loop.Now;
                Machine.StopVcpus();
                Machine.Loop.Stop();
            }
        };
        Machine.Start();
    }

    public Machine Machine { get; }

    /// <summary>Virtual time bm printed "start" (its measured interval began), or -1.</summary>
    public long StartNs { get; private set; } = -1;

    /// <summary>Virtual time bm printed "total:" (it finished), or -1.</summary>
    public long FinishedNs { get; private set; } = -1;

    public bool Finished => FinishedNs >= 0;

    /// <summary>Calls <paramref name="action"/> from the machine's loop at virtual time <paramref name="atNs"/>.</summary>
    public void At(long atNs, Action action) => Machine.Loop.Arm(new SimTimer(action), atNs);

    /// <summary>Runs until <paramref name="condition"/> holds (checked every 100 µs of virtual time) or bm finished; fails after the budget.</summary>
    public void RunUntil(Func<bool> condition, long budgetNs = BootBudgetNs)
    {
        ArgumentNullException.ThrowIfNull(condition);
        long deadline = Machine.Loop.Now + budgetNs;
        while (!condition() && !Finished)
        {
            Assert.That(Machine.Loop.Now, Is.LessThan(deadline),
                () => $"not reached within {budgetNs} ns; console: {string.Join(" | ", Machine.Console.Lines)}");
            bool more = Machine.Loop.Run(Math.Min(deadline, Machine.Loop.Now + 100_000));
            Assert.That(more || Finished, Is.True, "the machine went idle before bm finished");
        }
    }

    /// <summary>Runs until bm prints its total.</summary>
    public void RunToEnd() => RunUntil(() => false, BootBudgetNs + Machine.Config.DurationNs);

    // ---- DESIGN section 6's invariants, each as the list of its violations ----------------------

    /// <summary>
    /// Every not-present is answered by exactly one page-ready with its token, on the same vCPU,
    /// or by a later wake-all of that vCPU; no page-ready comes without its not-present.
    /// </summary>
    public static List<string> UnansweredNotPresents(IReadOnlyList<ApfTraceEvent> trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        var problems = new List<string>();
        var outstanding = new Dictionary<int, HashSet<long>>();
        foreach (var e in trace.Where(e => !e.Guest))
        {
            var mine = outstanding.TryGetValue(e.Cpu, out var set) ? set : outstanding[e.Cpu] = [];
            switch (e.Name)
            {
                case "kvm_async_pf_not_present" when !mine.Add(e.Token):
                    problems.Add(Line($"vcpu {e.Cpu}: token {e.Token:x} not present twice at {e.TimeNs}"));
                    break;
                case "kvm_async_pf_ready" when e.Token == ApfAbi.WakeAllToken:
                    mine.Clear();
                    break;
                case "kvm_async_pf_ready" when !mine.Remove(e.Token):
                    problems.Add(Line($"vcpu {e.Cpu}: page ready for token {e.Token:x} at {e.TimeNs} with no not-present outstanding"));
                    break;
            }
        }
        problems.AddRange(outstanding.SelectMany(kv => kv.Value.Select(t => Line($"vcpu {kv.Key}: token {t:x} never answered"))));
        return problems;
    }

    /// <summary>The most async faults outstanding on one vCPU at any point of the trace.</summary>
    public static int MaxOutstanding(IReadOnlyList<ApfTraceEvent> trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        var outstanding = new Dictionary<int, int>();
        int max = 0;
        foreach (var e in trace.Where(e => !e.Guest))
        {
            int n = outstanding.GetValueOrDefault(e.Cpu);
            n = e.Name switch
            {
                "kvm_async_pf_not_present" => n + 1,
                "kvm_async_pf_ready" when e.Token == ApfAbi.WakeAllToken => 0,
                "kvm_async_pf_ready" => n - 1,
                _ => n,
            };
            outstanding[e.Cpu] = n;
            max = Math.Max(max, n);
        }
        return max;
    }

    /// <summary>
    /// Every guest task that slept or halted on a token was woken or resumed after it, on the same
    /// token (by token only: a woken task may resume on another CPU than the one it slept on).
    /// </summary>
    public static List<string> SleepersNeverWoken(IReadOnlyList<ApfTraceEvent> trace)
    {
        ArgumentNullException.ThrowIfNull(trace);
        var asleep = new Dictionary<long, int>();
        foreach (var e in trace.Where(e => e.Guest))
        {
            switch (e.Name)
            {
                case "apf_task_sleep" or "apf_cpu_halted":
                    asleep[e.Token] = asleep.GetValueOrDefault(e.Token) + 1;
                    break;
                case "apf_task_woken" or "apf_cpu_resumed":
                    asleep[e.Token] = asleep.GetValueOrDefault(e.Token) - 1;
                    break;
            }
        }
        return [.. asleep.Where(kv => kv.Value != 0).Select(kv => Line($"token {kv.Key:x}: {kv.Value} sleeps without a wake"))];
    }

    /// <summary>Entries left in the guest's sleeper hash (a task still waiting, or a dummy never consumed).</summary>
    public static List<string> SleeperNodesLeft(Kernel guest)
    {
        ArgumentNullException.ThrowIfNull(guest);
        return [.. guest.AsyncPfSleepers.SelectMany(b => b.List)
            .Select(n => Line($"token {n.Token:x} on cpu {n.Cpu}: {(n.Task is { } t ? t.ToString() : "dummy")}{(n.Halted ? " (halted)" : "")}"))];
    }

    /// <summary>EPT entries (or shadow sptes) whose page is not present in the VMM's page table at the frame the spte maps.</summary>
    public static List<string> SptesOfAbsentPages(Kvm vm, MmStruct vmmMm)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(vmmMm);
        var problems = new List<string>();
        void Check(string what, ulong gfn, ulong spte)
        {
            ulong pte = vmmMm.PageTable.PeekPte(Kernel.GfnToHva(vm, gfn)) ?? 0;
            if (!Pgtable.PtePresent(pte) || Pgtable.PtePfn(pte) != Spte.Pfn(spte))
            {
                problems.Add(Line($"{what} of gfn {gfn:x} maps pfn {Spte.Pfn(spte):x}; host pte {pte:x}"));
            }
        }
        foreach (var (gfn, spte) in vm.Arch.Ept)
        {
            Check("ept", gfn, spte);
        }
        foreach (var (gfn, spte) in vm.Arch.ShadowDirect)
        {
            Check("shadow direct map", gfn, spte);
        }
        foreach (var (gfn, keys) in vm.Arch.ShadowRmap)
        {
            foreach (var key in keys)
            {
                if (vm.Arch.Shadow.TryGetValue(key, out ulong spte))
                {
                    Check($"shadow spte {key}", gfn, spte);
                }
            }
        }
        return problems;
    }

    /// <summary>
    /// Each vCPU's cached area (where apf_put_user writes) is the one its guest CPU registered:
    /// the MSR's address, the guest kernel's per-CPU area of that CPU, and the hva the memslot
    /// gives for it; and the word there reads 0 (the guest consumed every reason written).
    /// </summary>
    public static List<string> AreaProblems(Kernel host, Kvm vm, MmStruct vmmMm, IPhysicalMemory ram)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(vmmMm);
        ArgumentNullException.ThrowIfNull(ram);
        var problems = new List<string>();
        foreach (var vcpu in vm.Vcpus)
        {
            var ghc = vcpu.Arch.ApfData;
            ulong registered = vcpu.Arch.ApfMsrVal & ~0x3fUL;
            ulong hva = Kernel.GfnToHva(vm, ghc.Gpa >> Pgtable.PAGE_SHIFT) + (ghc.Gpa & (Pgtable.PAGE_SIZE - 1));
            if (!Kernel.ApfEnabled(vcpu) || ghc.Gpa != registered || registered != Kernel.ApfReasonGpa(vcpu.VcpuId) || ghc.Hva != hva)
            {
                problems.Add(Line($"vcpu {vcpu.VcpuId}: msr {vcpu.Arch.ApfMsrVal:x}, cache gpa {ghc.Gpa:x} hva {ghc.Hva:x}, memslot hva {hva:x}"));
                continue;
            }
            ulong pte = vmmMm.PageTable.PeekPte(hva) ?? 0;
            if (Pgtable.PtePresent(pte) && ram.ReadU32((Pgtable.PtePfn(pte) << Pgtable.PAGE_SHIFT) | (hva & (Pgtable.PAGE_SIZE - 1))) is var word and not 0)
            {
                problems.Add(Line($"vcpu {vcpu.VcpuId}: reason word {word} left unread"));
            }
        }
        return problems;
    }

    private static string Line(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
