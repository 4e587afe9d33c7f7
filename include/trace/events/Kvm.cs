using System.Diagnostics.Tracing;
using Hw;

namespace Linux;

/// <summary>
/// include/trace/events/kvm.h: the host's tracepoints. The async PF events are the ones of the
/// series as seeds/004 names them (patch 8; "tracepoints instead of statistics"), with their
/// TP_PROTO fields; the rest is what the analysis needs (tools/kvm-stat, Documentation/tracing.md):
/// VM exits and entries, the MMU's page faults and sptes, swap-in I/O and halts. Every payload is
/// (RunId, VmId, VcpuId, TimeNs, the TRACE_EVENT's fields..., Kernel) as <see cref="TracepointSource"/>
/// writes it, so the first field is {4} in <c>Message</c>.
/// Hot events write through <see cref="EventSource.WriteEventCore"/>; each checks
/// <see cref="EventSource.IsEnabled(EventLevel, EventKeywords)"/> before it touches its arguments.
/// </summary>
/// <remarks>
/// The run's <c>apf</c> figures are counted where <see cref="kvm_async_pf_inject"/>,
/// <see cref="kvm_async_pf_sync_fallback"/> and <see cref="kvm_async_pf_queued"/> fire:
/// <see cref="kvm_async_pf_not_present"/> and <see cref="kvm_async_pf_ready"/> fire where Linux
/// has them, before the reason word is written, so they also count events the guest never got.
/// </remarks>
[EventSource(Name = ProviderName)]
public sealed class KvmTrace : TracepointSource
{
    public const string ProviderName = "Linux-KVM";

    public static readonly KvmTrace Log = new();

    private KvmTrace()
        : base(ProviderName)
    {
    }

    /// <summary>One keyword per area.</summary>
    public static class Keywords
    {
        /// <summary>The async page fault events (patch 8).</summary>
        public const EventKeywords AsyncPf = (EventKeywords)0x1;

        /// <summary>Page faults the MMU handles, sptes installed and zapped.</summary>
        public const EventKeywords Mmu = (EventKeywords)0x2;

        /// <summary>VM exits and entries, and the vCPU thread blocking while the vCPU is halted.</summary>
        public const EventKeywords Exit = (EventKeywords)0x4;

        /// <summary>Swap-in I/O of the host's mm.</summary>
        public const EventKeywords Swap = (EventKeywords)0x8;
    }

    /// <summary>Payload value of <see cref="kvm_async_pf_inject"/>'s Reason: KVM_PV_REASON_PAGE_NOT_PRESENT.</summary>
    public const int ReasonNotPresent = 1;

    /// <summary>Payload value of <see cref="kvm_async_pf_inject"/>'s Reason: KVM_PV_REASON_PAGE_READY.</summary>
    public const int ReasonPageReady = 2;

    /// <summary>TRACE_EVENT(kvm_try_async_get_page) (patch 8): the fault path looked for the page without I/O; pfn -1 when it needs I/O.</summary>
    [Event(1, Level = EventLevel.Verbose, Keywords = Keywords.AsyncPf, Message = "pfn {4} async {5}")]
    public void kvm_try_async_get_page(long RunId, int VmId, int VcpuId, long TimeNs, long Pfn, bool Async, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.AsyncPf))
        {
            Write(1, RunId, VmId, VcpuId, TimeNs, Pfn, Async ? 1 : 0, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_not_present) (patch 8): the guest is to be told the page is not present.</summary>
    [Event(2, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "token {4} gva {5} not present")]
    public void kvm_async_pf_not_present(long RunId, int VmId, int VcpuId, long TimeNs, long Token, long Gva, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(2, RunId, VmId, VcpuId, TimeNs, Token, Gva, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_ready) (patch 8): the guest is to be told the page is ready (token 0xffffffff: wake all).</summary>
    [Event(3, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "token {4} gva {5} ready")]
    public void kvm_async_pf_ready(long RunId, int VmId, int VcpuId, long TimeNs, long Token, long Gva, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(3, RunId, VmId, VcpuId, TimeNs, Token, Gva, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_completed) (patch 8): the worker has the page.</summary>
    [Event(4, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "gva {5} address {4}")]
    public void kvm_async_pf_completed(long RunId, int VmId, int VcpuId, long TimeNs, long Address, long Gva, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(4, RunId, VmId, VcpuId, TimeNs, Address, Gva, Kernel);
        }
    }

    /// <summary>
    /// A fault that needed I/O was handled synchronously although the guest enabled async PF, and
    /// why (cap, allocation, bad hva, event pending, interrupts, cpl): the run's <c>sync_fallbacks</c>.
    /// </summary>
    [Event(5, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "gva {4} synchronous: {5}")]
    public void kvm_async_pf_sync_fallback(long RunId, int VmId, int VcpuId, long TimeNs, long Gva, string Reason, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(5, RunId, VmId, VcpuId, TimeNs, Gva, Reason, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_async_pf_doublefault): a fault on a gfn already outstanding; only the gfn-hash protocol variant emits it.</summary>
    [Event(6, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "gva {4} gfn {5}")]
    public void kvm_async_pf_doublefault(long RunId, int VmId, int VcpuId, long TimeNs, long Gva, long Gfn, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(6, RunId, VmId, VcpuId, TimeNs, Gva, Gfn, Kernel);
        }
    }

    /// <summary>
    /// The reason word was written and the #PF queued for the guest: Reason 1 (not present) or 2
    /// (page ready; token 0xffffffff: wake all). The run's <c>not_present</c>, <c>page_ready</c>
    /// and <c>wake_all</c> count these.
    /// </summary>
    [Event(7, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "reason {4} token {5} injected")]
    public void kvm_async_pf_inject(long RunId, int VmId, int VcpuId, long TimeNs, int Reason, long Token, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(7, RunId, VmId, VcpuId, TimeNs, Reason, Token, Kernel);
        }
    }

    /// <summary>
    /// vcpu->async_pf.queued changed, and why: <c>setup</c> (an async fault started), <c>wakeup_all</c>
    /// (a wake-all queued), <c>done</c> (a completion presented to the guest), <c>clear</c> (the queue
    /// dropped). The run's <c>max_outstanding</c> is the largest value after a <c>setup</c>.
    /// </summary>
    [Event(8, Level = EventLevel.Informational, Keywords = Keywords.AsyncPf, Message = "{4} queued after {5}")]
    public void kvm_async_pf_queued(long RunId, int VmId, int VcpuId, long TimeNs, int Queued, string Change, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.AsyncPf))
        {
            Write(8, RunId, VmId, VcpuId, TimeNs, Queued, Change, Kernel);
        }
    }

    /// <summary>
    /// TRACE_EVENT(kvm_exit) (arch/x86/kvm/trace.h): the host handles a VM exit. ExitReason is the
    /// VMX basic exit reason; Info the faulting address (gpa for an EPT violation, gva for a #PF).
    /// </summary>
    [Event(9, Level = EventLevel.Verbose, Keywords = Keywords.Exit, Message = "reason {5} info {6} cpl {7}")]
    public void kvm_exit(long RunId, int VmId, int VcpuId, long TimeNs, int ExitReason, string Reason, long Info, int Cpl, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Exit))
        {
            WriteISLI(9, RunId, VmId, VcpuId, TimeNs, ExitReason, Reason, Info, Cpl, Kernel);
        }
    }

    /// <summary>kvm_exit for a call site: the reason's name is looked up only when the event is on.</summary>
    [NonEvent]
    public void kvm_exit(long RunId, int VmId, int VcpuId, long TimeNs, ExitReason Reason, long Info, int Cpl, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Exit))
        {
            kvm_exit(RunId, VmId, VcpuId, TimeNs, (int)Reason, ExitReasonName((int)Reason), Info, Cpl, Kernel);
        }
    }

    /// <summary>
    /// TRACE_EVENT(kvm_entry): the vCPU thread enters the guest. Vector is the event injected with
    /// the entry (-1: none); HostNs the host work paid before the entry, so guest mode starts
    /// HostNs plus the entry cost later.
    /// </summary>
    [Event(10, Level = EventLevel.Verbose, Keywords = Keywords.Exit, Message = "vcpu {2} inject {4} after {5} ns of host work")]
    public void kvm_entry(long RunId, int VmId, int VcpuId, long TimeNs, int Vector, long HostNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Exit))
        {
            Write(10, RunId, VmId, VcpuId, TimeNs, Vector, HostNs, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_page_fault): the exit is a fault the MMU handles (EPT violation, or a #PF under shadow paging).</summary>
    [Event(11, Level = EventLevel.Verbose, Keywords = Keywords.Mmu, Message = "address {4} error_code {5}")]
    public void kvm_page_fault(long RunId, int VmId, int VcpuId, long TimeNs, long Address, int ErrorCode, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Mmu))
        {
            Write(11, RunId, VmId, VcpuId, TimeNs, Address, ErrorCode, Kernel);
        }
    }

    /// <summary>The MMU is done with the fault (its handler returned Result); the time since <see cref="kvm_page_fault"/> is the vCPU stalled.</summary>
    [Event(12, Level = EventLevel.Verbose, Keywords = Keywords.Mmu, Message = "address {4} handled: {5}")]
    public void kvm_page_fault_done(long RunId, int VmId, int VcpuId, long TimeNs, long Address, int Result, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Mmu))
        {
            Write(12, RunId, VmId, VcpuId, TimeNs, Address, Result, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_mmu_set_spte) (arch/x86/kvm/mmutrace.h): an spte now maps Gfn to Pfn.</summary>
    [Event(13, Level = EventLevel.Verbose, Keywords = Keywords.Mmu, Message = "gfn {4} pfn {5}")]
    public void kvm_mmu_set_spte(long RunId, int VmId, int VcpuId, long TimeNs, long Gfn, long Pfn, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Mmu))
        {
            Write(13, RunId, VmId, VcpuId, TimeNs, Gfn, Pfn, Kernel);
        }
    }

    /// <summary>An spte mapping Pfn was zapped (an MMU-notifier invalidation: the host is reclaiming the page).</summary>
    [Event(14, Level = EventLevel.Verbose, Keywords = Keywords.Mmu, Message = "pfn {4} writable {5}")]
    public void kvm_mmu_zap_spte(long RunId, int VmId, int VcpuId, long TimeNs, long Pfn, bool Writable, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Mmu))
        {
            Write(14, RunId, VmId, VcpuId, TimeNs, Pfn, Writable ? 1 : 0, Kernel);
        }
    }

    /// <summary>kvm_vcpu_block(): the vCPU is halted (a guest HLT, or the host halting it for a page) and its thread sleeps.</summary>
    [Event(15, Level = EventLevel.Verbose, Keywords = Keywords.Exit, Message = "vcpu {2} blocks")]
    public void kvm_vcpu_block(long RunId, int VmId, int VcpuId, long TimeNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Exit))
        {
            WriteHeader(15, RunId, VmId, VcpuId, TimeNs, Kernel);
        }
    }

    /// <summary>TRACE_EVENT(kvm_vcpu_wakeup): the halted vCPU's thread runs again.</summary>
    [Event(16, Level = EventLevel.Verbose, Keywords = Keywords.Exit, Message = "vcpu {2} wakes")]
    public void kvm_vcpu_wakeup(long RunId, int VmId, int VcpuId, long TimeNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Exit))
        {
            WriteHeader(16, RunId, VmId, VcpuId, TimeNs, Kernel);
        }
    }

    /// <summary>swap_readpage(): a read of swap slot Offset into frame Pfn is issued.</summary>
    [Event(17, Level = EventLevel.Verbose, Keywords = Keywords.Swap, Message = "slot {4} into pfn {5}")]
    public void mm_swap_readpage(long RunId, int VmId, int VcpuId, long TimeNs, long Offset, long Pfn, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Swap))
        {
            Write(17, RunId, VmId, VcpuId, TimeNs, Offset, Pfn, Kernel);
        }
    }

    /// <summary>end_swap_bio_read(): the read of swap slot Offset into frame Pfn is done.</summary>
    [Event(18, Level = EventLevel.Verbose, Keywords = Keywords.Swap, Message = "slot {4} read into pfn {5}")]
    public void mm_swap_read_done(long RunId, int VmId, int VcpuId, long TimeNs, long Offset, long Pfn, string Kernel)
    {
        if (IsEnabled(EventLevel.Verbose, Keywords.Swap))
        {
            Write(18, RunId, VmId, VcpuId, TimeNs, Offset, Pfn, Kernel);
        }
    }

    /// <summary>The name of a VMX basic exit reason, as kvm_exit's __print_symbolic prints it.</summary>
    [NonEvent]
    public static string ExitReasonName(int reason) => (ExitReason)reason switch
    {
        Hw.ExitReason.ExceptionNmi => "EXCEPTION_NMI",
        Hw.ExitReason.ExternalInterrupt => "EXTERNAL_INTERRUPT",
        Hw.ExitReason.TripleFault => "TRIPLE_FAULT",
        Hw.ExitReason.InterruptWindow => "PENDING_INTERRUPT",
        Hw.ExitReason.Hlt => "HLT",
        Hw.ExitReason.EptViolation => "EPT_VIOLATION",
        _ => "UNKNOWN",
    };
}
