using System.Diagnostics.CodeAnalysis;
using Hw;

namespace Linux;

/// <summary>kernel/sched.c: struct rq, the per-CPU run queue.</summary>
public sealed class Rq(int cpu)
{
    public int Cpu { get; } = cpu;

    /// <summary>Protected by rq->lock: the running task.</summary>
    public TaskStruct Curr { get; set; } = null!;

    public TaskStruct Idle { get; set; } = null!;

    public CfsRq Cfs { get; } = new();

    /// <summary>Runnable tasks, the running one included (the idle task never counts).</summary>
    public int NrRunning { get; set; }

    /// <summary>Tick count at which the next periodic load balance is due.</summary>
    public long NextBalance { get; set; }

    /// <summary>Context switches on this CPU.</summary>
    public long NrSwitches { get; set; }
}

// kernel/sched.c, as of 2.6.32: the core scheduler, with the host reduced to "a CPU per task".
public sealed partial class Kernel
{
    private TaskStruct? _current;
    private int _nextPid = 1;

    /// <summary>The per-CPU run queues (guest).</summary>
    public Rq[] Runqueues { get; private set; } = [];

    /// <summary>Preemption and spinlock nesting of the code running now (one piece of code runs at a time).</summary>
    public int PreemptCount { get; internal set; }

    /// <summary>Hard interrupt nesting of the code running now.</summary>
    public int HardirqCount { get; internal set; }

    /// <summary><c>current</c>: the task whose code runs now.</summary>
    public TaskStruct Current
    {
        get => _current ?? throw new InvalidOperationException($"{Name}: no current task");
        internal set => _current = value;
    }

    /// <summary>smp_processor_id().</summary>
    public int SmpProcessorId => Current.Cpu;

    /// <summary>Every task the kernel created, by pid order.</summary>
    public List<TaskStruct> Tasks { get; } = [];

    private void SchedInit()
    {
        if (Config.DedicatedCpuPerTask)
        {
            return;
        }
        Runqueues = new Rq[HwCpus.Count];
        for (int cpu = 0; cpu < HwCpus.Count; cpu++)
        {
            var rq = new Rq(cpu);
            var idle = new TaskStruct(0, $"swapper/{cpu}") { IsIdle = true, Context = new GuestContext($"{Name}:swapper/{cpu}"), Cpu = cpu };
            idle.Context!.Owner = idle;
            rq.Idle = idle;
            rq.Curr = idle;
            Runqueues[cpu] = rq;
            HwCpus[cpu].Resuming = OnGuestCodeResuming;
        }
        SchedInitGranularity();
    }

    /// <summary>The CPU is about to run code of <paramref name="ctx"/>: that task becomes <c>current</c>.</summary>
    private void OnGuestCodeResuming(X86Cpu cpu, GuestContext ctx)
    {
        if (ctx.Owner is TaskStruct t)
        {
            _current = t;
        }
    }

    /// <summary>__might_sleep(): sleeping here would be a bug if the caller is atomic.</summary>
    [Port("include/linux/kernel.h", "might_sleep")]
    public void MightSleep()
    {
        if ((PreemptCount | HardirqCount) != 0)
        {
            SleepingWhileAtomic();
        }
    }

    /// <summary>__might_sleep()'s report, out of line so that the check inlines where it is called.</summary>
    [DoesNotReturn]
    private void SleepingWhileAtomic() => throw new SchedulingWhileAtomicException(
        $"BUG: {Name}: sleeping function called from invalid context (preempt_count {PreemptCount}, hardirq {HardirqCount})");

    /// <summary>Allocates a task; a guest task gets a register context, a host task a wait point.</summary>
    public TaskStruct AllocTask(string comm, MmStruct? mm)
    {
        var task = Config.DedicatedCpuPerTask
            ? new TaskStruct(_nextPid++, comm) { WakeSignal = new SimSignal(Loop), Mm = mm }
            : new TaskStruct(_nextPid++, comm) { Context = new GuestContext($"{Name}:{comm}"), Mm = mm };
        if (task.Context is not null)
        {
            task.Context.Owner = task;
        }
        Tasks.Add(task);
        return task;
    }

    /// <summary>wake_up_new_task(): puts a new task on the least loaded CPU (fork balancing) and lets it run.</summary>
    [Port("kernel/sched.c", "wake_up_new_task")]
    public void WakeUpNewTask(TaskStruct p)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (Config.DedicatedCpuPerTask)
        {
            return; // a host thread starts on its own CPU: the caller runs its function directly
        }
        int cpu = SelectTaskRqFair(p);
        p.Cpu = cpu;
        var rq = Runqueues[cpu];
        TaskForkFair(rq, p);
        ActivateTask(rq, p, wakeup: false);
        SchedTrace.Log.sched_wakeup_new(TraceRunId, TraceVmId, p.Cpu, Now, p.Pid, p.Comm, p.Cpu, Name);
        CheckPreemptCurr(rq, p);
    }

    /// <summary>
    /// select_task_rq_fair(SD_BALANCE_FORK): the idlest CPU. Ties go to the CPU with fewer tasks
    /// that last ran there (sleeping ones included), then to the lowest number.
    /// </summary>
    [Port("kernel/sched_fair.c", "select_task_rq_fair")]
    private int SelectTaskRqFair(TaskStruct p)
    {
        int best = 0;
        long bestLoad = long.MaxValue;
        int bestHomed = int.MaxValue;
        foreach (var rq in Runqueues)
        {
            long load = rq.Cfs.Load;
            int homed = Tasks.Count(t => !ReferenceEquals(t, p) && !t.IsIdle && t.State != TaskStates.TASK_DEAD && t.Cpu == rq.Cpu);
            if (load < bestLoad || (load == bestLoad && homed < bestHomed))
            {
                best = rq.Cpu;
                bestLoad = load;
                bestHomed = homed;
            }
        }
        return best;
    }

    /// <summary>try_to_wake_up(): makes <paramref name="p"/> runnable; false if it was already.</summary>
    [Port("kernel/sched.c", "try_to_wake_up")]
    public bool TryToWakeUp(TaskStruct p)
    {
        ArgumentNullException.ThrowIfNull(p);
        if (p.State == TaskStates.TASK_RUNNING)
        {
            return false;
        }
        p.State = TaskStates.TASK_RUNNING;
        if (Config.DedicatedCpuPerTask)
        {
            if (p.WakeSignal!.Waiting)
            {
                p.WakeSignal.Set();
            }
            return true;
        }
        if (p.OnRq)
        {
            return true; // it never left the run queue (woken before it slept)
        }
        var rq = Runqueues[p.Cpu];
        ActivateTask(rq, p, wakeup: true);
        SchedTrace.Log.sched_wakeup(TraceRunId, TraceVmId, p.Cpu, Now, p.Pid, p.Comm, p.Cpu, Name);
        CheckPreemptCurr(rq, p);
        return true;
    }

    /// <summary>wake_up_process().</summary>
    [Port("kernel/sched.c", "wake_up_process")]
    public bool WakeUpProcess(TaskStruct p) => TryToWakeUp(p);

    /// <summary>set_current_state().</summary>
    public void SetCurrentState(int state) => Current.State = state;

    /// <summary>
    /// schedule(): gives up the CPU. If the current task is not TASK_RUNNING it sleeps until
    /// woken; either way it returns when the task runs again.
    /// </summary>
    [Port("kernel/sched.c", "schedule")]
    public async SimTask Schedule()
    {
        MightSleep();
        var prev = Current;
        if (Config.DedicatedCpuPerTask)
        {
            if (prev.State != TaskStates.TASK_RUNNING)
            {
                await prev.WakeSignal!.Wait();
                _current = prev;
            }
            return;
        }
        if (__Schedule(Runqueues[prev.Cpu]))
        {
            await prev.Context!.WaitScheduledIn();
        }
    }

    /// <summary>
    /// __schedule() (the body of 2.6.32's schedule()): picks the next task on <paramref name="rq"/>
    /// and switches to it. Returns true if it switched away from the previous task. Used directly
    /// by the return-from-interrupt path, where the preempted task has no code waiting.
    /// </summary>
    [Port("kernel/sched.c", "__schedule")]
    internal bool __Schedule(Rq rq)
    {
        var prev = rq.Curr;
        prev.NeedResched = false;
        UpdateRqClock(rq);
        if (prev.State != TaskStates.TASK_RUNNING && prev.OnRq && !prev.IsIdle)
        {
            DeactivateTask(rq, prev);
        }
        if (rq.NrRunning == 0)
        {
            IdleBalance(rq);
        }
        PutPrevTaskFair(rq, prev);
        var next = PickNextTaskFair(rq) ?? rq.Idle;
        if (ReferenceEquals(next, prev))
        {
            return false;
        }
        ContextSwitch(rq, prev, next);
        return true;
    }

    /// <summary>context_switch(): switch_mm and switch_to.</summary>
    [Port("kernel/sched.c", "context_switch")]
    private void ContextSwitch(Rq rq, TaskStruct prev, TaskStruct next)
    {
        rq.Curr = next;
        rq.NrSwitches++;
        SchedTrace.Log.sched_switch(TraceRunId, TraceVmId, rq.Cpu, Now, prev.Pid, prev.Comm, prev.State, next.Pid, next.Comm, Name);
        var cpu = HwCpus[rq.Cpu];
        if (next.Mm is { } mm && !ReferenceEquals(mm, prev.Mm ?? _activeMm.GetValueOrDefault(rq.Cpu)))
        {
            cpu.WriteCr3(mm.Pgd); // switch_mm: a kernel thread keeps the previous mm (lazy TLB)
        }
        if (next.Mm is not null)
        {
            _activeMm[rq.Cpu] = next.Mm;
        }
        cpu.Charge(Costs.GuestContextSwitchNs);
        cpu.SwitchTo(next.Context!);
    }

    /// <summary>activate_task().</summary>
    [Port("kernel/sched.c", "activate_task")]
    private void ActivateTask(Rq rq, TaskStruct p, bool wakeup)
    {
        UpdateRqClock(rq);
        EnqueueTaskFair(rq, p, wakeup);
        p.OnRq = true;
        rq.NrRunning++;
    }

    /// <summary>deactivate_task().</summary>
    [Port("kernel/sched.c", "deactivate_task")]
    private void DeactivateTask(Rq rq, TaskStruct p)
    {
        DequeueTaskFair(rq, p);
        p.OnRq = false;
        rq.NrRunning--;
    }

    /// <summary>resched_task(): marks the task for rescheduling and kicks its CPU if that is another one.</summary>
    [Port("kernel/sched.c", "resched_task")]
    public void ReschedTask(TaskStruct p)
    {
        if (p.NeedResched)
        {
            return;
        }
        p.NeedResched = true;
        if (_current is { } me && me.Cpu != p.Cpu)
        {
            NativeSmpSendReschedule(me.Cpu, p.Cpu);
        }
        else if (_current is null)
        {
            NativeSmpSendReschedule(-1, p.Cpu);
        }
    }

    /// <summary>check_preempt_curr().</summary>
    [Port("kernel/sched.c", "check_preempt_curr")]
    private void CheckPreemptCurr(Rq rq, TaskStruct p) => CheckPreemptWakeup(rq, p);

    /// <summary>update_rq_clock(): the run queue's clock is the hardware clock.</summary>
    [Port("kernel/sched.c", "update_rq_clock")]
    private void UpdateRqClock(Rq rq) => rq.Cfs.Clock = Now;

    /// <summary>scheduler_tick(): called from the timer interrupt on every CPU.</summary>
    [Port("kernel/sched.c", "scheduler_tick")]
    internal void SchedulerTick(int cpu)
    {
        var rq = Runqueues[cpu];
        UpdateRqClock(rq);
        if (!rq.Curr.IsIdle)
        {
            TaskTickFair(rq, rq.Curr);
        }
        TriggerLoadBalance(rq);
    }

    /// <summary>
    /// trigger_load_balance() and rebalance_domains(): one flat domain of all CPUs. An idle CPU
    /// balances every tick, a busy one every 32 ticks (2.6.32's busy_factor of 32 on a 1-tick
    /// balance interval).
    /// </summary>
    [Port("kernel/sched.c", "trigger_load_balance")]
    private void TriggerLoadBalance(Rq rq)
    {
        long ticks = Jiffies;
        if (ticks < rq.NextBalance)
        {
            return;
        }
        bool idle = rq.Curr.IsIdle;
        rq.NextBalance = ticks + (idle ? 1 : 32);
        LoadBalance(rq);
    }

    /// <summary>idle_balance(): a CPU about to go idle tries to pull a task.</summary>
    [Port("kernel/sched.c", "idle_balance")]
    private void IdleBalance(Rq rq) => LoadBalance(rq);

    /// <summary>
    /// load_balance(): pulls one task from the busiest run queue when it has at least two tasks
    /// more than this one (or this one is empty and it has two). The task moved is the
    /// busiest queue's first waiting task in vruntime order.
    /// </summary>
    [Port("kernel/sched.c", "load_balance")]
    private void LoadBalance(Rq thisRq)
    {
        Rq? busiest = null;
        foreach (var rq in Runqueues)
        {
            if (busiest is null || rq.NrRunning > busiest.NrRunning)
            {
                busiest = rq;
            }
        }
        if (busiest is null || ReferenceEquals(busiest, thisRq) || busiest.NrRunning < 2)
        {
            return;
        }
        if (busiest.NrRunning - thisRq.NrRunning < 2)
        {
            return;
        }
        var victim = busiest.Cfs.FirstWaiting();
        if (victim is null)
        {
            return;
        }
        PullTask(busiest, victim, thisRq);
    }

    /// <summary>pull_task(): moves a waiting task to this CPU.</summary>
    [Port("kernel/sched.c", "pull_task")]
    private void PullTask(Rq src, TaskStruct p, Rq dst)
    {
        UpdateRqClock(src);
        DeactivateTask(src, p);
        SetTaskCpu(p, src, dst);
        ActivateTask(dst, p, wakeup: false);
        CheckPreemptCurr(dst, p);
    }

    /// <summary>set_task_cpu(): keeps vruntime relative to the new queue's min_vruntime.</summary>
    [Port("kernel/sched.c", "set_task_cpu")]
    private static void SetTaskCpu(TaskStruct p, Rq src, Rq dst)
    {
        p.Se.Vruntime -= src.Cfs.MinVruntime - dst.Cfs.MinVruntime;
        p.Cpu = dst.Cpu;
    }

    private readonly Dictionary<int, MmStruct> _activeMm = [];
}
