using System.Diagnostics.Tracing;
using System.Globalization;
using Linux;

namespace KvmApf.Vmm;

/// <summary>
/// The VMM's trace events (QEMU has trace events of its own too): what a run is, and the
/// measured interval of bm, so that a tool reading only the trace (tools/kvm-stat) can apply the
/// window the run's figures cover. The payload follows the kernel tracepoints' rules
/// (<see cref="TracepointSource"/>): RunId, VmId, VcpuId (-1), TimeNs, fields, Kernel ("host":
/// the VMM is a host process).
/// </summary>
[EventSource(Name = ProviderName)]
public sealed class VmmTrace : TracepointSource
{
    public const string ProviderName = "KvmApf-Vmm";

    private const string HostKernel = "host";

    public static readonly VmmTrace Log = new();

    private VmmTrace()
        : base(ProviderName)
    {
    }

    /// <summary>One keyword per area.</summary>
    public static class Keywords
    {
        /// <summary>The run and its measured interval.</summary>
        public const EventKeywords Run = (EventKeywords)0x1;
    }

    /// <summary>
    /// A machine was built for a run: Config describes it (the run's options), Vcpus and DurationNs
    /// are bm's, VmEntryNs and VmExitNs the hardware's transition costs (the vCPU time model of
    /// Documentation/tracing.md needs them).
    /// </summary>
    [Event(1, Level = EventLevel.Informational, Keywords = Keywords.Run, Message = "run {0}: {4}")]
    public void vmm_run(long RunId, int VmId, int VcpuId, long TimeNs, string Config, int Vcpus, long DurationNs, long VmEntryNs, long VmExitNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.Run))
        {
            WriteSILLL(1, RunId, VmId, VcpuId, TimeNs, Config, Vcpus, DurationNs, VmEntryNs, VmExitNs, Kernel);
        }
    }

    /// <summary>bm printed "start": the measured interval of DurationNs begins; the run's figures count from here.</summary>
    [Event(2, Level = EventLevel.Informational, Keywords = Keywords.Run, Message = "measured interval of {4} ns begins")]
    public void vmm_measure_begin(long RunId, int VmId, int VcpuId, long TimeNs, long DurationNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.Run))
        {
            Write(2, RunId, VmId, VcpuId, TimeNs, DurationNs, Kernel);
        }
    }

    /// <summary>The measured interval is over: the run's figures are those between the begin event and this one.</summary>
    [Event(3, Level = EventLevel.Informational, Keywords = Keywords.Run, Message = "measured interval ends")]
    public void vmm_measure_end(long RunId, int VmId, int VcpuId, long TimeNs, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.Run))
        {
            WriteHeader(3, RunId, VmId, VcpuId, TimeNs, Kernel);
        }
    }

    /// <summary>bm printed its total: the run is over.</summary>
    [Event(4, Level = EventLevel.Informational, Keywords = Keywords.Run, Message = "bm total {4}")]
    public void vmm_run_done(long RunId, int VmId, int VcpuId, long TimeNs, long Total, string Kernel)
    {
        if (IsEnabled(EventLevel.Informational, Keywords.Run))
        {
            Write(4, RunId, VmId, VcpuId, TimeNs, Total, Kernel);
        }
    }

    /// <summary><see cref="vmm_run"/> for a machine; the description is built only when the event is on.</summary>
    [NonEvent]
    public void Run(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (IsEnabled(EventLevel.Informational, Keywords.Run))
        {
            var c = m.Config;
            string config = string.Create(CultureInfo.InvariantCulture,
                $"vcpus={c.Vcpus} guest_mem={c.GuestMemBytes} mem_limit={c.MemLimitBytes} fault_threads={c.FaultThreads} "
                + $"work_threads={c.WorkThreads} array={c.ArrayBytes} duration_ns={c.DurationNs} seed={c.Seed} "
                + $"paging={(c.Paging == PagingMode.Shadow ? "shadow" : "tdp")} apf={(c.Apf ? "on" : "off")} abi={c.Abi} "
                + $"apf_per_vcpu={c.ApfPerVcpu} guest_preempt={(c.GuestPreempt ? "on" : "off")}");
            vmm_run(m.Host.TraceRunId, m.Vm?.Id ?? -1, -1, m.Loop.Now, config, c.Vcpus, c.DurationNs, c.Costs.VmEntryNs, c.Costs.VmExitNs, HostKernel);
        }
    }

    /// <summary><see cref="vmm_measure_begin"/> for a machine.</summary>
    [NonEvent]
    public void MeasureBegin(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        vmm_measure_begin(m.Host.TraceRunId, m.Vm?.Id ?? -1, -1, m.Loop.Now, m.Config.DurationNs, HostKernel);
    }

    /// <summary><see cref="vmm_measure_end"/> for a machine.</summary>
    [NonEvent]
    public void MeasureEnd(Machine m)
    {
        ArgumentNullException.ThrowIfNull(m);
        vmm_measure_end(m.Host.TraceRunId, m.Vm?.Id ?? -1, -1, m.Loop.Now, HostKernel);
    }

    /// <summary><see cref="vmm_run_done"/> for a machine.</summary>
    [NonEvent]
    public void RunDone(Machine m, long total)
    {
        ArgumentNullException.ThrowIfNull(m);
        vmm_run_done(m.Host.TraceRunId, m.Vm?.Id ?? -1, -1, m.Loop.Now, total, HostKernel);
    }
}
