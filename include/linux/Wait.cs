namespace Linux;

/// <summary>include/linux/wait.h: wait_queue_t.</summary>
public sealed class WaitQueue(TaskStruct task)
{
    public TaskStruct Task { get; } = task;

    /// <summary>WQ_FLAG_EXCLUSIVE.</summary>
    public bool Exclusive { get; set; }

    /// <summary>Protected by the head's lock: on a wait queue.</summary>
    internal bool Queued { get; set; }
}

/// <summary>include/linux/wait.h: wait_queue_head_t.</summary>
public sealed class WaitQueueHead
{
    internal List<WaitQueue> TaskList { get; } = [];

    /// <summary>waitqueue_active().</summary>
    public bool Active => TaskList.Count > 0;
}
