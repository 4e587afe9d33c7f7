namespace Hw;

/// <summary>
/// One x86 CPU with VMX, used as a vCPU. In root mode it belongs to the host's vCPU thread,
/// which calls <see cref="Enter"/> (KVM's <c>vmx_vcpu_run</c>); in guest mode it executes the
/// current <see cref="GuestContext"/> until something makes it exit. A VM exit freezes the
/// guest context: a compute segment in flight is cut at the exit and re-armed at the next entry
/// (its end event is cancelled through the generation stamp of <see cref="SimEvent"/>).
/// </summary>
public sealed class X86Cpu
{
    private const ulong PteFrameMask = 0x000F_FFFF_FFFF_F000UL;

    private readonly EventLoop _loop;
    private readonly IPhysicalMemory _ram;
    private readonly CostModel _costs;
    private readonly SimTimer _segmentEnd;
    private readonly SimTimer _entryTimer;
    private readonly SimTimer _exitTimer;
    private readonly ExitSource _exitSource = new();
    private readonly Tlb _tlb = new();
    private ITranslationRoot? _root;

    private long _debt;
    private long _segmentStart = -1;
    private long _segmentLength;
    private SegmentOwner _segmentOwner;
    private int _segmentStores;
    private bool _inStep;
    private bool _again;
    private bool _kickPending;
    private EventInjection? _pendingInjection;

    private enum SegmentOwner
    {
        Debt,
        Kernel,
        User,
    }

    public X86Cpu(int id, EventLoop loop, IPhysicalMemory ram, CostModel costs)
    {
        Id = id;
        _loop = loop;
        _ram = ram;
        _costs = costs;
        _segmentEnd = new SimTimer(SegmentEnded);
        _entryTimer = new SimTimer(Entered);
        _exitTimer = new SimTimer(() => _exitSource.Complete(LastExit));
        Residency = new Residency(loop);
    }

    public int Id { get; }

    public EventLoop Loop => _loop;

    public IPhysicalMemory Ram => _ram;

    public CostModel Costs => _costs;

    // ---- architectural state -------------------------------------------------------------

    public bool InGuestMode { get; private set; }

    /// <summary>Page-fault linear address.</summary>
    public ulong Cr2 { get; set; }

    /// <summary>Guest page-table root (guest-physical). Write through <see cref="WriteCr3"/>.</summary>
    public ulong Cr3 { get; private set; }

    /// <summary>RFLAGS.IF of the guest.</summary>
    public bool InterruptsEnabled { get; set; } = true;

    /// <summary>The guest context the CPU executes in guest mode.</summary>
    public GuestContext? Current { get; private set; }

    /// <summary>Privilege level of the guest code executing now.</summary>
    public int Cpl => Current?.Cpl ?? 0;

    /// <summary>The guest's gates; set by the guest kernel's trap_init.</summary>
    public IInterruptDescriptorTable? Idt { get; set; }

    /// <summary>
    /// Called right before guest code of a context runs again (an operation completes or an
    /// event is delivered on it): the guest kernel's notion of <c>current</c> follows from it.
    /// </summary>
    public Action<X86Cpu, GuestContext>? Resuming { get; set; }

    // ---- VMX state, owned by the host ----------------------------------------------------

    /// <summary>The MMU root walked in guest mode (EPT or shadow); set by KVM before entry. A new root flushes the paging-structure cache.</summary>
    public ITranslationRoot? Root
    {
        get => _root;
        set
        {
            _root = value;
            PagingCache.Flush();
        }
    }

    /// <summary>
    /// The upper levels of the guest's page tables, as walks since the last TLB flush found them
    /// (<see cref="PagingStructureCache"/>): the CPU's walks use it, and so do the guest kernel's
    /// software walks of its own tables.
    /// </summary>
    public PagingStructureCache PagingCache { get; } = new();

    /// <summary>Handler of MSR, CPUID and APIC exits.</summary>
    public IInlineExitHandler? InlineExits { get; set; }

    /// <summary>Asks for an exit as soon as the guest can take an interrupt (KVM's enable_irq_window).</summary>
    public bool InterruptWindowRequested { get; set; }

    /// <summary>The last VM exit.</summary>
    public VmExit LastExit { get; private set; }

    /// <summary>The context whose execution caused the last exit.</summary>
    public GuestContext? LastExitContext { get; private set; }

    public long VmExits { get; private set; }

    public long VmEntries { get; private set; }

    /// <summary>Time-in-state counters; the host marks stalls and halts, the CPU marks guest and host mode.</summary>
    public Residency Residency { get; }

    /// <summary>
    /// What cutting the segment in flight now would credit to the current context, as
    /// <see cref="Pause"/> credits it: the guest-mode time it has run (user or kernel), the stores
    /// of a store run that are done, and the swap-in of the first of them if it needed one.
    /// Changes nothing. A context's counters move when a segment ends or is cut, while
    /// <see cref="Residency"/> counts the current stretch too: a measured interval that opens or
    /// closes inside a segment adds this to the counters, so that it counts the part of the
    /// segment that fell inside it, as it counts the vCPU's guest time.
    /// </summary>
    public SegmentProgress InFlight
    {
        get
        {
            if (_segmentStart < 0 || Current is not { } ctx)
            {
                return default;
            }
            long elapsed = _loop.Now - _segmentStart;
            switch (_segmentOwner)
            {
                case SegmentOwner.User:
                    long stores = ctx.UserKind == OpKind.StoreLoop ? elapsed / ctx.StoreCost : 0;
                    return new SegmentProgress(ctx, elapsed, 0, stores, stores > 0 && ctx.StoreNeededSwapIn ? 1 : 0);
                default:
                    return new SegmentProgress(ctx, 0, elapsed, 0, 0);
            }
        }
    }

    /// <summary>True when the guest can take an external interrupt now (IF set, not inside an event delivery).</summary>
    public bool InterruptAllowed => InterruptsEnabled;

    /// <summary>
    /// VM entry: enters guest mode after <paramref name="hostNs"/> of host work and the entry
    /// cost, delivers <paramref name="injection"/> through the guest's IDT, and completes when
    /// the CPU exits again.
    /// </summary>
    public SimTask<VmExit> Enter(long hostNs, EventInjection? injection)
    {
        if (InGuestMode || _entryTimer.Armed)
        {
            throw new InvalidOperationException($"vCPU {Id}: VM entry while already entering or in guest mode");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(hostNs);
        _pendingInjection = injection;
        _loop.ArmAfter(_entryTimer, hostNs + _costs.VmEntryNs);
        return _exitSource.Task();
    }

    /// <summary>Forces an exit (the host's IPI to a running vCPU). A vCPU about to enter exits right after entering.</summary>
    public void Kick()
    {
        if (InGuestMode)
        {
            Exit(new VmExit(ExitReason.ExternalInterrupt, Cpl: Cpl));
        }
        else if (_entryTimer.Armed)
        {
            _kickPending = true;
        }
    }

    /// <summary>Invalidates every cached translation (INVEPT / INVVPID, or a shadow root change).</summary>
    public void FlushTlb()
    {
        _tlb.Flush();
        PagingCache.Flush();
        RecheckStoreRun();
    }

    /// <summary>A run of stores judged as hits when it started is cut where it is and judged again after a TLB flush.</summary>
    private void RecheckStoreRun()
    {
        if (_segmentStart >= 0 && _segmentOwner == SegmentOwner.User && Current?.UserKind == OpKind.StoreLoop)
        {
            Pause();
            Kick0();
        }
    }

    /// <summary>
    /// Called by the host when the fault of the last exit needed swap I/O. A user store's fault is
    /// counted on the context that faulted when that store retires, so that a measured interval
    /// counts a store's swap-in with the store itself; a kernel access's is not a store's.
    /// </summary>
    public void AccountMajorFault()
    {
        if (LastExitContext is not null && (LastExit.ErrorCode & (uint)PfErr.User) != 0)
        {
            LastExitContext.StoreNeededSwapIn = true;
        }
    }

    /// <summary>Translates a guest-physical address through the current root (EPT), for the host's and guest's software walks.</summary>
    public bool TryGuestPhysical(ulong gpa, out ulong hpa)
    {
        hpa = 0;
        return Root is not null && Root.TryTranslatePhysical(gpa, out hpa);
    }

    // ---- what guest software does ----------------------------------------------------------

    /// <summary>Makes <paramref name="next"/> the executing context (the register switch of the guest's switch_to).</summary>
    public void SwitchTo(GuestContext next)
    {
        ArgumentNullException.ThrowIfNull(next);
        if (ReferenceEquals(next, Current))
        {
            return;
        }
        if (next.Cpu is not null && !ReferenceEquals(next.Cpu, this))
        {
            throw new InvalidOperationException($"{next} is executing on vCPU {next.Cpu.Id}; switch it out there first");
        }
        Pause();
        if (Current is not null)
        {
            Current.Cpu = null;
        }
        Current = next;
        next.Cpu = this;
        Kick0();
    }

    /// <summary>LIDT with a null table and a fault: the classic way a guest resets itself (a triple fault).</summary>
    public void TripleFault()
    {
        Idt = null;
        if (InGuestMode)
        {
            Exit(new VmExit(ExitReason.TripleFault, Cpl: Cpl));
        }
    }

    /// <summary>MOV to CR3: a new page-table root; flushes the TLB.</summary>
    public void WriteCr3(ulong cr3)
    {
        Cr3 = cr3;
        FlushTlb();
    }

    /// <summary>INVLPG.</summary>
    public void Invlpg(ulong gva)
    {
        _tlb.Remove(gva >> PhysicalMemory.PageShift);
        PagingCache.Flush();
        RecheckStoreRun();
    }

    /// <summary>Guest kernel time owed by code that cannot sleep (interrupt handlers); executed before anything else.</summary>
    public void Charge(long ns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ns);
        _debt += ns;
    }

    /// <summary>WRMSR (the _safe form): false means #GP.</summary>
    public bool Wrmsr(uint index, ulong value)
    {
        Charge(_costs.InlineExitNs);
        return InlineExits?.WriteMsr(Id, index, value) ?? false;
    }

    /// <summary>RDMSR (the _safe form): false means #GP.</summary>
    public bool Rdmsr(uint index, out ulong value)
    {
        Charge(_costs.InlineExitNs);
        value = 0;
        return InlineExits?.ReadMsr(Id, index, out value) ?? false;
    }

    /// <summary>CPUID, EAX of <paramref name="leaf"/>.</summary>
    public uint Cpuid(uint leaf)
    {
        Charge(_costs.InlineExitNs);
        return InlineExits?.Cpuid(Id, leaf) ?? 0;
    }

    /// <summary>Reads a guest-physical u64 that the guest kernel has made sure is mapped (see <see cref="Touch"/>).</summary>
    public ulong ReadGuestU64(ulong gpa) => _ram.ReadU64(MappedOrThrow(gpa));

    public void WriteGuestU64(ulong gpa, ulong value) => _ram.WriteU64(MappedOrThrow(gpa), value);

    public uint ReadGuestU32(ulong gpa) => _ram.ReadU32(MappedOrThrow(gpa));

    public void WriteGuestU32(ulong gpa, uint value) => _ram.WriteU32(MappedOrThrow(gpa), value);

    /// <summary>Reads a guest-physical u64 if its page is mapped now; false (and nothing read) if touching it would exit.</summary>
    public bool TryReadGuestU64(ulong gpa, out ulong value)
    {
        if (!TryHostAddress(gpa, out ulong hpa))
        {
            value = 0;
            return false;
        }
        value = _ram.ReadU64(hpa);
        return true;
    }

    /// <summary>Writes a guest-physical u64 if its page is mapped now; false (and nothing written) if touching it would exit.</summary>
    public bool TryWriteGuestU64(ulong gpa, ulong value)
    {
        if (!TryHostAddress(gpa, out ulong hpa))
        {
            return false;
        }
        _ram.WriteU64(hpa, value);
        return true;
    }

    /// <summary>True if guest-physical <paramref name="gpa"/> is mapped now (no exit needed to touch it).</summary>
    public bool GuestPhysicalMapped(ulong gpa) => TryHostAddress(gpa, out _);

    /// <summary>
    /// Where the guest kernel maps all of guest-physical memory (its direct map): under shadow
    /// paging a kernel access to a physical address is an access to this linear address.
    /// </summary>
    public ulong DirectMapBase { get; set; }

    // ---- the engine ------------------------------------------------------------------------

    private ulong MappedOrThrow(ulong gpa) => TryHostAddress(gpa, out ulong hpa)
        ? hpa
        : throw new InvalidOperationException($"vCPU {Id}: guest kernel accessed gpa {gpa:x} without touching it first");

    /// <summary>The host-physical address of guest-physical <paramref name="gpa"/> through the current root, if it is mapped.</summary>
    private bool TryHostAddress(ulong gpa, out ulong hpa)
    {
        if (Root is null || !Root.TryTranslatePhysical(gpa, out ulong frame))
        {
            hpa = 0;
            return false;
        }
        hpa = frame | (gpa & (PhysicalMemory.PageSize - 1));
        return true;
    }

    /// <summary>Something changed for the current context: make progress now (from inside a step, on the next iteration).</summary>
    internal void Kick0()
    {
        if (_inStep)
        {
            _again = true;
        }
        else if (InGuestMode && _segmentStart < 0)
        {
            Step();
        }
    }

    private void Step()
    {
        if (_inStep)
        {
            _again = true;
            return;
        }
        _inStep = true;
        try
        {
            do
            {
                _again = false;
                StepOnce();
            }
            while (_again && InGuestMode && _segmentStart < 0);
        }
        finally
        {
            _inStep = false;
        }
    }

    private void StepOnce()
    {
        if (!InGuestMode || _segmentStart >= 0)
        {
            return;
        }
        if (InterruptWindowRequested && InterruptsEnabled)
        {
            Exit(new VmExit(ExitReason.InterruptWindow, Cpl: Cpl));
            return;
        }
        if (_debt > 0)
        {
            StartSegment(SegmentOwner.Debt, _debt);
            return;
        }
        var ctx = Current;
        if (ctx is null)
        {
            return;
        }
        switch (ctx.KernelKind)
        {
            case OpKind.Compute:
                StartSegment(SegmentOwner.Kernel, ctx.KernelRemaining);
                return;
            case OpKind.Touch:
                if (!GuestPhysicalMapped(ctx.KernelAddress))
                {
                    Exit(PhysicalMiss(ctx.KernelAddress, null));
                    return;
                }
                CompleteKernel(ctx);
                return;
            case OpKind.Resume:
                CompleteKernel(ctx);
                return;
            case OpKind.Halt:
                Exit(new VmExit(ExitReason.Hlt, Cpl: 0));
                return;
        }
        if (ctx.HandlerDepth > 0)
        {
            return; // a handler of this context waits for something that is not a CPU operation
        }
        switch (ctx.UserKind)
        {
            case OpKind.Compute:
                StartSegment(SegmentOwner.User, ctx.UserRemaining);
                return;
            case OpKind.Store:
                if (StoreHits(ctx, ctx.UserAddress, position: 0))
                {
                    _segmentStores = 1;
                    StartSegment(SegmentOwner.User, _costs.FaultLoopIterationNs);
                }
                return;
            case OpKind.StoreLoop:
                StartStoreRun(ctx);
                return;
        }
    }

    /// <summary>Looks ahead through the store source for a run of hits and arms one segment for it; a miss at the head raises its fault.</summary>
    private void StartStoreRun(GuestContext ctx)
    {
        const int MaxRun = 4096;
        int hits = 0;
        int index = 0;
        foreach (ulong queued in ctx.Lookahead)
        {
            if (hits >= ctx.StoresLeft || hits >= MaxRun)
            {
                break;
            }
            if (!StoreHits(ctx, queued, hits))
            {
                if (hits == 0)
                {
                    return;
                }
                break;
            }
            hits++;
            index++;
        }
        if (index == ctx.Lookahead.Count)
        {
            while (hits < ctx.StoresLeft && hits < MaxRun)
            {
                ulong next = ctx.Source!.NextAddress();
                ctx.Lookahead.Enqueue(next);
                if (!StoreHits(ctx, next, hits))
                {
                    if (hits == 0)
                    {
                        return;
                    }
                    break;
                }
                hits++;
            }
        }
        _segmentStores = hits;
        StartSegment(SegmentOwner.User, hits * ctx.StoreCost);
    }

    /// <summary>
    /// Translates a user store at <paramref name="gva"/>; true on a hit. A miss at the head of a
    /// run (<paramref name="position"/> 0) raises its guest #PF or exit at once.
    /// </summary>
    private bool StoreHits(GuestContext ctx, ulong gva, int position)
    {
        var outcome = Translate(gva, write: true, user: true, out ulong missAddress, out PfErr error);
        if (outcome == Walk.Hit)
        {
            return true;
        }
        if (position == 0)
        {
            RaiseFault(ctx, gva, outcome, missAddress, error);
        }
        return false;
    }

    private void StartSegment(SegmentOwner owner, long length)
    {
        _segmentOwner = owner;
        _segmentStart = _loop.Now;
        _segmentLength = length;
        _loop.ArmAfter(_segmentEnd, length);
    }

    /// <summary>Stops the segment in flight, keeping the progress it made.</summary>
    private void Pause()
    {
        if (_segmentStart < 0)
        {
            return;
        }
        long elapsed = _loop.Now - _segmentStart;
        EventLoop.Cancel(_segmentEnd);
        _segmentStart = -1;
        var ctx = Current!;
        switch (_segmentOwner)
        {
            case SegmentOwner.Debt:
                _debt -= elapsed;
                if (ctx is not null)
                {
                    ctx.KernelNs += elapsed;
                }
                break;
            case SegmentOwner.Kernel:
                ctx.KernelRemaining -= elapsed;
                ctx.KernelNs += elapsed;
                break;
            case SegmentOwner.User:
                ctx.UserNs += elapsed;
                if (ctx.UserKind == OpKind.Compute)
                {
                    ctx.UserRemaining -= elapsed;
                }
                else if (ctx.UserKind == OpKind.StoreLoop)
                {
                    long done = elapsed / ctx.StoreCost;
                    RetireStores(ctx, done);
                }
                break;
        }
    }

    private void SegmentEnded()
    {
        _segmentStart = -1;
        var ctx = Current!;
        switch (_segmentOwner)
        {
            case SegmentOwner.Debt:
                if (ctx is not null)
                {
                    ctx.KernelNs += _segmentLength;
                }
                _debt -= _segmentLength;
                break;
            case SegmentOwner.Kernel:
                ctx.KernelNs += _segmentLength;
                ctx.KernelRemaining = 0;
                CompleteKernel(ctx);
                break;
            case SegmentOwner.User:
                ctx.UserNs += _segmentLength;
                if (ctx.UserKind == OpKind.StoreLoop)
                {
                    RetireStores(ctx, _segmentStores);
                    if (ctx.StoresLeft == 0)
                    {
                        CompleteUser(ctx);
                    }
                }
                else
                {
                    if (ctx.UserKind == OpKind.Store)
                    {
                        RetireStores(ctx, 1);
                    }
                    ctx.UserRemaining = 0;
                    CompleteUser(ctx);
                }
                break;
        }
        Step();
    }

    /// <summary>
    /// The first <paramref name="count"/> stores of the context's run are done; a single store
    /// (<see cref="OpKind.Store"/>) is a run of one with nothing queued.
    /// </summary>
    private static void RetireStores(GuestContext ctx, long count)
    {
        if (count == 0)
        {
            return;
        }
        if (ctx.UserKind == OpKind.StoreLoop)
        {
            for (long i = 0; i < count; i++)
            {
                ctx.Lookahead.Dequeue();
            }
            ctx.StoresLeft -= count;
        }
        ctx.Stores += count;
        if (ctx.StoreNeededSwapIn)
        {
            // The first of them is the store that faulted: a miss only ever raises a fault at the head of a run.
            ctx.StoreNeededSwapIn = false;
            ctx.HostMajorFaults++;
        }
    }

    private void CompleteUser(GuestContext ctx)
    {
        Resuming?.Invoke(this, ctx);
        ctx.UserKind = OpKind.None;
        ctx.Source = null;
        ctx.Lookahead.Clear();
        _again = true;
        ctx.UserDone.Complete();
    }

    private void CompleteKernel(GuestContext ctx)
    {
        Resuming?.Invoke(this, ctx);
        bool halt = ctx.KernelKind == OpKind.Halt;
        ctx.KernelKind = OpKind.None;
        _again = true;
        (halt ? ctx.HaltDone : ctx.KernelDone).Complete();
    }

    /// <summary>A user store missed: the guest's #PF, or the exit to the host's MMU.</summary>
    private void RaiseFault(GuestContext ctx, ulong gva, Walk outcome, ulong missAddress, PfErr error)
    {
        switch (outcome)
        {
            case Walk.GuestFault:
                Cr2 = gva;
                DeliverException(ctx, Vectors.PageFault, (uint)error);
                return;
            case Walk.RootMiss when Root!.TwoDimensional:
                Exit(new VmExit(ExitReason.EptViolation, GuestPhysical: missAddress, GuestLinear: gva, ErrorCode: (uint)error, Cpl: ctx.Cpl));
                return;
            default:
                Exit(new VmExit(ExitReason.ExceptionNmi, GuestLinear: gva, ErrorCode: (uint)error, Cpl: ctx.Cpl));
                return;
        }
    }

    private enum Walk
    {
        Hit,
        GuestFault,
        RootMiss,
    }

    private Walk Translate(ulong gva, bool write, bool user, out ulong missAddress, out PfErr error)
    {
        missAddress = 0;
        error = (write ? PfErr.Write : 0) | (user ? PfErr.User : 0);
        ulong page = gva >> PhysicalMemory.PageShift;
        if (_tlb.Contains(page))
        {
            return Walk.Hit;
        }
        var root = _root ?? throw new InvalidOperationException($"vCPU {Id}: guest mode without an MMU root");
        ulong hpa;
        if (!root.TwoDimensional)
        {
            if (!root.TryTranslate(gva, write, out hpa))
            {
                missAddress = gva;
                return Walk.RootMiss;
            }
            _tlb.Add(page);
            return Walk.Hit;
        }
        ulong pgd = Cr3 & PteFrameMask;
        ulong table = pgd;
        int level = 3;
        bool upperWrite = true;
        bool upperUser = true;
        if (PagingCache.TryLookup(pgd, gva, out ulong leafTable, out bool cachedWrite, out bool cachedUser))
        {
            if ((write && !cachedWrite) || (user && !cachedUser))
            {
                error |= PfErr.Present;
                return Walk.GuestFault;
            }
            table = leafTable;
            level = 0;
        }
        for (; level >= 0; level--)
        {
            ulong entryGpa = table + (((gva >> (PhysicalMemory.PageShift + (9 * level))) & 511) * 8);
            if (!root.TryTranslate(entryGpa, false, out hpa))
            {
                missAddress = entryGpa;
                return Walk.RootMiss;
            }
            ulong pte = _ram.ReadU64(hpa | (entryGpa & (PhysicalMemory.PageSize - 1)));
            if ((pte & 1) == 0)
            {
                return Walk.GuestFault;
            }
            if ((write && (pte & 2) == 0) || (user && (pte & 4) == 0))
            {
                error |= PfErr.Present;
                return Walk.GuestFault;
            }
            table = pte & PteFrameMask;
            if (level > 0)
            {
                upperWrite &= (pte & 2) != 0;
                upperUser &= (pte & 4) != 0;
                if (level == 1)
                {
                    PagingCache.Fill(pgd, gva, table, upperWrite, upperUser);
                }
            }
        }
        ulong gpa = table | (gva & (PhysicalMemory.PageSize - 1));
        if (!root.TryTranslate(gpa, write, out hpa))
        {
            missAddress = gpa;
            return Walk.RootMiss;
        }
        _tlb.Add(page);
        return Walk.Hit;
    }

    /// <summary>Delivers an exception to the guest on <paramref name="ctx"/>; the faulting user operation is retried after the handler.</summary>
    private void DeliverException(GuestContext ctx, byte vector, uint errorCode, bool checkedFootprint = false, bool endsHalt = false)
    {
        if (Idt is not { } idt)
        {
            Exit(new VmExit(ExitReason.TripleFault, Cpl: ctx.Cpl)); // no gate for the exception, nor for #DF: shutdown
            return;
        }
        if (!checkedFootprint && DeliveryFaults(idt, ctx, new EventInjection(vector, IsException: true, errorCode, HasErrorCode: true, Cr2)))
        {
            return;
        }
        Resuming?.Invoke(this, ctx);
        Charge(_costs.GuestEventDeliveryNs);
        int savedCpl = endsHalt ? 0 : ctx.Cpl; // the frame's CS, taken before the handler's entry changes the context (HLT runs at CPL 0)
        bool savedKernelOp = SaveKernelOp(ctx);
        ctx.HandlerDepth++;
        var awaiter = idt.DeliverException(this, vector, errorCode, savedCpl).GetAwaiter();
        if (awaiter.IsCompleted)
        {
            HandlerReturned(ctx, savedKernelOp, endsHalt);
            awaiter.GetResult();
            _again = true;
            return;
        }
        var frame = ctx.RentHandlerFrame();
        frame.Cpu = this;
        frame.Awaiter = awaiter;
        frame.SavedKernelOp = savedKernelOp;
        frame.EndsHalt = endsHalt;
        awaiter.OnCompleted(frame.Done);
    }

    /// <summary>A handler that slept has returned (its context may run on another CPU by now).</summary>
    internal static void HandlerFrameDone(HandlerFrame frame)
    {
        var ctx = frame.Ctx;
        var cpu = ctx.Cpu ?? frame.Cpu!;
        var awaiter = frame.Awaiter;
        cpu.HandlerReturned(ctx, frame.SavedKernelOp, frame.EndsHalt);
        ctx.ReturnHandlerFrame(frame);
        awaiter.GetResult();
        if (ctx.Cpu is { } running && ReferenceEquals(ctx, running.Current))
        {
            running.Kick0();
        }
    }

    /// <summary>
    /// Event delivery touches the IDT, the handler and the kernel stack: if EPT misses one of those
    /// pages the delivery itself causes the EPT violation, and the event is reported in the exit
    /// (IDT-vectoring information) for the host to re-inject.
    /// </summary>
    private bool DeliveryFaults(IInterruptDescriptorTable idt, GuestContext ctx, EventInjection evt)
    {
        Span<ulong> pages = stackalloc ulong[8];
        int n = idt.DeliveryFootprint(this, ctx, pages);
        for (int i = 0; i < n; i++)
        {
            if (!GuestPhysicalMapped(pages[i]))
            {
                Exit(PhysicalMiss(pages[i], evt));
                return true;
            }
        }
        return false;
    }

    /// <summary>The exit a kernel access to an unmapped guest-physical page causes: an EPT violation, or a #PF on the direct map under shadow paging.</summary>
    private VmExit PhysicalMiss(ulong gpa, EventInjection? vectoring) => Root!.TwoDimensional
        ? new VmExit(ExitReason.EptViolation, GuestPhysical: gpa, ErrorCode: (uint)PfErr.Write, Cpl: 0, IdtVectoring: vectoring)
        : new VmExit(ExitReason.ExceptionNmi, GuestPhysical: gpa, GuestLinear: DirectMapBase + gpa, ErrorCode: (uint)PfErr.Write, Cpl: 0, IdtVectoring: vectoring);

    private void Exit(VmExit exit)
    {
        Pause();
        InGuestMode = false;
        LastExit = exit;
        LastExitContext = Current;
        VmExits++;
        Residency.Mark(VcpuState.Host);
        _loop.ArmAfter(_exitTimer, _costs.VmExitNs);
    }

    private void Entered()
    {
        InGuestMode = true;
        VmEntries++;
        Residency.Mark(VcpuState.Guest);
        var injection = _pendingInjection;
        _pendingInjection = null;
        _inStep = true;
        try
        {
            if (injection is { } inj)
            {
                Inject(inj);
            }
        }
        finally
        {
            _inStep = false;
        }
        if (_kickPending)
        {
            _kickPending = false;
            if (InGuestMode)
            {
                Exit(new VmExit(ExitReason.ExternalInterrupt, Cpl: Cpl));
                return;
            }
        }
        Step();
    }

    /// <summary>
    /// Delivers an injected event. An event that arrives while the context is in HLT ends the
    /// HLT: the handler runs first, and the instruction after HLT (the code that awaited it)
    /// resumes once the handler is done.
    /// </summary>
    private void Inject(EventInjection inj)
    {
        var ctx = Current ?? throw new InvalidOperationException($"vCPU {Id}: event injected with no guest context");
        if (Idt is not { } idt)
        {
            Exit(new VmExit(ExitReason.TripleFault, Cpl: ctx.Cpl));
            return;
        }
        if (DeliveryFaults(idt, ctx, inj))
        {
            return;
        }
        bool endsHalt = ctx.KernelKind == OpKind.Halt;
        if (endsHalt)
        {
            ctx.KernelKind = OpKind.None;
            (ctx.EndedHalts ??= new Stack<OpCompletion>()).Push(ctx.HaltDone);
            ctx.HaltDone = new OpCompletion();
        }
        if (inj.IsException)
        {
            if (inj.Vector == Vectors.PageFault)
            {
                Cr2 = inj.Cr2;
            }
            DeliverException(ctx, inj.Vector, inj.ErrorCode, checkedFootprint: true, endsHalt);
            return;
        }
        Resuming?.Invoke(this, ctx);
        Charge(_costs.GuestEventDeliveryNs);
        idt.DeliverInterrupt(this, inj.Vector);
        if (endsHalt)
        {
            EndHalt(ctx);
        }
    }

    /// <summary>An exception interrupting kernel code: the interrupted operation waits below the handler's own.</summary>
    private static bool SaveKernelOp(GuestContext ctx)
    {
        if (ctx.KernelKind == OpKind.None)
        {
            return false;
        }
        (ctx.SavedKernelOps ??= new()).Push((ctx.KernelKind, ctx.KernelRemaining, ctx.KernelAddress, ctx.KernelDone));
        ctx.KernelKind = OpKind.None;
        ctx.KernelDone = new OpCompletion();
        return true;
    }

    /// <summary>IRET: the interrupted kernel operation, if any, continues; a HLT the event ended is over.</summary>
    internal void HandlerReturned(GuestContext ctx, bool savedKernelOp, bool endsHalt)
    {
        ctx.HandlerDepth--;
        if (savedKernelOp)
        {
            (ctx.KernelKind, ctx.KernelRemaining, ctx.KernelAddress, ctx.KernelDone) = ctx.SavedKernelOps!.Pop();
        }
        if (endsHalt)
        {
            EndHalt(ctx);
        }
    }

    /// <summary>The handler of the event that ended a HLT is done: the code after that HLT runs.</summary>
    private void EndHalt(GuestContext ctx)
    {
        var halt = ctx.EndedHalts!.Pop();
        Resuming?.Invoke(this, ctx);
        _again = true;
        halt.Complete();
    }

    /// <summary>Completes the host's wait for an exit, inline: the exit timer is the host thread's own event.</summary>
    private sealed class ExitSource : SimTaskSource<VmExit>
    {
        public SimTask<VmExit> Task() => new(this, Version);

        public void Complete(VmExit exit) => SetResultCore(exit);

        protected override void Continue(Action continuation) => continuation();
    }
}

/// <summary>
/// The part of a compute segment in flight that its context's counters do not hold yet
/// (<see cref="X86Cpu.InFlight"/>): user and kernel ns, stores done and the host major fault among them.
/// </summary>
public readonly record struct SegmentProgress(GuestContext? Context, long UserNs, long KernelNs, long Stores, long HostMajorFaults);
