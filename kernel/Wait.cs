using Hw;

namespace Linux;

// kernel/wait.c and kernel/sched.c's __wake_up: wait queues.
public sealed partial class Kernel
{
    /// <summary>prepare_to_wait(): queues the entry (once) and sets the task state.</summary>
    [Port("kernel/wait.c", "prepare_to_wait")]
    public void PrepareToWait(WaitQueueHead q, WaitQueue wait, int state)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(wait);
        if (!wait.Queued)
        {
            q.TaskList.Add(wait);
            wait.Queued = true;
        }
        wait.Task.State = state;
    }

    /// <summary>finish_wait(): back to TASK_RUNNING and off the queue.</summary>
    [Port("kernel/wait.c", "finish_wait")]
    public void FinishWait(WaitQueueHead q, WaitQueue wait)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(wait);
        wait.Task.State = TaskStates.TASK_RUNNING;
        if (wait.Queued)
        {
            q.TaskList.Remove(wait);
            wait.Queued = false;
        }
    }

    /// <summary>
    /// __wake_up(): wakes the non-exclusive waiters and up to <paramref name="nrExclusive"/>
    /// exclusive ones (0 = all); each woken entry is removed (autoremove_wake_function).
    /// </summary>
    [Port("kernel/sched.c", "__wake_up")]
    public int __WakeUp(WaitQueueHead q, int nrExclusive = 1)
    {
        ArgumentNullException.ThrowIfNull(q);
        int woken = 0;
        for (int i = 0; i < q.TaskList.Count;)
        {
            var wait = q.TaskList[i];
            if (AutoremoveWakeFunction(wait))
            {
                q.TaskList.RemoveAt(i);
                wait.Queued = false;
                woken++;
                if (wait.Exclusive && nrExclusive > 0 && --nrExclusive == 0)
                {
                    break;
                }
                continue;
            }
            i++;
        }
        return woken;
    }

    /// <summary>autoremove_wake_function() → default_wake_function().</summary>
    [Port("kernel/wait.c", "autoremove_wake_function")]
    private bool AutoremoveWakeFunction(WaitQueue wait)
    {
        TryToWakeUp(wait.Task);
        return true;
    }

    /// <summary>wait_event(): sleeps on <paramref name="q"/> until <paramref name="condition"/> holds.</summary>
    [Port("include/linux/wait.h", "wait_event")]
    public async SimTask WaitEvent(WaitQueueHead q, Func<bool> condition)
    {
        ArgumentNullException.ThrowIfNull(condition);
        MightSleep();
        if (condition())
        {
            return;
        }
        var wait = new WaitQueue(Current);
        while (true)
        {
            PrepareToWait(q, wait, TaskStates.TASK_UNINTERRUPTIBLE);
            if (condition())
            {
                break;
            }
            await Schedule();
        }
        FinishWait(q, wait);
    }
}
