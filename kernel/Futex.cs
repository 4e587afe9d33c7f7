using Hw;

namespace Linux;

// kernel/futex.c (patch 0): FUTEX_WAIT and FUTEX_WAKE on a key. User memory holds no data in
// the simulation, so the caller passes the comparison the kernel makes with the futex word.
public sealed partial class Kernel
{
    private readonly Dictionary<object, WaitQueueHead> _futexQueues = [];

    /// <summary>futex_wait(): sleeps while <paramref name="valueUnchanged"/> holds, until a futex_wake on <paramref name="key"/>.</summary>
    [Port("kernel/futex.c", "futex_wait")]
    public async SimTask FutexWait(object key, Func<bool> valueUnchanged)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(valueUnchanged);
        MightSleep();
        if (!valueUnchanged())
        {
            return;
        }
        var q = FutexQueue(key);
        var wait = new WaitQueue(Current) { Exclusive = true };
        PrepareToWait(q, wait, TaskStates.TASK_INTERRUPTIBLE);
        await Schedule();
        FinishWait(q, wait);
    }

    /// <summary>futex_wake(): wakes up to <paramref name="nrWake"/> waiters on <paramref name="key"/>.</summary>
    [Port("kernel/futex.c", "futex_wake")]
    public int FutexWake(object key, int nrWake)
    {
        ArgumentNullException.ThrowIfNull(key);
        return __WakeUp(FutexQueue(key), nrWake);
    }

    private WaitQueueHead FutexQueue(object key)
    {
        if (!_futexQueues.TryGetValue(key, out var q))
        {
            q = new WaitQueueHead();
            _futexQueues.Add(key, q);
        }
        return q;
    }
}
