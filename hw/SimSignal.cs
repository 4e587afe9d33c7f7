namespace Hw;

/// <summary>
/// A reusable wait point that something outside the waiter completes (I/O completion, a wait
/// queue, a timer). The waiter never runs inside the waker: completion posts its continuation
/// to the loop at (now, next sequence number). One waiter at a time; after the waiter has
/// consumed the result the signal can be waited on again, without allocating.
/// </summary>
public sealed class SimSignal<T>(EventLoop loop) : SimTaskSource<T>
{
    private bool _waiting;

    // Set until the woken waiter has consumed its value: the signal is still that waiter's,
    // and a new Wait would otherwise get a task on the same version and take the value.
    private bool _unconsumed;

    /// <summary>True between <see cref="Wait"/> and <see cref="Set"/>.</summary>
    public bool Waiting => _waiting;

    /// <summary>The task to await; complete it with <see cref="Set"/>.</summary>
    public SimTask<T> Wait()
    {
        if (_waiting || _unconsumed)
        {
            throw new InvalidOperationException("SimSignal already has a waiter");
        }
        _waiting = true;
        return new SimTask<T>(this, Version);
    }

    /// <summary>Wakes the waiter with <paramref name="value"/>.</summary>
    public void Set(T value)
    {
        if (!_waiting)
        {
            throw new InvalidOperationException("SimSignal set with no waiter");
        }
        _waiting = false;
        _unconsumed = true;
        SetResultCore(value);
    }

    protected override void Continue(Action continuation) => loop.Post(continuation);

    protected override void Recycle() => _unconsumed = false;
}

/// <summary>A <see cref="SimSignal{T}"/> without a value.</summary>
public sealed class SimSignal(EventLoop loop) : SimTaskSource<VoidResult>
{
    private bool _waiting;

    // Set until the woken waiter has consumed its value: the signal is still that waiter's,
    // and a new Wait would otherwise get a task on the same version and take the value.
    private bool _unconsumed;

    public bool Waiting => _waiting;

    public SimTask Wait()
    {
        if (_waiting || _unconsumed)
        {
            throw new InvalidOperationException("SimSignal already has a waiter");
        }
        _waiting = true;
        return new SimTask(this, Version);
    }

    public void Set()
    {
        if (!_waiting)
        {
            throw new InvalidOperationException("SimSignal set with no waiter");
        }
        _waiting = false;
        _unconsumed = true;
        SetResultCore(default);
    }

    protected override void Continue(Action continuation) => loop.Post(continuation);

    protected override void Recycle() => _unconsumed = false;
}
