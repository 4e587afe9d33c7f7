using Hw;

namespace Linux;

/// <summary>A sleeping task's timer (an hrtimer of hrtimer_nanosleep in low-resolution mode).</summary>
public sealed class SleepTimer(TaskStruct task, long expires)
{
    public TaskStruct Task { get; } = task;

    public long Expires { get; } = expires;
}

// kernel/timer.c, kernel/time/tick-common.c and the low-resolution path of kernel/hrtimer.c
// (patch 0): the periodic tick and what it runs. Guest time is the hardware clock (kvmclock),
// so jiffies follow the clock and ticks that arrive late still expire timers on time.
public sealed partial class Kernel
{
    private readonly List<SleepTimer> _sleepTimers = [];

    /// <summary>Length of a tick, ns.</summary>
    public long TickNsec => 1_000_000_000L / Config.HZ;

    /// <summary>jiffies, from the clock.</summary>
    public long Jiffies => Now / TickNsec;

    /// <summary>tick_periodic() → update_process_times() and the timer softirq.</summary>
    [Port("kernel/time/tick-common.c", "tick_periodic")]
    private void TickPeriodic(int cpu)
    {
        UpdateProcessTimes(cpu);
    }

    /// <summary>update_process_times(): scheduler tick, then expired timers (run_local_timers).</summary>
    [Port("kernel/timer.c", "update_process_times")]
    private void UpdateProcessTimes(int cpu)
    {
        SchedulerTick(cpu);
        HrtimerRunQueues();
    }

    /// <summary>hrtimer_run_queues(): wakes the sleepers whose time has come.</summary>
    [Port("kernel/hrtimer.c", "hrtimer_run_queues")]
    private void HrtimerRunQueues()
    {
        for (int i = 0; i < _sleepTimers.Count;)
        {
            var t = _sleepTimers[i];
            if (t.Expires <= Now)
            {
                _sleepTimers.RemoveAt(i);
                WakeUpProcess(t.Task);
                continue;
            }
            i++;
        }
    }

    /// <summary>hrtimer_nanosleep() → do_nanosleep(): sleeps at least <paramref name="ns"/>, woken by a tick.</summary>
    [Port("kernel/hrtimer.c", "do_nanosleep")]
    public async SimTask DoNanosleep(long ns)
    {
        MightSleep();
        var me = Current;
        var timer = new SleepTimer(me, Now + ns);
        _sleepTimers.Add(timer);
        while (_sleepTimers.Contains(timer))
        {
            SetCurrentState(TaskStates.TASK_INTERRUPTIBLE);
            await Schedule();
        }
    }
}
