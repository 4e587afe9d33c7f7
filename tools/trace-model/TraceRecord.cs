using System.Diagnostics.Tracing;
using System.Globalization;

namespace KvmApf.Tracing;

/// <summary>
/// The EventSources a run writes to (include/trace/events/*.cs and the VMM's), as the tools that read
/// a trace name them: the same strings as the sources' <c>ProviderName</c> constants, which a test checks.
/// </summary>
public static class TraceProviders
{
    /// <summary>include/trace/events/kvm.h: the host's KVM, MMU, exit and swap-in tracepoints.</summary>
    public const string Kvm = "Linux-KVM";

    /// <summary>The guest's async PF tracepoints.</summary>
    public const string KvmGuest = "Linux-KVM-Guest";

    /// <summary>include/trace/events/sched.h: context switches and wakeups (the guest's run queues).</summary>
    public const string Sched = "Linux-Sched";

    /// <summary>The VMM: the run and its measured interval.</summary>
    public const string Vmm = "KvmApf-Vmm";

    public static IReadOnlyList<string> All { get; } = [Kvm, KvmGuest, Sched, Vmm];

    /// <summary>True for an event of one of <see cref="All"/>.</summary>
    public static bool IsOurs(string? provider) => provider is Kvm or KvmGuest or Sched or Vmm;

    /// <summary>The <c>--providers</c> argument of <c>dotnet-trace collect</c>: every keyword, level Verbose (5).</summary>
    public static string DotnetTraceArgument => string.Join(",", All.Select(p => p + ":0xFFFFFFFFFFFFFFFF:5"));
}

/// <summary>
/// One event of a run's trace, however it was read (an in-process <see cref="EventListener"/>, or
/// TraceEvent on a <c>.nettrace</c>). Every event of <see cref="TraceProviders.All"/> has the same
/// header, read here by name: RunId, VmId (-1: none), VcpuId (-1: none), TimeNs, and Kernel
/// ("host" or "guest") last.
/// </summary>
public abstract class TraceRecord
{
    public abstract string Provider { get; }

    /// <summary>The event's name: the TRACE_EVENT's (kvm_exit, sched_switch, ...).</summary>
    public abstract string Name { get; }

    /// <summary>A payload field by name, or null if the event has none of that name.</summary>
    public abstract object? Field(string name);

    public long RunId => Long("RunId");

    public int VmId => Int("VmId");

    public int VcpuId => Int("VcpuId");

    public long TimeNs => Long("TimeNs");

    public string Kernel => Text("Kernel");

    public long Long(string name) => Field(name) switch
    {
        null => 0,
        bool b => b ? 1 : 0,
        var v => Convert.ToInt64(v, CultureInfo.InvariantCulture),
    };

    public int Int(string name) => (int)Long(name);

    public bool Flag(string name) => Long(name) != 0;

    public string Text(string name) => Field(name) as string ?? "";
}

/// <summary>A <see cref="TraceRecord"/> over an in-process listener's event (payload by position, looked up by name).</summary>
public sealed class ListenerRecord(EventWrittenEventArgs e) : TraceRecord
{
    public override string Provider => e.EventSource.Name;

    public override string Name => e.EventName ?? "";

    public override object? Field(string name)
    {
        int i = e.PayloadNames?.IndexOf(name) ?? -1;
        return i >= 0 && e.Payload is { } p && i < p.Count ? p[i] : null;
    }
}
