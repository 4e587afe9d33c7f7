using Hw;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Rigs;

/// <summary>One exception the CPU delivered through the substituted IDT.</summary>
/// <param name="AtNs">Virtual time of the delivery.</param>
/// <param name="Vector">The exception vector (14 for every #PF).</param>
/// <param name="ErrorCode">The error code pushed with it (0 for an async PF).</param>
/// <param name="Cr2">CR2 at delivery: the token of an async PF, or the faulting address.</param>
/// <param name="Reason">The reason word the guest read (and cleared) in its area: 0, 1 not present, 2 page ready.</param>
/// <param name="Context">The guest context it was delivered on.</param>
/// <param name="VmExits">The CPU's VM exits so far, at delivery.</param>
public readonly record struct GuestPf(long AtNs, byte Vector, uint ErrorCode, ulong Cr2, uint Reason, string Context, long VmExits)
{
    public uint Token => unchecked((uint)Cr2);
}

/// <summary>
/// A paravirtual guest reduced to what the host's half of the series talks to, standing in for
/// the guest kernel through the hardware: its IDT is <c>Substitute.For&lt;HostGuestGates&gt;()</c>,
/// whose #PF gate does what patch 4's kvm_handle_pf does with the reason word (a not-present puts
/// the faulting context aside until the page-ready of its token, a page-ready wakes it), and whose
/// interrupt gate acknowledges the APIC. Between those it switches the CPU between the contexts a
/// fixture spawns, FIFO, and an idle context that halts (patch 10's halt when nothing can run).
/// No guest scheduler, no ticks of its own: just enough guest for the host to be observed.
/// </summary>
public sealed class HostPvGuest
{
    private readonly HostApfRig _rig;
    private readonly List<GuestPf> _faults = [];
    private readonly List<GuestContext> _ready = [];
    private readonly Dictionary<uint, (GuestContext Ctx, SimSignal Signal)> _waiting = [];
    private readonly HashSet<uint> _early = [];
    private readonly HashSet<GuestContext> _finished = [];
    private readonly Dictionary<GuestContext, ulong> _cr3 = [];
    private bool _started;
    private int _reboots;

    public HostPvGuest(HostApfRig rig, X86Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(rig);
        ArgumentNullException.ThrowIfNull(cpu);
        _rig = rig;
        Cpu = cpu;
        AreaGpa = HostApfRig.AreaGpaOf(cpu.Id);
        Gates = Substitute.For<HostGuestGates>();
        Gates.Footprint(Arg.Any<X86Cpu>(), Arg.Any<GuestContext>()).Returns(Array.Empty<ulong>());
        Gates.DeliverException(Arg.Any<X86Cpu>(), Arg.Any<byte>(), Arg.Any<uint>(), Arg.Any<int>())
            .Returns(ci => OnException(ci.ArgAt<X86Cpu>(0), ci.ArgAt<byte>(1), ci.ArgAt<uint>(2)));
        Gates.When(g => g.DeliverInterrupt(Arg.Any<X86Cpu>(), Arg.Any<byte>())).Do(ci => OnInterrupt(ci.ArgAt<X86Cpu>(0)));
        Idle = new GuestContext($"idle{cpu.Id}");
        IdleLoop().Forget();
    }

    public X86Cpu Cpu { get; }

    /// <summary>The substituted IDT: configure <see cref="HostGuestGates.Footprint"/> or check calls on it.</summary>
    public HostGuestGates Gates { get; }

    /// <summary>Where this vCPU's reason word is (64-byte aligned; patch 2's area).</summary>
    public ulong AreaGpa { get; set; }

    /// <summary>The context that halts when nothing else can run.</summary>
    public GuestContext Idle { get; }

    /// <summary>Enable async PF from the first guest instruction (and wait for the wake-all that enabling queues).</summary>
    public bool EnableAtBoot { get; set; }

    /// <summary>With <see cref="EnableAtBoot"/>: also set send-always (patch 11).</summary>
    public bool SendAlwaysAtBoot { get; set; }

    /// <summary>True while the guest has async PF enabled (the MSR write succeeded and was not undone).</summary>
    public bool ApfEnabled { get; private set; }

    /// <summary>Every #PF delivered, in order.</summary>
    public IReadOnlyList<GuestPf> PageFaults => _faults;

    public IEnumerable<GuestPf> NotPresents => _faults.Where(f => f.Reason == ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT);

    public IEnumerable<GuestPf> PageReadies => _faults.Where(f => f.Reason == ApfAbi.KVM_PV_REASON_PAGE_READY && f.Token != ApfAbi.WakeAllToken);

    public IEnumerable<GuestPf> WakeAlls => _faults.Where(f => f.Reason == ApfAbi.KVM_PV_REASON_PAGE_READY && f.Token == ApfAbi.WakeAllToken);

    /// <summary>Page-readies whose token no context was waiting for (patch 4's dummy entries).</summary>
    public IReadOnlyCollection<uint> EarlyTokens => _early;

    /// <summary>Tokens of contexts still waiting for their page.</summary>
    public IReadOnlyCollection<uint> WaitingTokens => _waiting.Keys;

    /// <summary>Not-presents that carried a token another context was already waiting for.</summary>
    public int TokenCollisions { get; private set; }

    /// <summary>Interrupts delivered (each acknowledged with an EOI).</summary>
    public long Interrupts { get; private set; }

    /// <summary>Raised at each #PF delivery, after it was recorded and before the gate acts on it.</summary>
    public event Action<GuestPf>? Delivered;

    /// <summary>An ordinary guest #PF (reason 0): the fixture's handler fixes the mapping at CR2.</summary>
    public Action<ulong>? OrdinaryFault { get; set; }

    /// <summary>What the guest runs after a reset or a triple fault (the reboot); by default it only idles.</summary>
    public Func<GuestContext, SimTask>? RebootProgram { get; set; }

    public bool Finished(GuestContext ctx) => _finished.Contains(ctx);

    /// <summary>
    /// A guest context running <paramref name="body"/> in address space <paramref name="space"/>
    /// (see <see cref="HostApfRig.Cr3Of"/>) once it is first switched to. Before
    /// <see cref="HostApfRig.Go"/> or from guest code only.
    /// </summary>
    public GuestContext Spawn(string name, Func<GuestContext, SimTask> body, int space = 0)
    {
        ArgumentNullException.ThrowIfNull(body);
        var ctx = new GuestContext(name);
        _cr3[ctx] = HostApfRig.Cr3Of(space);
        Program(ctx, body).Forget();
        _ready.Add(ctx);
        if (_started && ReferenceEquals(Cpu.Current, Idle))
        {
            SwitchToNext();
        }
        return ctx;
    }

    /// <summary>
    /// A context that computes in 100 µs slices until <paramref name="stop"/> holds: another task
    /// for the vCPU to run while a toucher waits for its page.
    /// </summary>
    public GuestContext SpawnHog(Func<bool> stop, string name = "hog", int space = 0)
    {
        ArgumentNullException.ThrowIfNull(stop);
        return Spawn(name, async ctx =>
        {
            while (!stop())
            {
                await ctx.Compute(100 * Us);
            }
        }, space);
    }

    /// <summary>wrmsr(MSR_KVM_ASYNC_PF_EN) from guest code: enables async PF at <see cref="AreaGpa"/>. False means #GP.</summary>
    public bool EnableAsyncPf(bool sendAlways = false)
    {
        _rig.PokeGuestU32(AreaGpa, 0);
        ulong value = AreaGpa | ApfAbi.KVM_ASYNC_PF_ENABLED | (sendAlways ? ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS : 0);
        bool ok = Cpu.Wrmsr(_rig.Options.Abi.MSR_KVM_ASYNC_PF_EN, value);
        ApfEnabled = ok;
        return ok;
    }

    /// <summary>wrmsr(MSR_KVM_ASYNC_PF_EN, 0) from guest code.</summary>
    public bool DisableAsyncPf()
    {
        bool ok = Cpu.Wrmsr(_rig.Options.Abi.MSR_KVM_ASYNC_PF_EN, 0);
        ApfEnabled = false;
        return ok;
    }

    /// <summary>Boots: switches the CPU to the first context (the enabling boot code when asked for).</summary>
    internal void Start()
    {
        _started = true;
        Cpu.Idt = Gates;
        if (EnableAtBoot)
        {
            var boot = new GuestContext($"boot{Cpu.Id}");
            Program(boot, BootProgram).Forget();
            _ready.Insert(0, boot);
        }
        SwitchToNext();
    }

    /// <summary>After the host reset the vCPU: the guest starts over (its waiters are gone with its memory).</summary>
    internal void Reboot()
    {
        _reboots++;
        ApfEnabled = false;
        _waiting.Clear();
        _ready.Clear();
        _early.Clear();
        Cpu.Idt = Gates;
        Cpu.InterruptsEnabled = true;
        var init = new GuestContext($"reboot{_reboots}");
        Program(init, RebootProgram ?? (_ => SimTask.CompletedTask)).Forget();
        _ready.Add(init);
        SwitchToNext();
    }

    private async SimTask BootProgram(GuestContext ctx)
    {
        if (!EnableAsyncPf(SendAlwaysAtBoot))
        {
            throw new InvalidOperationException("the host refused MSR_KVM_ASYNC_PF_EN at boot");
        }
        // Enabling queues a wake-all (migration support); it is delivered at the next exit.
        while (!WakeAlls.Any())
        {
            await ctx.Compute(100_000);
        }
    }

    private async SimTask Program(GuestContext ctx, Func<GuestContext, SimTask> body)
    {
        await ctx.WaitScheduledIn();
        await body(ctx);
        _finished.Add(ctx);
        if (ReferenceEquals(Cpu.Current, ctx))
        {
            SwitchToNext();
        }
    }

    private async SimTask IdleLoop()
    {
        await Idle.WaitScheduledIn();
        while (true)
        {
            await Idle.Halt();
        }
    }

    private void SwitchToNext()
    {
        GuestContext next = Idle;
        if (_ready.Count > 0)
        {
            next = _ready[0];
            _ready.RemoveAt(0);
        }
        SwitchTo(next);
    }

    /// <summary>switch_to: the register switch, and the new context's address space (MOV to CR3) if it has its own.</summary>
    private void SwitchTo(GuestContext next)
    {
        Cpu.SwitchTo(next);
        if (_cr3.TryGetValue(next, out ulong cr3) && Cpu.Cr3 != cr3)
        {
            Cpu.WriteCr3(cr3);
        }
    }

    private void OnInterrupt(X86Cpu cpu)
    {
        Interrupts++;
        cpu.Wrmsr(X2Apic.MSR_X2APIC_EOI, 0);
    }

    /// <summary>The #PF gate: kvm_handle_pf's reading of the reason word, then the wait or the wake.</summary>
    private SimTask OnException(X86Cpu cpu, byte vector, uint errorCode)
    {
        var ctx = cpu.Current!;
        uint reason = 0;
        if (vector == Vectors.PageFault && ApfEnabled)
        {
            reason = _rig.PeekGuestU32(AreaGpa) ?? 0;
            if (reason != 0)
            {
                _rig.PokeGuestU32(AreaGpa, 0);
            }
        }
        var pf = new GuestPf(_rig.Loop.Now, vector, errorCode, cpu.Cr2, reason, ctx.Name, cpu.VmExits);
        _faults.Add(pf);
        Delivered?.Invoke(pf);
        switch (reason)
        {
            case ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT:
                return WaitForPage(ctx, pf.Token);
            case ApfAbi.KVM_PV_REASON_PAGE_READY:
                Wake(pf.Token);
                return SimTask.CompletedTask;
            default:
                OrdinaryFault?.Invoke(cpu.Cr2);
                return SimTask.CompletedTask;
        }
    }

    private async SimTask WaitForPage(GuestContext ctx, uint token)
    {
        if (_early.Remove(token))
        {
            return;
        }
        if (_waiting.ContainsKey(token))
        {
            TokenCollisions++;
            return;
        }
        var signal = new SimSignal(_rig.Loop);
        _waiting.Add(token, (ctx, signal));
        SwitchToNext();
        await signal.Wait();
    }

    private void Wake(uint token)
    {
        if (token == ApfAbi.WakeAllToken)
        {
            var all = _waiting.Values.ToList();
            _waiting.Clear();
            foreach (var w in all)
            {
                _ready.Add(w.Ctx);
                w.Signal.Set();
            }
            if (ReferenceEquals(Cpu.Current, Idle) && _ready.Count > 0)
            {
                SwitchToNext();
            }
            return;
        }
        if (!_waiting.Remove(token, out var waiter))
        {
            _early.Add(token);
            return;
        }
        // The woken context preempts whatever runs (it goes back to the head of the queue).
        if (Cpu.Current is { } current && !ReferenceEquals(current, Idle) && !_finished.Contains(current))
        {
            _ready.Insert(0, current);
        }
        SwitchTo(waiter.Ctx);
        waiter.Signal.Set();
    }
}
