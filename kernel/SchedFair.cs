namespace Linux;

/// <summary>kernel/sched.c: struct cfs_rq. The red-black tree is a sorted set keyed by (vruntime, pid).</summary>
public sealed class CfsRq
{
    private readonly SortedSet<TaskStruct> _timeline = new(Comparer<TaskStruct>.Create(static (a, b) =>
    {
        int c = a.Se.Vruntime.CompareTo(b.Se.Vruntime);
        return c != 0 ? c : a.Pid.CompareTo(b.Pid);
    }));

    /// <summary>Monotonic floor of the queue's vruntimes.</summary>
    public long MinVruntime { get; set; }

    /// <summary>Sum of the weights of the queued tasks, the running one included.</summary>
    public long Load { get; set; }

    /// <summary>Queued tasks, the running one included.</summary>
    public int NrRunning { get; set; }

    /// <summary>The running entity, kept out of the tree.</summary>
    public TaskStruct? Curr { get; set; }

    /// <summary>The queue's clock (rq->clock).</summary>
    public long Clock { get; set; }

    internal void Insert(TaskStruct p)
    {
        _timeline.Add(p);
        p.Se.InTree = true;
    }

    internal void Remove(TaskStruct p)
    {
        if (p.Se.InTree)
        {
            _timeline.Remove(p);
            p.Se.InTree = false;
        }
    }

    internal TaskStruct? Leftmost => _timeline.Count > 0 ? _timeline.Min : null;

    /// <summary>The first task in vruntime order that is waiting (not running).</summary>
    internal TaskStruct? FirstWaiting() => Leftmost;
}

// kernel/sched_fair.c, as of 2.6.32: the completely fair scheduler.
public sealed partial class Kernel
{
    /// <summary>sysctl_sched_latency, ns: 5 ms × (1 + ilog2(ncpus)) (2.6.32 sched_init_granularity).</summary>
    public long SysctlSchedLatency { get; private set; }

    /// <summary>sysctl_sched_min_granularity, ns: 1 ms × the same factor.</summary>
    public long SysctlSchedMinGranularity { get; private set; }

    /// <summary>sysctl_sched_wakeup_granularity, ns: 1 ms × the same factor.</summary>
    public long SysctlSchedWakeupGranularity { get; private set; }

    /// <summary>sched_nr_latency: latency / min granularity = 5.</summary>
    private const int SchedNrLatency = 5;

    [Port("kernel/sched.c", "sched_init_granularity")]
    private void SchedInitGranularity()
    {
        long factor = 1 + (long)Math.Log2(Math.Max(1, HwCpus.Count));
        SysctlSchedLatency = 5_000_000 * factor;
        SysctlSchedMinGranularity = 1_000_000 * factor;
        SysctlSchedWakeupGranularity = 1_000_000 * factor;
    }

    [Port("kernel/sched_fair.c", "__sched_period")]
    private long __SchedPeriod(int nrRunning) =>
        nrRunning > SchedNrLatency ? nrRunning * SysctlSchedMinGranularity : SysctlSchedLatency;

    /// <summary>sched_slice(): the task's share of the period, by weight.</summary>
    [Port("kernel/sched_fair.c", "sched_slice")]
    private long SchedSlice(CfsRq cfs, TaskStruct p)
    {
        int nr = cfs.NrRunning + (p.OnRq ? 0 : 1);
        long load = cfs.Load + (p.OnRq ? 0 : p.Se.Weight);
        return __SchedPeriod(nr) * p.Se.Weight / Math.Max(1, load);
    }

    /// <summary>update_curr(): charges the running task for the time since it was last charged.</summary>
    [Port("kernel/sched_fair.c", "update_curr")]
    private void UpdateCurr(CfsRq cfs)
    {
        var curr = cfs.Curr;
        if (curr is null)
        {
            return;
        }
        long delta = cfs.Clock - curr.Se.ExecStart;
        if (delta <= 0)
        {
            return;
        }
        curr.Se.SumExecRuntime += delta;
        curr.Se.Vruntime += delta * 1024 / curr.Se.Weight;
        curr.Se.ExecStart = cfs.Clock;
        UpdateMinVruntime(cfs);
    }

    [Port("kernel/sched_fair.c", "update_min_vruntime")]
    private static void UpdateMinVruntime(CfsRq cfs)
    {
        long vruntime = cfs.MinVruntime;
        bool any = false;
        if (cfs.Curr is { } curr)
        {
            vruntime = curr.Se.Vruntime;
            any = true;
        }
        if (cfs.Leftmost is { } left)
        {
            vruntime = any ? Math.Min(vruntime, left.Se.Vruntime) : left.Se.Vruntime;
        }
        cfs.MinVruntime = Math.Max(cfs.MinVruntime, vruntime);
    }

    /// <summary>
    /// place_entity(): a new task starts one slice behind (START_DEBIT); a waking one at most
    /// half a latency before min_vruntime (GENTLE_FAIR_SLEEPERS).
    /// </summary>
    [Port("kernel/sched_fair.c", "place_entity")]
    private void PlaceEntity(CfsRq cfs, TaskStruct p, bool initial)
    {
        long vruntime = cfs.MinVruntime;
        if (initial)
        {
            vruntime += SchedSlice(cfs, p);
        }
        else
        {
            vruntime -= SysctlSchedLatency / 2;
        }
        p.Se.Vruntime = initial ? vruntime : Math.Max(p.Se.Vruntime, vruntime);
    }

    [Port("kernel/sched_fair.c", "task_fork_fair")]
    private void TaskForkFair(Rq rq, TaskStruct p)
    {
        UpdateRqClock(rq);
        UpdateCurr(rq.Cfs);
        PlaceEntity(rq.Cfs, p, initial: true);
    }

    [Port("kernel/sched_fair.c", "enqueue_task_fair")]
    private void EnqueueTaskFair(Rq rq, TaskStruct p, bool wakeup)
    {
        var cfs = rq.Cfs;
        UpdateCurr(cfs);
        if (wakeup)
        {
            PlaceEntity(cfs, p, initial: false);
        }
        if (!ReferenceEquals(cfs.Curr, p))
        {
            cfs.Insert(p);
        }
        cfs.NrRunning++;
        cfs.Load += p.Se.Weight;
    }

    [Port("kernel/sched_fair.c", "dequeue_task_fair")]
    private void DequeueTaskFair(Rq rq, TaskStruct p)
    {
        var cfs = rq.Cfs;
        UpdateCurr(cfs);
        cfs.Remove(p);
        if (ReferenceEquals(cfs.Curr, p))
        {
            cfs.Curr = null;
        }
        cfs.NrRunning--;
        cfs.Load -= p.Se.Weight;
        UpdateMinVruntime(cfs);
    }

    /// <summary>put_prev_task_fair(): the task that ran goes back into the tree if still queued.</summary>
    [Port("kernel/sched_fair.c", "put_prev_task_fair")]
    private void PutPrevTaskFair(Rq rq, TaskStruct prev)
    {
        var cfs = rq.Cfs;
        if (prev.IsIdle || !ReferenceEquals(cfs.Curr, prev))
        {
            return;
        }
        UpdateCurr(cfs);
        cfs.Curr = null;
        if (prev.OnRq)
        {
            cfs.Insert(prev);
        }
    }

    /// <summary>pick_next_task_fair(): the leftmost task, made current (set_next_entity).</summary>
    [Port("kernel/sched_fair.c", "pick_next_task_fair")]
    private TaskStruct? PickNextTaskFair(Rq rq)
    {
        var cfs = rq.Cfs;
        var next = cfs.Leftmost;
        if (next is null)
        {
            return null;
        }
        cfs.Remove(next);
        cfs.Curr = next;
        next.Se.ExecStart = cfs.Clock;
        next.Se.PrevSumExecRuntime = next.Se.SumExecRuntime;
        return next;
    }

    /// <summary>task_tick_fair() → entity_tick() → check_preempt_tick().</summary>
    [Port("kernel/sched_fair.c", "task_tick_fair")]
    private void TaskTickFair(Rq rq, TaskStruct curr)
    {
        var cfs = rq.Cfs;
        UpdateCurr(cfs);
        if (cfs.NrRunning > 1)
        {
            CheckPreemptTick(cfs, curr);
        }
    }

    /// <summary>check_preempt_tick(): preempt once the task has run longer than its slice.</summary>
    [Port("kernel/sched_fair.c", "check_preempt_tick")]
    private void CheckPreemptTick(CfsRq cfs, TaskStruct curr)
    {
        long idealRuntime = SchedSlice(cfs, curr);
        long deltaExec = curr.Se.SumExecRuntime - curr.Se.PrevSumExecRuntime;
        if (deltaExec > idealRuntime)
        {
            ReschedTask(curr);
        }
    }

    /// <summary>check_preempt_wakeup(): preempt if the woken task is more than a wakeup granularity behind.</summary>
    [Port("kernel/sched_fair.c", "check_preempt_wakeup")]
    private void CheckPreemptWakeup(Rq rq, TaskStruct p)
    {
        var curr = rq.Curr;
        if (ReferenceEquals(curr, p))
        {
            return;
        }
        if (curr.IsIdle)
        {
            ReschedTask(curr);
            return;
        }
        UpdateCurr(rq.Cfs);
        if (curr.Se.Vruntime - p.Se.Vruntime > SysctlSchedWakeupGranularity)
        {
            ReschedTask(curr);
        }
    }
}
