namespace KvmApf.Tracing;

/// <summary>Where a vCPU is, as the bench contract's <c>vcpus[]</c> splits its time.</summary>
public enum VcpuMode
{
    /// <summary>In guest mode.</summary>
    Guest,

    /// <summary>In the host handling an exit, not sleeping (exit and entry transitions included).</summary>
    Host,

    /// <summary>The vCPU thread asleep in the host inside a fault handler, waiting for a page.</summary>
    Stall,

    /// <summary>Halted: the vCPU thread blocks in kvm_vcpu_block.</summary>
    Halt,
}

/// <summary>
/// Rebuilds one vCPU's time line from its host tracepoints, the way the machine accounts it
/// (hw/Residency.cs and the kernel's marks): <c>kvm_entry</c> at t with HostNs h puts the vCPU in
/// guest mode at t + h + the entry cost; <c>kvm_exit</c> at t left guest mode the exit cost
/// earlier, and a fault exit (EPT violation, or #PF under shadow paging) stalls until
/// <c>kvm_page_fault_done</c>; <c>kvm_vcpu_block</c> and <c>kvm_vcpu_wakeup</c> bound a halt.
/// Each finished stretch goes to <paramref name="segment"/> (mode, start, end) once a later event
/// of the vCPU shows where it ends, so it is reported after every event with an earlier time.
/// </summary>
public sealed class VcpuTimeModel(long vmEntryNs, long vmExitNs, Action<VcpuMode, long, long> segment)
{
    /// <summary>VMX basic exit reasons whose handler is the MMU's page fault (kvm_page_fault_done ends the stall).</summary>
    public const int ExitReasonExceptionNmi = 0;

    /// <inheritdoc cref="ExitReasonExceptionNmi"/>
    public const int ExitReasonEptViolation = 48;

    private VcpuMode _mode = VcpuMode.Host;
    private long _since;
    private (long Time, VcpuMode Mode)? _pending;

    public VcpuMode Mode => _mode;

    /// <summary>Applies one event of this vCPU; events of other names are ignored.</summary>
    public void Apply(TraceRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        long t = r.TimeNs;
        switch (r.Name)
        {
            case "kvm_entry":
                Realize(t);
                Set(t, VcpuMode.Host);
                _pending = (t + r.Long("HostNs") + vmEntryNs, VcpuMode.Guest);
                break;
            case "kvm_exit":
                Realize(t);
                Set(t - vmExitNs, VcpuMode.Host);
                if (r.Int("ExitReason") is ExitReasonEptViolation or ExitReasonExceptionNmi)
                {
                    Set(t, VcpuMode.Stall);
                }
                break;
            case "kvm_page_fault_done":
            case "kvm_vcpu_wakeup":
                Realize(t);
                Set(t, VcpuMode.Host);
                break;
            case "kvm_vcpu_block":
                Realize(t);
                Set(t, VcpuMode.Halt);
                break;
        }
    }

    /// <summary>Reports the stretch the vCPU is in up to <paramref name="endNs"/> (the end of the trace or of the window).</summary>
    public void Flush(long endNs)
    {
        Realize(endNs);
        Set(endNs, _mode);
    }

    private void Realize(long now)
    {
        if (_pending is { } p && p.Time <= now)
        {
            _pending = null;
            Set(p.Time, p.Mode);
        }
    }

    private void Set(long t, VcpuMode mode)
    {
        if (t > _since)
        {
            segment(_mode, _since, t);
            _since = t;
        }
        _mode = mode;
    }
}
