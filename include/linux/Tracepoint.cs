using System.Diagnostics.Tracing;

namespace Linux;

// include/linux/tracepoint.h: what every tracepoint of the port shares. A TRACE_EVENT becomes
// an [Event] method of an EventSource (include/trace/events/*.cs); EventSources are process-wide,
// so each event says whose it is: it starts with the run, the VM (-1: none), the vCPU (-1: none)
// and the virtual time, and ends with the kernel instance ("host" or "guest"), after the
// TRACE_EVENT's own fields (so the fields a fixture reads by position keep their places).
// Tracing never changes the simulation: an event reads its arguments and nothing else.
public sealed partial class Kernel
{
    /// <summary>
    /// The VM this kernel instance runs in, as its host numbers it (<c>kvm->id</c>), or -1 for a
    /// host; only tracepoints read it. The VMM sets it once it has created the VM, as it sets
    /// <see cref="TraceRunId"/>: a guest has no way to know it.
    /// </summary>
    public int TraceVmId { get; set; } = -1;
}

/// <summary>
/// The base of the port's tracepoint sources: writers for the payload shapes the events use,
/// built on <see cref="EventSource.WriteEventCore"/> with <see cref="EventSource.EventData"/> on the
/// stack (no <c>object[]</c>, no boxing). Every payload is (RunId, VmId, VcpuId, TimeNs, the
/// event's fields..., Kernel); a <c>bool</c> field travels as a 4-byte int, as EventSource encodes
/// it. Callers check <see cref="EventSource.IsEnabled(EventLevel, EventKeywords)"/> first.
/// </summary>
public abstract class TracepointSource : EventSource
{
    /// <summary>Fields before an event's own: RunId, VmId, VcpuId, TimeNs.</summary>
    public const int HeaderFields = 4;

    /// <summary>
    /// A source named <paramref name="name"/>, with the manifest events of its <c>[Event]</c> methods.
    /// </summary>
    /// <remarks>
    /// The name is passed rather than read from the subclass's <c>[EventSource(Name = ...)]</c>
    /// (which stays, for tools that read it): reading it costs the process its first reflection
    /// over custom attributes, 4 ms of a fresh run's clock. The GUID is the one EventSource
    /// derives from the name either way.
    /// </remarks>
    protected TracepointSource(string name)
        : base(name, EventSourceSettings.EtwManifestEventFormat)
    {
    }

    [NonEvent]
    private static unsafe void Header(EventData* d, long* runId, int* vmId, int* vcpuId, long* timeNs)
    {
        d[0] = new EventData { DataPointer = (IntPtr)runId, Size = sizeof(long) };
        d[1] = new EventData { DataPointer = (IntPtr)vmId, Size = sizeof(int) };
        d[2] = new EventData { DataPointer = (IntPtr)vcpuId, Size = sizeof(int) };
        d[3] = new EventData { DataPointer = (IntPtr)timeNs, Size = sizeof(long) };
    }

    [NonEvent]
    private static unsafe EventData Field<T>(T* p)
        where T : unmanaged => new() { DataPointer = (IntPtr)p, Size = sizeof(T) };

    [NonEvent]
    private static unsafe EventData Field(char* p, string s) => new() { DataPointer = (IntPtr)p, Size = (s.Length + 1) * sizeof(char) };

    /// <summary>
    /// Every writer's last step: the kernel into the last of the <paramref name="count"/> slots of
    /// <paramref name="d"/> (header and the event's own fields already filled), then the event.
    /// </summary>
    [NonEvent]
    private unsafe void WriteWithKernel(int eventId, EventData* d, int count, string kernel)
    {
        kernel ??= "";
        fixed (char* k = kernel)
        {
            d[count - 1] = Field(k, kernel);
            WriteEventCore(eventId, count, d);
        }
    }

    /// <summary>The header and the kernel alone.</summary>
    [NonEvent]
    protected unsafe void WriteHeader(int eventId, long runId, int vmId, int vcpuId, long timeNs, string kernel)
    {
        EventData* d = stackalloc EventData[HeaderFields + 1];
        Header(d, &runId, &vmId, &vcpuId, &timeNs);
        WriteWithKernel(eventId, d, HeaderFields + 1, kernel);
    }

    /// <summary>Header, one field (a long or an int), kernel.</summary>
    [NonEvent]
    protected unsafe void Write<TA>(int eventId, long runId, int vmId, int vcpuId, long timeNs, TA a, string kernel)
        where TA : unmanaged
    {
        EventData* d = stackalloc EventData[HeaderFields + 2];
        Header(d, &runId, &vmId, &vcpuId, &timeNs);
        d[4] = Field(&a);
        WriteWithKernel(eventId, d, HeaderFields + 2, kernel);
    }

    /// <summary>Header, two fields (longs or ints; a bool goes as an int 0 or 1), kernel.</summary>
    [NonEvent]
    protected unsafe void Write<TA, TB>(int eventId, long runId, int vmId, int vcpuId, long timeNs, TA a, TB b, string kernel)
        where TA : unmanaged
        where TB : unmanaged
    {
        EventData* d = stackalloc EventData[HeaderFields + 3];
        Header(d, &runId, &vmId, &vcpuId, &timeNs);
        d[4] = Field(&a);
        d[5] = Field(&b);
        WriteWithKernel(eventId, d, HeaderFields + 3, kernel);
    }

    /// <summary>Header, a long or an int, a string, kernel.</summary>
    [NonEvent]
    protected unsafe void Write<TA>(int eventId, long runId, int vmId, int vcpuId, long timeNs, TA a, string b, string kernel)
        where TA : unmanaged
    {
        b ??= "";
        fixed (char* pb = b)
        {
            EventData* d = stackalloc EventData[HeaderFields + 3];
            Header(d, &runId, &vmId, &vcpuId, &timeNs);
            d[4] = Field(&a);
            d[5] = Field(pb, b);
            WriteWithKernel(eventId, d, HeaderFields + 3, kernel);
        }
    }

    /// <summary>Header, int, string, int, kernel.</summary>
    [NonEvent]
    protected unsafe void WriteISI(int eventId, long runId, int vmId, int vcpuId, long timeNs, int a, string b, int c, string kernel)
    {
        b ??= "";
        fixed (char* pb = b)
        {
            EventData* d = stackalloc EventData[HeaderFields + 4];
            Header(d, &runId, &vmId, &vcpuId, &timeNs);
            d[4] = Field(&a);
            d[5] = Field(pb, b);
            d[6] = Field(&c);
            WriteWithKernel(eventId, d, HeaderFields + 4, kernel);
        }
    }

    /// <summary>Header, int, string, long, int, kernel.</summary>
    [NonEvent]
    protected unsafe void WriteISLI(int eventId, long runId, int vmId, int vcpuId, long timeNs, int a, string b, long c, int e, string kernel)
    {
        b ??= "";
        fixed (char* pb = b)
        {
            EventData* d = stackalloc EventData[HeaderFields + 5];
            Header(d, &runId, &vmId, &vcpuId, &timeNs);
            d[4] = Field(&a);
            d[5] = Field(pb, b);
            d[6] = Field(&c);
            d[7] = Field(&e);
            WriteWithKernel(eventId, d, HeaderFields + 5, kernel);
        }
    }

    /// <summary>Header, int, string, int, int, string, kernel.</summary>
    [NonEvent]
    protected unsafe void WriteISIIS(int eventId, long runId, int vmId, int vcpuId, long timeNs, int a, string b, int c, int e, string f, string kernel)
    {
        b ??= "";
        f ??= "";
        fixed (char* pb = b, pf = f)
        {
            EventData* d = stackalloc EventData[HeaderFields + 6];
            Header(d, &runId, &vmId, &vcpuId, &timeNs);
            d[4] = Field(&a);
            d[5] = Field(pb, b);
            d[6] = Field(&c);
            d[7] = Field(&e);
            d[8] = Field(pf, f);
            WriteWithKernel(eventId, d, HeaderFields + 6, kernel);
        }
    }

    /// <summary>Header, string, int, long, long, long, kernel.</summary>
    [NonEvent]
    protected unsafe void WriteSILLL(int eventId, long runId, int vmId, int vcpuId, long timeNs, string a, int b, long c, long e, long f, string kernel)
    {
        a ??= "";
        fixed (char* pa = a)
        {
            EventData* d = stackalloc EventData[HeaderFields + 6];
            Header(d, &runId, &vmId, &vcpuId, &timeNs);
            d[4] = Field(pa, a);
            d[5] = Field(&b);
            d[6] = Field(&c);
            d[7] = Field(&e);
            d[8] = Field(&f);
            WriteWithKernel(eventId, d, HeaderFields + 6, kernel);
        }
    }
}
