namespace Hw;

/// <summary>Where a <see cref="GuestContext"/> draws the addresses of a store loop from (the workload's random page picker).</summary>
public interface IStoreSource
{
    /// <summary>The next guest-linear address to store to.</summary>
    ulong NextAddress();
}

/// <summary>What a context is executing or waiting to execute.</summary>
internal enum OpKind
{
    None,
    Compute,
    Store,
    StoreLoop,
    Halt,
    Touch,
    Resume,
}

/// <summary>Completion of a context's operation: resumes the awaiting code inline, from the CPU's own event.</summary>
internal sealed class OpCompletion : SimTaskSource<VoidResult>
{
    public SimTask Task() => new(this, Version);

    public void Complete() => SetResultCore(default);

    protected override void Continue(Action continuation) => continuation();
}

/// <summary>
/// An exception handler that slept, waiting to return: what the CPU must do when it does. Pooled
/// per context, so a delivery allocates nothing once warm.
/// </summary>
internal sealed class HandlerFrame
{
    public HandlerFrame(GuestContext ctx)
    {
        Ctx = ctx;
        Done = () => X86Cpu.HandlerFrameDone(this);
    }

    public GuestContext Ctx { get; }

    public Action Done { get; }

    public X86Cpu? Cpu;

    public SimTask.Awaiter Awaiter;

    public bool SavedKernelOp;

    public bool EndsHalt;

    public HandlerFrame? NextFree;
}

/// <summary>
/// One register set that the guest kernel switches the CPU between: a task's user and kernel
/// context. Guest code awaits operations on it (compute, store, hlt); the CPU carries them out
/// while the context is current and the CPU is in guest mode, and freezes them otherwise.
/// A user operation stays pending below a kernel path (an exception handler, a sleeping
/// syscall) and is resumed or retried when that path is done.
/// </summary>
public sealed class GuestContext(string name)
{
    internal OpKind UserKind;
    internal long UserRemaining;
    internal ulong UserAddress;
    internal long StoreCost;
    internal long StoresLeft;
    internal IStoreSource? Source;
    internal readonly Queue<ulong> Lookahead = new();
    internal readonly OpCompletion UserDone = new();

    internal OpKind KernelKind;
    internal long KernelRemaining;
    internal ulong KernelAddress;
    internal OpCompletion KernelDone = new();

    /// <summary>Kernel operations an exception interrupted, innermost on top: each resumes when its handler returns.</summary>
    internal Stack<(OpKind Kind, long Remaining, ulong Address, OpCompletion Done)>? SavedKernelOps;

    /// <summary>Exception handlers in progress on this context (a #PF handler that sleeps keeps it above zero).</summary>
    internal int HandlerDepth;

    private HandlerFrame? _freeFrames;

    internal HandlerFrame RentHandlerFrame()
    {
        var frame = _freeFrames ?? new HandlerFrame(this);
        _freeFrames = frame.NextFree;
        frame.NextFree = null;
        return frame;
    }

    internal void ReturnHandlerFrame(HandlerFrame frame)
    {
        frame.Cpu = null;
        frame.Awaiter = default;
        frame.NextFree = _freeFrames;
        _freeFrames = frame;
    }

    /// <summary>The completion of a HLT; a HLT ended by an event moves its completion to <see cref="EndedHalts"/>.</summary>
    internal OpCompletion HaltDone = new();

    /// <summary>HLTs that an event ended, innermost on top: each resumes once the handler of its event is done.</summary>
    internal Stack<OpCompletion>? EndedHalts;

    public string Name { get; } = name;

    /// <summary>The CPU executing this context, or null while it is switched out.</summary>
    public X86Cpu? Cpu { get; internal set; }

    /// <summary>User code computing for <paramref name="ns"/> of guest-mode time.</summary>
    public SimTask Compute(long ns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ns);
        return StartUser(OpKind.Compute, ns, 0);
    }

    /// <summary>A user store to <paramref name="gva"/>: faults go to the guest (#PF) or the host (EPT violation) and are retried.</summary>
    public SimTask Store(ulong gva) => StartUser(OpKind.Store, 0, gva);

    /// <summary>
    /// <paramref name="count"/> user stores to addresses drawn from <paramref name="source"/>, each taking
    /// <paramref name="costPerStore"/> ns when its translation hits; a run of hits is one compute segment.
    /// </summary>
    public SimTask StoreLoop(IStoreSource source, long count, long costPerStore)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(costPerStore);
        Source = source;
        StoresLeft = count;
        StoreCost = costPerStore;
        return StartUser(OpKind.StoreLoop, 0, 0);
    }

    /// <summary>Guest kernel code computing for <paramref name="ns"/> on behalf of this context.</summary>
    public SimTask KernelCompute(long ns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ns);
        return StartKernel(OpKind.Compute, ns, 0);
    }

    /// <summary>A guest kernel access to guest-physical <paramref name="gpa"/>: exits to the host if EPT does not map it.</summary>
    public SimTask Touch(ulong gpa) => StartKernel(OpKind.Touch, 0, gpa);

    /// <summary>HLT in kernel code of this context: completes after the next interrupt has been handled.</summary>
    public SimTask Halt() => StartKernel(OpKind.Halt, 0, 0);

    /// <summary>Completes when this context, switched away from, executes again.</summary>
    public SimTask WaitScheduledIn() => StartKernel(OpKind.Resume, 0, 0);

    private SimTask StartUser(OpKind kind, long remaining, ulong address)
    {
        if (UserKind != OpKind.None)
        {
            throw new InvalidOperationException($"{this}: a user operation is already pending");
        }
        UserKind = kind;
        UserRemaining = remaining;
        UserAddress = address;
        var task = UserDone.Task();
        KickIfCurrent();
        return task;
    }

    private SimTask StartKernel(OpKind kind, long remaining, ulong address)
    {
        if (KernelKind != OpKind.None)
        {
            throw new InvalidOperationException($"{this}: a kernel operation is already pending");
        }
        KernelKind = kind;
        KernelRemaining = remaining;
        KernelAddress = address;
        var task = kind == OpKind.Halt ? HaltDone.Task() : KernelDone.Task();
        KickIfCurrent();
        return task;
    }

    private void KickIfCurrent()
    {
        if (Cpu is { } cpu && ReferenceEquals(cpu.Current, this))
        {
            cpu.Kick0();
        }
    }

    /// <summary>The guest kernel's object for this context (its task).</summary>
    public object? Owner { get; set; }

    /// <summary>Syscall nesting set by the guest kernel: above zero the context runs at CPL 0.</summary>
    public int SyscallDepth { get; set; }

    /// <summary>Guest-mode time spent on this context's user operations, ns.</summary>
    public long UserNs { get; internal set; }

    /// <summary>Guest-mode time spent in the guest kernel on this context's behalf, ns.</summary>
    public long KernelNs { get; internal set; }

    /// <summary>Stores executed by this context.</summary>
    public long Stores { get; internal set; }

    /// <summary>Stores of this context whose host fault needed swap I/O, counted when the store retires.</summary>
    public long HostMajorFaults { get; internal set; }

    /// <summary>The user store at the head of this context's run faulted in the host and needed swap I/O (sync or async); it counts in <see cref="HostMajorFaults"/> once it retires.</summary>
    internal bool StoreNeededSwapIn { get; set; }

    /// <summary>True while no operation and no kernel path is pending (a context that has finished).</summary>
    public bool Idle => UserKind == OpKind.None && KernelKind == OpKind.None && HandlerDepth == 0;

    /// <summary>True while kernel code of this context waits for a CPU operation.</summary>
    public bool InKernelOperation => KernelKind != OpKind.None;

    /// <summary>Exception handlers running on this context, the innermost included.</summary>
    public int ExceptionNesting => HandlerDepth;

    /// <summary>Privilege level of what the context executes now.</summary>
    public int Cpl => KernelKind != OpKind.None || HandlerDepth > 0 || SyscallDepth > 0 ? 0 : 3;

    /// <summary>Resets the time and event counters (start of a measured interval).</summary>
    public void ResetCounters()
    {
        UserNs = 0;
        KernelNs = 0;
        Stores = 0;
        HostMajorFaults = 0;
    }

    public override string ToString() => Name;
}
