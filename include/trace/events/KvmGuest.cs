using System.Diagnostics.Tracing;

namespace Linux;

/// <summary>
/// The guest's async PF tracepoints, which seeds/004 asks for ("would be good to have both guest
/// and host tracepoints"); Linux has none in the guest. Same rules as <see cref="KvmTrace"/>.
/// </summary>
[EventSource(Name = "Linux-KVM-Guest")]
public sealed class KvmGuestTrace : EventSource
{
    public static readonly KvmGuestTrace Log = new();

    private KvmGuestTrace()
    {
    }

    public static class Keywords
    {
        public const EventKeywords AsyncPf = (EventKeywords)1;
    }

    [Event(1, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "pid {4} sleeps on token {5}")]
    public void apf_task_sleep(long RunId, int Cpu, long TimeNs, int Pid, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(1, RunId, Cpu, TimeNs, Pid, Token);
        }
    }

    [Event(2, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "pid {4} woken by token {5}")]
    public void apf_task_woken(long RunId, int Cpu, long TimeNs, int Pid, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(2, RunId, Cpu, TimeNs, Pid, Token);
        }
    }

    [Event(3, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "dummy entry for token {4} created")]
    public void apf_dummy_created(long RunId, int Cpu, long TimeNs, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(3, RunId, Cpu, TimeNs, Token);
        }
    }

    [Event(4, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "dummy entry for token {4} consumed")]
    public void apf_dummy_consumed(long RunId, int Cpu, long TimeNs, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(4, RunId, Cpu, TimeNs, Token);
        }
    }

    [Event(5, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {1} halted for token {3}")]
    public void apf_cpu_halted(long RunId, int Cpu, long TimeNs, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(5, RunId, Cpu, TimeNs, Token);
        }
    }

    [Event(6, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {1} resumed after token {3}")]
    public void apf_cpu_resumed(long RunId, int Cpu, long TimeNs, long Token)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(6, RunId, Cpu, TimeNs, Token);
        }
    }

    [Event(7, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {1} wake all: {3} woken")]
    public void apf_wake_all(long RunId, int Cpu, long TimeNs, int Woken)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(7, RunId, Cpu, TimeNs, Woken);
        }
    }
}
