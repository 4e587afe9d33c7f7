using Hw;

namespace Linux;

/// <summary>Task states of include/linux/sched.h.</summary>
public static class TaskStates
{
    public const int TASK_RUNNING = 0;
    public const int TASK_INTERRUPTIBLE = 1;
    public const int TASK_UNINTERRUPTIBLE = 2;
    public const int TASK_DEAD = 64;
}

/// <summary>include/linux/sched.h: struct sched_entity, the CFS part of a task.</summary>
public sealed class SchedEntity
{
    /// <summary>Load weight; nice 0 is 1024 (prio_to_weight[20]).</summary>
    public long Weight { get; set; } = 1024;
    public long Vruntime { get; set; }
    public long SumExecRuntime { get; set; }
    public long PrevSumExecRuntime { get; set; }
    public long ExecStart { get; set; }
    /// <summary>Protected by rq->lock: the task is in its CFS tree (not the running one).</summary>
    public bool InTree { get; set; }
}

/// <summary>include/linux/sched.h: struct task_struct, with the fields the port uses.</summary>
public sealed class TaskStruct
{
    public TaskStruct(int pid, string comm)
    {
        Pid = pid;
        Comm = comm;
    }

    public int Pid { get; }

    public string Comm { get; }

    /// <summary>TASK_RUNNING, TASK_INTERRUPTIBLE, TASK_UNINTERRUPTIBLE or TASK_DEAD.</summary>
    public int State { get; set; } = TaskStates.TASK_RUNNING;

    public SchedEntity Se { get; } = new();

    /// <summary>task_cpu(): the CPU whose run queue the task is on, or last ran on.</summary>
    public int Cpu { get; set; }

    /// <summary>Protected by rq->lock: on a run queue.</summary>
    public bool OnRq { get; set; }

    /// <summary>TIF_NEED_RESCHED.</summary>
    public bool NeedResched { get; set; }

    /// <summary>The idle task of its CPU.</summary>
    public bool IsIdle { get; init; }

    /// <summary>The user address space, or null for a kernel thread.</summary>
    public MmStruct? Mm { get; set; }

    /// <summary>A guest task's register context on the hardware; null for host tasks.</summary>
    public GuestContext? Context { get; init; }

    /// <summary>A host task's wait point: host tasks have a CPU of their own and run as soon as they are woken.</summary>
    public SimSignal? WakeSignal { get; init; }

    /// <summary>maj_flt: faults of this task that needed I/O.</summary>
    public long MajFlt { get; set; }

    /// <summary>min_flt: faults served without I/O.</summary>
    public long MinFlt { get; set; }

    /// <summary>
    /// Host only: CPU time of work done without sleeping that the task's CPU still has to spend
    /// (a vCPU thread pays it before its next VM entry).
    /// </summary>
    public long HostWorkNs { get; set; }

    /// <summary>Guest-physical address of the task's kernel stack (touched by every kernel entry).</summary>
    public ulong KernelStack { get; set; }

    /// <summary>Per-task data of guest user space (libc's thread).</summary>
    public object? UserData { get; set; }

    public override string ToString() => $"{Comm}/{Pid}";
}
