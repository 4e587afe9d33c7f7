using System.Globalization;
using Hw;
using Linux;

namespace KvmApf.Guest;

/// <summary>asyncpf's options: the buffer it touches (the original uses 1 GiB in a guest larger than its 512 MiB cgroup).</summary>
public sealed record AsyncPfTestOptions(ulong BufferBytes, int Passes = 2);

/// <summary>
/// A guest test program in the style of kvm-unit-tests <c>x86/asyncpf.c</c> (the 2012 original,
/// ../shared/reference/test-anchors.md A1), run as the guest's init. Like the original it
/// watches every #PF and reads the reason word of the CPU's async PF area before the kernel does
/// (a probe on pv_cpu_ops.handle_pf, the hook patch 4 adds), then writes one byte into every page
/// of a buffer larger than the host lets the VM keep, twice, and reports from inside the guest:
/// a #PF with a reason other than 0, 1 or 2 is a failure; so is an ordinary #PF (reason 0) of
/// its own on the second pass, when its page tables are all in place; every not-present must be
/// answered by a page-ready with its token or a wake-all of its CPU. Unlike the original, which
/// passes vacuously when the host never swaps, it also fails when no async page fault happened.
/// It prints <c>PASS: …</c> and <c>FAIL: …</c> lines and a <c>SUMMARY:</c> line on the console.
/// </summary>
public sealed class AsyncPfTest(Libc libc, AsyncPfTestOptions options)
{
    /// <summary>memset-like cost of touching one byte of a page whose translation is cached, ns.</summary>
    private const long TouchNs = 50;

    private readonly Dictionary<uint, int> _outstanding = [];
    private readonly List<string> _failures = [];
    private TaskStruct? _self;
    private int _pass;
    private int _tests;

    /// <summary>Not-present events seen on any CPU.</summary>
    public long NotPresent { get; private set; }

    /// <summary>Page-ready events with a token seen on any CPU.</summary>
    public long PageReady { get; private set; }

    /// <summary>Page-ready events with the wake-all token.</summary>
    public long WakeAll { get; private set; }

    /// <summary>Async page faults this program's own task took (not-presents delivered while it was current).</summary>
    public long OwnAsyncFaults { get; private set; }

    /// <summary>Ordinary #PFs of this program's task on the second pass.</summary>
    public long UnexpectedFaults { get; private set; }

    /// <summary>#PFs whose reason word was neither 0, 1 nor 2.</summary>
    public long UnknownReasons { get; private set; }

    /// <summary>What failed, in order.</summary>
    public IReadOnlyList<string> Failures => _failures;

    /// <summary>True once the program ran to its summary with no failure.</summary>
    public bool Passed { get; private set; }

    /// <summary>main().</summary>
    public async SimTask Main(TaskStruct self)
    {
        ArgumentNullException.ThrowIfNull(self);
        _self = self;
        var kernel = libc.Kernel;
        var ops = kernel.PvCpuOps;
        var handlePf = ops.HandlePf;
        ops.HandlePf = (cpu, errorCode) =>
        {
            Observe(kernel, cpu);
            return handlePf(cpu, errorCode);
        };
        try
        {
            await Report(kernel.ApfReasonEnabled.Count > 0 && kernel.ApfReasonEnabled.All(e => e), "async PF enabled on every CPU");
            ulong buffer = await libc.Malloc(options.BufferBytes);
            long pages = (long)(options.BufferBytes / Pgtable.PAGE_SIZE);
            for (_pass = 1; _pass <= options.Passes; _pass++)
            {
                await self.Context!.StoreLoop(new EveryPage(buffer), pages, TouchNs);
            }
            _pass = 0;
        }
        finally
        {
            ops.HandlePf = handlePf;
        }
        await libc.Puts(string.Create(CultureInfo.InvariantCulture,
            $"asyncpf: {NotPresent} not present, {PageReady} page ready, {WakeAll} wake all; {OwnAsyncFaults} taken by this task"));
        await Report(UnexpectedFaults == 0, string.Create(CultureInfo.InvariantCulture, $"no ordinary #PF on the second pass ({UnexpectedFaults})"));
        await Report(UnknownReasons == 0, string.Create(CultureInfo.InvariantCulture, $"no #PF with an unknown reason ({UnknownReasons})"));
        var unmatched = _outstanding.Where(kv => kv.Value != 0).Select(kv => kv.Key).ToList();
        await Report(unmatched.Count == 0, string.Create(CultureInfo.InvariantCulture,
            $"every not-present answered by its page-ready or a wake-all ({unmatched.Count} unmatched)"));
        await Report(OwnAsyncFaults > 0, string.Create(CultureInfo.InvariantCulture, $"async page faults happened ({OwnAsyncFaults})"));
        Passed = _failures.Count == 0;
        await libc.Puts(string.Create(CultureInfo.InvariantCulture, $"SUMMARY: {_tests} tests, {_failures.Count} unexpected failures"));
    }

    /// <summary>
    /// The original's #PF handler, as a probe: reads the reason word first (the kernel's handler
    /// reads and clears it right after) and accounts for the event. Never sleeps.
    /// </summary>
    private void Observe(Kernel kernel, X86Cpu cpu)
    {
        if (cpu.Id >= kernel.ApfReasonEnabled.Count || !kernel.ApfReasonEnabled[cpu.Id])
        {
            return;
        }
        uint reason = cpu.ReadGuestU32(Kernel.ApfReasonGpa(cpu.Id));
        uint token = (uint)cpu.Cr2;
        bool mine = ReferenceEquals(kernel.Current, _self);
        switch (reason)
        {
            case 0:
                if (mine && _pass == options.Passes && options.Passes > 1)
                {
                    UnexpectedFaults++;
                }
                break;
            case ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT:
                NotPresent++;
                OwnAsyncFaults += mine ? 1 : 0;
                _outstanding[token] = _outstanding.GetValueOrDefault(token) + 1;
                break;
            case ApfAbi.KVM_PV_REASON_PAGE_READY when token == ApfAbi.WakeAllToken:
                WakeAll++;
                foreach (uint t in _outstanding.Keys.Where(t => (t & 0xfff) == (uint)cpu.Id).ToList())
                {
                    _outstanding[t] = 0;
                }
                break;
            case ApfAbi.KVM_PV_REASON_PAGE_READY:
                PageReady++;
                _outstanding[token] = _outstanding.GetValueOrDefault(token) - 1;
                break;
            default:
                UnknownReasons++;
                break;
        }
    }

    /// <summary>report(): one PASS or FAIL line.</summary>
    private async SimTask Report(bool pass, string what)
    {
        _tests++;
        if (!pass)
        {
            _failures.Add(what);
        }
        await libc.Puts($"{(pass ? "PASS" : "FAIL")}: {what}");
    }

    /// <summary>The loop of the original: one byte into every page of the buffer, in order.</summary>
    private sealed class EveryPage(ulong start) : IStoreSource
    {
        private ulong _next = start;

        public ulong NextAddress()
        {
            ulong a = _next;
            _next += Pgtable.PAGE_SIZE;
            return a;
        }
    }
}
