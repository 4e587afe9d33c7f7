using System.Diagnostics.Tracing;

namespace Linux;

/// <summary>
/// include/trace/events/sched.h: the scheduler's tracepoints, for the timeline of guest tasks
/// (running, runnable, asleep). Only a kernel with run queues emits them (the guest: the host
/// gives every task a CPU of its own, DESIGN section 2). VcpuId is the CPU of the run queue.
/// Same rules as <see cref="KvmTrace"/>.
/// </summary>
[EventSource(Name = ProviderName)]
public sealed class SchedTrace : TracepointSource
{
    public const string ProviderName = "Linux-Sched";

    public static readonly SchedTrace Log = new();

    private SchedTrace()
        : base(ProviderName)
    {
    }

    /// <summary>One keyword per area.</summary>
    public static class Keywords
    {
        /// <summary>Context switches and wakeups.</summary>
        public const EventKeywords Sched = (EventKeywords)0x1;
    }

    /// <summary>TRACE_EVENT(sched_switch): PrevPid leaves the CPU in PrevState (0: runnable, else asleep or dead), NextPid runs.</summary>
    [Event(1, Level = EventLevel.Verbose, Keywords = Keywords.Sched, Message = "prev_comm={5} prev_pid={4} prev_state={6} ==> next_comm={8} next_pid={7}")]
    public void sched_switch(long RunId, int VmId, int VcpuId, long TimeNs, int PrevPid, string PrevComm, int PrevState, int NextPid, string NextComm, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Sched))
        {
            WriteISIIS(1, RunId, VmId, VcpuId, TimeNs, PrevPid, PrevComm, PrevState, NextPid, NextComm, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(sched_wakeup): Pid is runnable again on TargetCpu's run queue.</summary>
    [Event(2, Level = EventLevel.Verbose, Keywords = Keywords.Sched, Message = "comm={5} pid={4} target_cpu={6}")]
    public void sched_wakeup(long RunId, int VmId, int VcpuId, long TimeNs, int Pid, string Comm, int TargetCpu, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Sched))
        {
            WriteISI(2, RunId, VmId, VcpuId, TimeNs, Pid, Comm, TargetCpu, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(sched_wakeup_new): a new task Pid is runnable on TargetCpu's run queue.</summary>
    [Event(3, Level = EventLevel.Verbose, Keywords = Keywords.Sched, Message = "comm={5} pid={4} target_cpu={6}")]
    public void sched_wakeup_new(long RunId, int VmId, int VcpuId, long TimeNs, int Pid, string Comm, int TargetCpu, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Sched))
        {
            WriteISI(3, RunId, VmId, VcpuId, TimeNs, Pid, Comm, TargetCpu, Kernel);
        }
    }
}
