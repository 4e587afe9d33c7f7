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
    internal readonly OpCompletion KernelDone = new();

    /// <summary>Exception handlers in progress on this context (a #PF handler that sleeps keeps it above zero).</summary>
    internal int HandlerDepth;

    public string Name { get; } = name;

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

    /// <summary>Stores of this context whose host fault needed swap I/O.</summary>
    public long HostMajorFaults { get; internal set; }

    /// <summary>True while no operation and no kernel path is pending (a context that has finished).</summary>
    public bool Idle => UserKind == OpKind.None && KernelKind == OpKind.None && HandlerDepth == 0;

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
