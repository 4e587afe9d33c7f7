using System.Diagnostics.Tracing;

namespace Linux;

/// <summary>
/// The guest's async PF tracepoints (arch/x86/kernel/kvm.c, patches 4 and 10), which seeds/004
/// asks for ("would be good to have both guest and host tracepoints"); Linux has none in the
/// guest. Same rules as <see cref="KvmTrace"/>: the header of <see cref="TracepointSource"/> first
/// (VcpuId is the guest CPU, which is the vCPU of the same number), a fixed id per event.
/// </summary>
[EventSource(Name = ProviderName)]
public sealed class KvmGuestTrace : TracepointSource
{
    public const string ProviderName = "Linux-KVM-Guest";

    public static readonly KvmGuestTrace Log = new();

    private KvmGuestTrace()
        : base(ProviderName)
    {
    }

    /// <summary>One keyword per area.</summary>
    public static class Keywords
    {
        /// <summary>The guest's side of async PF: sleeping and waking on tokens, dummy entries, halts.</summary>
        public const EventKeywords AsyncPf = (EventKeywords)0x1;
    }

    /// <summary>kvm_async_pf_task_wait(): task Pid sleeps until the page behind Token is ready.</summary>
    [Event(1, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "pid {4} sleeps on token {5}")]
    public void apf_task_sleep(long RunId, int VmId, int VcpuId, long TimeNs, int Pid, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(1, RunId, VmId, VcpuId, TimeNs, Pid, Token, Kernel);
        }
    }

    /// <summary>kvm_async_pf_task_wait(): task Pid runs again, its page ready.</summary>
    [Event(2, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "pid {4} woken by token {5}")]
    public void apf_task_woken(long RunId, int VmId, int VcpuId, long TimeNs, int Pid, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(2, RunId, VmId, VcpuId, TimeNs, Pid, Token, Kernel);
        }
    }

    /// <summary>kvm_async_pf_task_wake(): the page-ready came before the not-present was handled; a dummy entry waits for it.</summary>
    [Event(3, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "dummy entry for token {4} created")]
    public void apf_dummy_created(long RunId, int VmId, int VcpuId, long TimeNs, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(3, RunId, VmId, VcpuId, TimeNs, Token, Kernel);
        }
    }

    /// <summary>kvm_async_pf_task_wait(): the not-present found its dummy entry and returns at once.</summary>
    [Event(4, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "dummy entry for token {4} consumed")]
    public void apf_dummy_consumed(long RunId, int VmId, int VcpuId, long TimeNs, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(4, RunId, VmId, VcpuId, TimeNs, Token, Kernel);
        }
    }

    /// <summary>kvm_async_pf_task_wait() (patch 10): the faulting code cannot sleep, so the CPU halts until Token is ready.</summary>
    [Event(5, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {2} halted for token {4}")]
    public void apf_cpu_halted(long RunId, int VmId, int VcpuId, long TimeNs, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(5, RunId, VmId, VcpuId, TimeNs, Token, Kernel);
        }
    }

    /// <summary>kvm_async_pf_task_wait() (patch 10): the halted CPU resumes, Token ready.</summary>
    [Event(6, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {2} resumed after token {4}")]
    public void apf_cpu_resumed(long RunId, int VmId, int VcpuId, long TimeNs, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(6, RunId, VmId, VcpuId, TimeNs, Token, Kernel);
        }
    }

    /// <summary>apf_task_wake_all(): the wake-all token woke Woken waiters of this CPU.</summary>
    [Event(7, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "cpu {2} wake all: {4} woken")]
    public void apf_wake_all(long RunId, int VmId, int VcpuId, long TimeNs, int Woken, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(7, RunId, VmId, VcpuId, TimeNs, Woken, Kernel);
        }
    }
}
