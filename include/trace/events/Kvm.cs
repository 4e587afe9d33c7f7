using System.Diagnostics.Tracing;

namespace Linux;

/// <summary>
/// include/trace/events/kvm.h: the host's async PF tracepoints (patch 8, as seeds/004 asks:
/// tracepoints instead of statistics). Every event carries the run, the VM, the vCPU and the
/// virtual time, since EventSources are process-wide. Tracing never changes the simulation.
/// </summary>
[EventSource(Name = "Linux-KVM")]
public sealed class KvmTrace : EventSource
{
    public static readonly KvmTrace Log = new();

    private KvmTrace()
    {
    }

    public static class Keywords
    {
        public const EventKeywords AsyncPf = (EventKeywords)1;
        public const EventKeywords Mmu = (EventKeywords)2;
    }

    /// <summary>TRACE_EVENT(kvm_try_async_get_page): the fault path looked for the page without I/O.</summary>
    [Event(1, Level = EventLevel.Verbose, Keywords = Keywords.AsyncPf, Message = "{5} pfn {4}")]
    public void kvm_try_async_get_page(long RunId, int VmId, int VcpuId, long TimeNs, long Pfn, bool Async)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.AsyncPf))
        {
            WriteEvent(1, RunId, VmId, VcpuId, TimeNs, Pfn, Async);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_not_present): the guest is told the page is not present.</summary>
    [Event(2, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "token {4} gva {5} not present")]
    public void kvm_async_pf_not_present(long RunId, int VmId, int VcpuId, long TimeNs, long Token, long Gva)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(2, RunId, VmId, VcpuId, TimeNs, Token, Gva);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_ready): the guest is told the page is ready (token ~0: wake all).</summary>
    [Event(3, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "token {4} gva {5} ready")]
    public void kvm_async_pf_ready(long RunId, int VmId, int VcpuId, long TimeNs, long Token, long Gva)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(3, RunId, VmId, VcpuId, TimeNs, Token, Gva);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_completed): the worker has the page.</summary>
    [Event(4, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "gva {5} address {4}")]
    public void kvm_async_pf_completed(long RunId, int VmId, int VcpuId, long TimeNs, long Address, long Gva)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(4, RunId, VmId, VcpuId, TimeNs, Address, Gva);
        }
    }

    /// <summary>A fault that needed I/O went synchronous although async PF was enabled, and why.</summary>
    [Event(5, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "gva {4} synchronous: {5}")]
    public void kvm_async_pf_sync_fallback(long RunId, int VmId, int VcpuId, long TimeNs, long Gva, string Reason)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            WriteEvent(5, RunId, VmId, VcpuId, TimeNs, Gva, Reason);
        }
    }
}
