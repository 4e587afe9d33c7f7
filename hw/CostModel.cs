namespace Hw;

/// <summary>
/// Every time constant of the model in one record (DESIGN section 2, "Cost model"). Each value
/// says where it comes from; Documentation/sim-model.md has the table with the sources, and
/// every field can be set from apf-bench's command line (<c>--cost NAME=VALUE</c>).
/// </summary>
public sealed record CostModel
{
    /// <summary>Hardware VM exit plus KVM's exit path to the handler, ns. Nehalem-class VMX round trip of about
    /// 400 cycles at 2.93 GHz (Intel's published VMX latency trend) plus the register save of vmx_vcpu_run.</summary>
    public long VmExitNs { get; init; } = 400;

    /// <summary>KVM's entry path and the hardware VM entry, ns (same source).</summary>
    public long VmEntryNs { get; init; } = 300;

    /// <summary>An exit that the host handles without sleeping (MSR, CPUID, APIC write), round trip, ns.</summary>
    public long InlineExitNs { get; init; } = 1_500;

    /// <summary>Host handling of an EPT violation or shadow #PF when the page is present (gup_fast, spte install), ns.</summary>
    public long HostFaultNs { get; init; } = 1_000;

    /// <summary>Host allocation and zeroing of a fresh anonymous page, ns (clear_page of 4 KiB at ~5 GB/s plus the allocator).</summary>
    public long HostAnonPageNs { get; init; } = 1_500;

    /// <summary>Host reclaim work per page scanned, ns (rmap walk, notifier, swap-cache insertion).</summary>
    public long ReclaimPerPageNs { get; init; } = 300;

    /// <summary>Exception or interrupt delivery into the guest and the matching iret, ns.</summary>
    public long GuestEventDeliveryNs { get; init; } = 200;

    /// <summary>Guest timer interrupt: hrtimer_interrupt, tick_sched_timer, scheduler_tick and the timer softirq, ns.</summary>
    public long GuestTickNs { get; init; } = 2_000;

    /// <summary>Guest context switch, ns (lmbench lat_ctx on 2010 hardware, 2–3 µs with a virtualized TLB).</summary>
    public long GuestContextSwitchNs { get; init; } = 2_500;

    /// <summary>Guest demand fault of an anonymous page without I/O (do_page_fault, page allocation, PTE set), ns.</summary>
    public long GuestPageFaultNs { get; init; } = 1_500;

    /// <summary>Guest system call entry and exit, ns.</summary>
    public long GuestSyscallNs { get; init; } = 300;

    /// <summary>One iteration of bm's fault loop when the page is mapped: random() with its lock, a TLB miss
    /// with a two-dimensional walk, and the store, ns.</summary>
    public long FaultLoopIterationNs { get; init; } = 250;

    /// <summary>Calibrated: work-thread counter increments per µs of user time, 1100. Fitted to the slides'
    /// with-async-PF block: 258,846,142,585 / (4 workers × 60 s × 0.98 work_thread share of the guest profile).</summary>
    public long IncrementsPerMicrosecond { get; init; } = 1_100;

    /// <summary>The swap disk.</summary>
    public DiskGeometry Disk { get; init; } = new();
}
