using Hw;
using KvmApf.Guest;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Rigs;

/// <summary>The shape of a <see cref="GuestHwRig"/>: a guest kernel on bare vCPUs with a host played by the test.</summary>
public sealed record GuestHwOptions
{
    public int Cpus { get; init; } = 1;

    /// <summary>Guest RAM; the guest's page allocator starts at 64 MiB.</summary>
    public long GuestMemBytes { get; init; } = 128 * MiB;

    /// <summary>The ABI profile the guest kernel is built against.</summary>
    public ApfAbi Abi { get; init; } = ApfAbi.V3;

    /// <summary>CONFIG_PREEMPT of the guest.</summary>
    public bool Preempt { get; init; }

    /// <summary>CONFIG_KVM_GUEST of the guest (kvmclock is used either way when the host offers it).</summary>
    public bool KvmGuest { get; init; } = true;

    /// <summary>
    /// The KVM_FEATURE_* bits the host advertises in CPUID 0x40000001 (see <see cref="Features"/>);
    /// by default a v3 host's (kvmclock and async PF at bit 3), whatever <see cref="Abi"/> the guest is built with.
    /// </summary>
    public uint CpuidFeatures { get; init; } = Features(ApfAbi.V3, asyncPf: true);

    /// <summary>The host answers CPUID 0x40000000 with KVM's signature (the guest knows it runs on KVM).</summary>
    public bool KvmSignature { get; init; } = true;

    /// <summary>The host emulates the local APIC timer the guest programs (periodic ticks at the guest's HZ).</summary>
    public bool ApicTimer { get; init; } = true;

    public CostModel Costs { get; init; } = new();

    /// <summary>CPUID 0x40000001 EAX of a host with kvmclock, and with async PF of <paramref name="abi"/> if <paramref name="asyncPf"/>.</summary>
    public static uint Features(ApfAbi abi, bool asyncPf, bool clock = true)
    {
        ArgumentNullException.ThrowIfNull(abi);
        return (clock ? 1u << KvmPara.KVM_FEATURE_CLOCKSOURCE : 0) | (asyncPf ? 1u << abi.KVM_FEATURE_ASYNC_PF : 0);
    }
}

/// <summary>What the hardware of a <see cref="GuestHwRig"/> saw, in one sequence.</summary>
public enum HwEventKind
{
    /// <summary>An exception went through the guest's IDT (Address = CR2, Value = vector).</summary>
    ExceptionDelivered,
    /// <summary>An interrupt went through the guest's IDT (Value = vector).</summary>
    InterruptDelivered,
    /// <summary>A read of a watched guest-physical u32 (Value = what was read).</summary>
    Read,
    /// <summary>A write of a watched guest-physical u32 by guest software (Value = what was written).</summary>
    Write,
    /// <summary>The test's host wrote the reason word before an injection (Value = the reason).</summary>
    HostWrite,
    /// <summary>A VM exit (Value = the exit reason).</summary>
    VmExit,
    /// <summary>A WRMSR (Address = the MSR, Value = the value).</summary>
    Wrmsr,
}

/// <summary>One hardware event: <see cref="MemAccesses"/> is how many guest RAM accesses had happened when it was logged.</summary>
public readonly record struct HwEvent(long AtNs, int Cpu, HwEventKind Kind, ulong Address, ulong Value, long MemAccesses);

/// <summary>A WRMSR the guest executed, with the virtual time it was executed at.</summary>
public readonly record struct MsrWrite(long AtNs, int Cpu, uint Index, ulong Value);

/// <summary>
/// A guest kernel (Kconfig.Guest) running on <see cref="X86Cpu"/>s with no real host. The CPUs'
/// inline exit handler is an NSubstitute substitute that answers the KVM CPUID leaves with the
/// feature bits of <see cref="GuestHwOptions.CpuidFeatures"/> and records every WRMSR; their root
/// is <see cref="IdentityRoot"/>, which maps every guest-physical page to the same address of
/// <see cref="Ram"/>. A loop per vCPU (<see cref="VcpuLoop"/>) plays the host: it enters the vCPU,
/// re-enters after each exit, blocks a halted vCPU until something is queued for it, emulates the
/// APIC timer and IPIs the guest programs through MSRs, and injects what the fixture queues with
/// <see cref="InjectAsyncPf"/>, <see cref="InjectPageFault"/> and <see cref="InjectInterrupt"/>.
/// </summary>
public sealed class GuestHwRig
{
    private readonly VcpuState[] _vcpus;
    private readonly List<HwEvent> _events = [];
    private readonly List<MsrWrite> _msrWrites = [];
    private readonly Dictionary<GuestContext, List<long>> _resumed = [];
    private readonly HashSet<ulong> _watched = [];
    private Func<GuestHwRig, TaskStruct, SimTask>? _init;

    public GuestHwRig(GuestHwOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        Loop = new EventLoop();
        Ram = new WatchedMemory(this, new PhysicalMemory());
        Root = new IdentityRoot();
        Exits = Substitute.For<IInlineExitHandler>();
        Exits.Cpuid(Arg.Any<int>(), KvmPara.KVM_CPUID_SIGNATURE).Returns(options.KvmSignature ? KvmPara.KVM_CPUID_FEATURES : 0u);
        Exits.Cpuid(Arg.Any<int>(), KvmPara.KVM_CPUID_FEATURES).Returns(options.KvmSignature ? options.CpuidFeatures : 0u);
        Exits.WriteMsr(Arg.Any<int>(), Arg.Any<uint>(), Arg.Any<ulong>())
            .Returns(call => OnWriteMsr(call.ArgAt<int>(0), call.ArgAt<uint>(1), call.ArgAt<ulong>(2)));
        Cpus = new X86Cpu[options.Cpus];
        _vcpus = new VcpuState[options.Cpus];
        for (int i = 0; i < options.Cpus; i++)
        {
            Cpus[i] = new X86Cpu(i, Loop, Ram, options.Costs) { Root = Root, InlineExits = Exits };
            _vcpus[i] = new VcpuState(Loop, i, this);
        }
        Console = new SerialPort();
        Guest = new Kernel(Kconfig.Guest with { Abi = options.Abi, CONFIG_PREEMPT = options.Preempt, CONFIG_KVM_GUEST = options.KvmGuest }, Loop,
            new Rng(1).Split("guest"), options.Costs, Cpus);
        Libc = new Libc(Guest);
        foreach (var cpu in Cpus)
        {
            var kernelHook = cpu.Resuming;
            cpu.Resuming = (c, ctx) =>
            {
                if (_resumed.TryGetValue(ctx, out var times))
                {
                    times.Add(Loop.Now);
                }
                kernelHook?.Invoke(c, ctx);
            };
        }
        foreach (int cpu in Enumerable.Range(0, options.Cpus))
        {
            _watched.Add(Kernel.ApfReasonGpa(cpu));
        }
    }

    public GuestHwOptions Options { get; }

    public EventLoop Loop { get; }

    /// <summary>Guest RAM (guest-physical = host-physical here), watching the reason words.</summary>
    public IPhysicalMemory Ram { get; }

    public IdentityRoot Root { get; }

    /// <summary>The substitute every vCPU's inline exits (CPUID, WRMSR) go to.</summary>
    public IInlineExitHandler Exits { get; }

    public X86Cpu[] Cpus { get; }

    public SerialPort Console { get; }

    public Kernel Guest { get; }

    public Libc Libc { get; }

    /// <summary>Every WRMSR the guest executed, in order.</summary>
    public IReadOnlyList<MsrWrite> MsrWrites => _msrWrites;

    /// <summary>Deliveries, reason-word accesses, exits and WRMSRs, in the order they happened.</summary>
    public IReadOnlyList<HwEvent> Events => _events;

    /// <summary>Guest RAM accesses so far (reads and writes of any size, any address).</summary>
    public long MemAccesses { get; private set; }

    /// <summary>True once the guest's init program has returned.</summary>
    public bool Finished { get; private set; }

    /// <summary>The guest task's init, once forked.</summary>
    public TaskStruct? Init => Guest.Init;

    /// <summary>Powers the guest on with <paramref name="init"/> as its first process and starts one host loop per vCPU.</summary>
    public void Start(Func<GuestHwRig, TaskStruct, SimTask> init)
    {
        ArgumentNullException.ThrowIfNull(init);
        _init = init;
        Guest.PowerOn(Console, (ulong)Options.GuestMemBytes, InitMain);
        for (int i = 0; i < Cpus.Length; i++)
        {
            VcpuLoop(i).Forget();
        }
    }

    /// <summary>Runs the machine until <paramref name="condition"/> holds (checked every 10 µs of virtual time); fails after <paramref name="budgetNs"/>.</summary>
    public void RunUntil(Func<bool> condition, long budgetNs, string what)
    {
        ArgumentNullException.ThrowIfNull(condition);
        long deadline = Loop.Now + budgetNs;
        while (!condition())
        {
            Assert.That(Loop.Now, Is.LessThan(deadline), () => $"{what}: not reached within {budgetNs} ns of virtual time");
            Loop.Run(Math.Min(deadline, Loop.Now + 10_000));
        }
    }

    /// <summary>Runs the machine for <paramref name="ns"/> of virtual time.</summary>
    public void RunFor(long ns) => Loop.Run(Loop.Now + ns);

    /// <summary>Boots the guest with <paramref name="init"/> and runs until init has started.</summary>
    public void Boot(Func<GuestHwRig, TaskStruct, SimTask> init, long budgetNs = 100_000_000)
    {
        Start(init);
        RunUntil(() => Init is not null, budgetNs, "init forked");
    }

    // ---- the host's side ------------------------------------------------------------------

    /// <summary>
    /// Queues an async PF event for <paramref name="cpu"/>: right before the next VM entry the host
    /// writes <paramref name="reason"/> at the CPU's registered area (<see cref="Kernel.ApfReasonGpa"/>)
    /// and injects a #PF (error code 0) whose CR2 is <paramref name="token"/>.
    /// </summary>
    public void InjectAsyncPf(int cpu, uint reason, uint token) =>
        Queue(cpu, new Pending(new EventInjection(Vectors.PageFault, IsException: true, 0, HasErrorCode: true, token), reason));

    /// <summary>Queues a #PF at <paramref name="cr2"/> for <paramref name="cpu"/>, leaving the reason word as it is.</summary>
    public void InjectPageFault(int cpu, ulong cr2, uint errorCode) =>
        Queue(cpu, new Pending(new EventInjection(Vectors.PageFault, IsException: true, errorCode, HasErrorCode: true, cr2), null));

    /// <summary>Queues an external interrupt for <paramref name="cpu"/>; it is injected once the guest has interrupts enabled.</summary>
    public void InjectInterrupt(int cpu, byte vector) =>
        Queue(cpu, new Pending(new EventInjection(vector, IsException: false), null));

    /// <summary>True while the host keeps <paramref name="cpu"/> blocked after a HLT exit (nothing queued for it).</summary>
    public bool Halted(int cpu) => _vcpus[cpu].Halted;

    /// <summary>Nothing queued for <paramref name="cpu"/> is still waiting for a VM entry.</summary>
    public bool Drained(int cpu) => _vcpus[cpu].Exceptions.Count == 0 && _vcpus[cpu].Interrupts.Count == 0;

    /// <summary>Starts recording the virtual times at which the CPU resumes guest code of <paramref name="ctx"/>.</summary>
    public IReadOnlyList<long> WatchResumes(GuestContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        var times = new List<long>();
        _resumed[ctx] = times;
        return times;
    }

    /// <summary>The exits of <paramref name="cpu"/> after event index <paramref name="from"/>.</summary>
    public IEnumerable<ExitReason> ExitsAfter(int cpu, int from) =>
        _events.Skip(from).Where(e => e.Cpu == cpu && e.Kind == HwEventKind.VmExit).Select(e => (ExitReason)e.Value);

    /// <summary>The sleeper-hash entries of the guest, bucket by bucket.</summary>
    public IReadOnlyList<KvmTaskSleepNode> SleepNodes() => [.. Guest.AsyncPfSleepers.SelectMany(b => b.List)];

    /// <summary>The PTE mapping <paramref name="gva"/> in <paramref name="task"/>'s page tables (0 if a level is missing), read from RAM.</summary>
    public ulong GuestPte(TaskStruct task, ulong gva)
    {
        ArgumentNullException.ThrowIfNull(task);
        ulong table = task.Mm!.Pgd;
        for (int level = 3; level >= 0; level--)
        {
            ulong entry = ((WatchedMemory)Ram).Inner.ReadU64(table + (((gva >> (Pgtable.PAGE_SHIFT + (9 * level))) & 511) * 8));
            if (level == 0 || !Pgtable.PtePresent(entry))
            {
                return entry;
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        return 0;
    }

    /// <summary>A token in the host's format: <c>(id &lt;&lt; 12) | vcpu_id</c>.</summary>
    public static uint Token(uint id, int cpu) => (id << 12) | (uint)cpu;

    /// <summary>The CPU executing <paramref name="task"/>'s user code in guest mode now, or -1.</summary>
    public int RunningInUserMode(TaskStruct task)
    {
        ArgumentNullException.ThrowIfNull(task);
        var cpu = Cpus.FirstOrDefault(c => c.InGuestMode && ReferenceEquals(c.Current, task.Context) && c.Cpl == 3);
        return cpu?.Id ?? -1;
    }

    /// <summary>
    /// Waits until <paramref name="task"/> runs user code, then plays the host telling its CPU that
    /// the page it touched is not present under <paramref name="token"/> (reason 1), and runs until
    /// the task has gone to sleep. Returns the CPU.
    /// </summary>
    public int PutToSleep(TaskStruct task, uint token)
    {
        ArgumentNullException.ThrowIfNull(task);
        RunUntil(() => RunningInUserMode(task) >= 0, 100_000_000, $"{task} running in user mode");
        int cpu = RunningInUserMode(task);
        InjectAsyncPf(cpu, ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT, token);
        RunUntil(() => task.State == TaskStates.TASK_UNINTERRUPTIBLE && !task.OnRq && !Cpus.Any(c => ReferenceEquals(c.Current, task.Context)),
            10_000_000, $"{task} asleep on token {token:x}");
        return cpu;
    }

    /// <summary>A guest thread that computes in 100 µs slices until <paramref name="stop"/> says so.</summary>
    public static async SimTask Spin(TaskStruct self, Func<bool> stop)
    {
        ArgumentNullException.ThrowIfNull(self);
        ArgumentNullException.ThrowIfNull(stop);
        while (!stop())
        {
            await self.Context!.Compute(100_000);
        }
    }

    /// <summary>
    /// Boots the guest with an init that starts <paramref name="threads"/> spinning threads and then
    /// sleeps for good (so it never competes for a CPU), and returns the threads once they exist.
    /// </summary>
    public IReadOnlyList<TaskStruct> BootWithSpinners(int threads, Func<bool>? stop = null)
    {
        var started = new List<TaskStruct>();
        stop ??= () => false;
        Boot(async (r, self) =>
        {
            for (int i = 0; i < threads; i++)
            {
                started.Add(await r.Libc.PthreadCreate($"spin{i}", t => Spin(t, stop)));
            }
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        RunUntil(() => started.Count == threads, 100_000_000, "threads created");
        RunFor(2 * Guest.TickNsec);
        return started;
    }

    /// <summary>
    /// KVM's vcpu_enter_guest and __vcpu_run, as a test plays them: inject the first queued
    /// exception, or the first queued interrupt if the guest can take it (else ask for an
    /// interrupt window), enter, and deal with the exit.
    /// </summary>
    private async SimTask VcpuLoop(int id)
    {
        var cpu = Cpus[id];
        var v = _vcpus[id];
        while (true)
        {
            if (cpu.Idt is { } idt and not RecordingIdt)
            {
                cpu.Idt = new RecordingIdt(this, idt);
            }
            var injection = v.Next(cpu);
            var exit = await cpu.Enter(0, injection);
            Log(id, HwEventKind.VmExit, 0, (ulong)exit.Reason);
            if (exit.IdtVectoring is { } again)
            {
                throw new InvalidOperationException($"vCPU {id}: delivery of {again} exited; the identity root never misses");
            }
            switch (exit.Reason)
            {
                case ExitReason.Hlt:
                    while (v.Exceptions.Count == 0 && v.Interrupts.Count == 0)
                    {
                        v.Halted = true;
                        await v.Wake.Wait();
                    }
                    v.Halted = false;
                    break;
                case ExitReason.InterruptWindow:
                    cpu.InterruptWindowRequested = false;
                    break;
                case ExitReason.ExternalInterrupt:
                    break;
                default:
                    throw new InvalidOperationException($"vCPU {id}: unexpected exit {exit}");
            }
        }
    }

    private void Queue(int cpu, Pending pending)
    {
        var v = _vcpus[cpu];
        if (pending.Injection.IsException)
        {
            v.Exceptions.Enqueue(pending);
        }
        else if (!v.Interrupts.Any(p => p.Injection.Vector == pending.Injection.Vector))
        {
            v.Interrupts.Enqueue(pending); // one IRR bit per vector
        }
        if (v.Wake.Waiting)
        {
            v.Wake.Set();
        }
        else
        {
            Cpus[cpu].Kick();
        }
    }

    private bool OnWriteMsr(int cpu, uint index, ulong value)
    {
        _msrWrites.Add(new MsrWrite(Loop.Now, cpu, index, value));
        Log(cpu, HwEventKind.Wrmsr, index, value);
        var v = _vcpus[cpu];
        switch (index)
        {
            case X2Apic.MSR_X2APIC_LVTT:
                v.Lvtt = value;
                break;
            case X2Apic.MSR_X2APIC_TMICT:
                EventLoop.Cancel(v.Timer);
                v.TimerPeriodNs = (long)value;
                if (Options.ApicTimer && value > 0)
                {
                    Loop.ArmAfter(v.Timer, v.TimerPeriodNs);
                }
                break;
            case X2Apic.MSR_X2APIC_ICR:
                int destination = (int)(value >> 32);
                if (destination < Cpus.Length)
                {
                    InjectInterrupt(destination, (byte)value);
                }
                break;
        }
        return true;
    }

    private void TimerFired(VcpuState v)
    {
        InjectInterrupt(v.Id, (byte)(v.Lvtt & 0xff));
        if ((v.Lvtt & X2Apic.APIC_LVT_TIMER_PERIODIC) != 0)
        {
            Loop.ArmAfter(v.Timer, v.TimerPeriodNs);
        }
    }

    private void WriteReason(int cpu, uint reason)
    {
        ulong gpa = Kernel.ApfReasonGpa(cpu);
        Log(cpu, HwEventKind.HostWrite, gpa, reason);
        ((WatchedMemory)Ram).Inner.WriteU32(gpa, reason);
    }

    private void Log(int cpu, HwEventKind kind, ulong address, ulong value) =>
        _events.Add(new HwEvent(Loop.Now, cpu, kind, address, value, MemAccesses));

    private async SimTask InitMain(TaskStruct self)
    {
        await _init!(this, self);
        Finished = true;
    }

    private readonly record struct Pending(EventInjection Injection, uint? Reason);

    private sealed class VcpuState
    {
        public VcpuState(EventLoop loop, int id, GuestHwRig rig)
        {
            Id = id;
            Wake = new SimSignal(loop);
            Timer = new SimTimer(() => rig.TimerFired(this));
            Rig = rig;
        }

        public int Id { get; }

        public GuestHwRig Rig { get; }

        public Queue<Pending> Exceptions { get; } = new();

        public Queue<Pending> Interrupts { get; } = new();

        public SimSignal Wake { get; }

        public bool Halted { get; set; }

        public SimTimer Timer { get; }

        public ulong Lvtt { get; set; }

        public long TimerPeriodNs { get; set; }

        /// <summary>inject_pending_event(): an exception first, then an interrupt if IF allows it.</summary>
        public EventInjection? Next(X86Cpu cpu)
        {
            if (Exceptions.TryDequeue(out var e))
            {
                if (e.Reason is { } reason)
                {
                    Rig.WriteReason(Id, reason);
                }
                return e.Injection;
            }
            if (Interrupts.Count > 0)
            {
                if (cpu.InterruptAllowed)
                {
                    return Interrupts.Dequeue().Injection;
                }
                cpu.InterruptWindowRequested = true;
            }
            return null;
        }
    }

    /// <summary>The guest's IDT with every delivery logged before the guest's handler runs.</summary>
    private sealed class RecordingIdt(GuestHwRig rig, IInterruptDescriptorTable inner) : IInterruptDescriptorTable
    {
        public void DeliverInterrupt(X86Cpu cpu, byte vector)
        {
            rig.Log(cpu.Id, HwEventKind.InterruptDelivered, 0, vector);
            inner.DeliverInterrupt(cpu, vector);
        }

        public SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode, int savedCpl)
        {
            rig.Log(cpu.Id, HwEventKind.ExceptionDelivered, cpu.Cr2, vector);
            return inner.DeliverException(cpu, vector, errorCode, savedCpl);
        }

        public int DeliveryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages) => inner.DeliveryFootprint(cpu, ctx, pages);
    }

    /// <summary>Guest RAM that counts every access and logs those of the reason words.</summary>
    private sealed class WatchedMemory(GuestHwRig rig, PhysicalMemory inner) : IPhysicalMemory
    {
        public PhysicalMemory Inner { get; } = inner;

        public int FramesWithContent => Inner.FramesWithContent;

        public ulong ReadU64(ulong hpa)
        {
            rig.MemAccesses++;
            return Inner.ReadU64(hpa);
        }

        public void WriteU64(ulong hpa, ulong value)
        {
            rig.MemAccesses++;
            Inner.WriteU64(hpa, value);
        }

        public uint ReadU32(ulong hpa)
        {
            rig.MemAccesses++;
            uint value = Inner.ReadU32(hpa);
            if (rig._watched.Contains(hpa))
            {
                rig.Log(CpuOf(hpa), HwEventKind.Read, hpa, value);
            }
            return value;
        }

        public void WriteU32(ulong hpa, uint value)
        {
            rig.MemAccesses++;
            Inner.WriteU32(hpa, value);
            if (rig._watched.Contains(hpa))
            {
                rig.Log(CpuOf(hpa), HwEventKind.Write, hpa, value);
            }
        }

        public byte[]? TakeFrame(ulong pfn) => Inner.TakeFrame(pfn);

        public void PutFrame(ulong pfn, byte[]? content) => Inner.PutFrame(pfn, content);

        private static int CpuOf(ulong gpa) => (int)((gpa >> Pgtable.PAGE_SHIFT) - GuestLayout.PerCpuBase);
    }
}

/// <summary>
/// An EPT that maps every guest-physical page to the host-physical page of the same address, but
/// the page frames a test puts in <see cref="Unmapped"/> (as if the host had zapped their sptes).
/// </summary>
public sealed class IdentityRoot : ITranslationRoot
{
    /// <summary>Guest page frames the EPT does not map: an access to one exits.</summary>
    public HashSet<ulong> Unmapped { get; } = [];

    public bool TwoDimensional => true;

    public bool TryTranslate(ulong address, bool write, out ulong hostPhysical) => TryTranslatePhysical(address, out hostPhysical);

    public bool TryTranslatePhysical(ulong gpa, out ulong hostPhysical)
    {
        hostPhysical = gpa & ~(ulong)(PhysicalMemory.PageSize - 1);
        return Unmapped.Count == 0 || !Unmapped.Contains(gpa >> PhysicalMemory.PageShift);
    }
}
