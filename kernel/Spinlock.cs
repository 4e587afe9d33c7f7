namespace Linux;

/// <summary>
/// kernel/spinlock.c: a spinlock. The simulation runs one piece of code at a time, so a lock is
/// never contended; what it checks is its discipline: no re-entry, unlock by the holder's
/// pairing, and no sleeping while one is held (it raises the kernel's preempt count, which
/// <see cref="Kernel.MightSleep"/> checks).
/// </summary>
public sealed class Spinlock(Kernel kernel, string name)
{
    private bool _held;

    public string Name { get; } = name;

    public bool IsLocked => _held;

    [Port("include/linux/spinlock.h", "spin_lock")]
    public void Lock()
    {
        if (_held)
        {
            throw new InvalidOperationException($"{kernel.Name}: recursive locking of spinlock {Name}");
        }
        _held = true;
        kernel.PreemptCount++;
    }

    [Port("include/linux/spinlock.h", "spin_unlock")]
    public void Unlock()
    {
        if (!_held)
        {
            throw new InvalidOperationException($"{kernel.Name}: unlock of spinlock {Name} that is not held");
        }
        _held = false;
        kernel.PreemptCount--;
    }

    /// <summary>Asserts the lock is held (lockdep_assert_held).</summary>
    public void AssertHeld()
    {
        if (!_held)
        {
            throw new InvalidOperationException($"{kernel.Name}: {Name} must be held here");
        }
    }
}

/// <summary>Raised where Linux prints "BUG: scheduling while atomic".</summary>
public sealed class SchedulingWhileAtomicException(string message) : InvalidOperationException(message);
