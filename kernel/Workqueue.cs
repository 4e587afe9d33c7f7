using Hw;

namespace Linux;

/// <summary>include/linux/workqueue.h: struct work_struct.</summary>
public sealed class WorkStruct(Func<WorkStruct, SimTask> func, object? data = null)
{
    public Func<WorkStruct, SimTask> Func { get; } = func;

    /// <summary>What the work is about (container_of in C).</summary>
    public object? Data { get; } = data;

    /// <summary>WORK_STRUCT_PENDING: queued, not yet picked up by a worker.</summary>
    public bool Pending { get; internal set; }
}

// kernel/workqueue.c: the system workqueue. Unlike 2.6.32's one worker thread per CPU, the pool
// grows a worker for every item that would otherwise wait (the concurrency-managed workqueue of
// 2.6.36), so a work item that sleeps on I/O never holds up another; v5 used slow_work, which
// the port does not model (Documentation/deviations.md). Workers are host threads.
public sealed partial class Kernel
{
    private readonly Stack<TaskStruct> _idleWorkers = new();
    private readonly Dictionary<TaskStruct, WorkStruct?> _workerItem = [];

    /// <summary>Worker threads created so far.</summary>
    public int NrWorkers => _workerItem.Count;

    /// <summary>schedule_work() → queue_work(system_wq): false if the work was already pending.</summary>
    [Port("kernel/workqueue.c", "queue_work")]
    public bool QueueWork(WorkStruct work)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (work.Pending)
        {
            return false;
        }
        work.Pending = true;
        if (_idleWorkers.TryPop(out var worker))
        {
            _workerItem[worker] = work;
            WakeUpProcess(worker);
        }
        else
        {
            DoFork($"kworker/{_workerItem.Count}", null, t => WorkerThread(t, work));
        }
        return true;
    }

    /// <summary>cancel_work_sync() for an item no worker has picked up yet: true if it was pending and is now dropped.</summary>
    [Port("kernel/workqueue.c", "cancel_work_sync")]
    public bool CancelWorkSync(WorkStruct work)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (!work.Pending)
        {
            return false;
        }
        work.Pending = false;
        return true;
    }

    /// <summary>worker_thread(): runs the items handed to it, then waits for the next.</summary>
    [Port("kernel/workqueue.c", "worker_thread")]
    private async SimTask WorkerThread(TaskStruct self, WorkStruct first)
    {
        MightSleep();
        _workerItem[self] = first;
        while (true)
        {
            if (_workerItem[self] is { } work)
            {
                _workerItem[self] = null;
                if (work.Pending)
                {
                    work.Pending = false;
                    await work.Func(work);
                }
                continue;
            }
            _idleWorkers.Push(self);
            SetCurrentState(TaskStates.TASK_INTERRUPTIBLE);
            await Schedule();
        }
    }
}
