using System.Collections;
using System.Collections.Concurrent;
using System.Reflection;
using Hw;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Conformance;

/// <summary>
/// A kernel instance never holds a reference to another one (DESIGN section 3): the guest reaches
/// the host only through the hardware. A booted machine's object graph is walked by reflection
/// from each kernel over every instance field, array and collection, stopping at objects of the
/// <c>Hw</c> namespace (the hardware is the legitimate boundary) and at delegates bound to them.
/// </summary>
/// <remarks>
/// Two machines: the baseline (async PF off), and one with async PF on whose cgroup is small
/// enough that the fault threads hit swapped pages, so that async faults, workers and sleeping
/// guest tasks are in flight when the graph is walked.
/// </remarks>
[TestFixture(false, 128, 64)]
[TestFixture(true, 96, 128)]
[Category("conformance")]
[Description("No field path leads from one kernel instance to another; the hardware is the only way across")]
public sealed class KernelIsolationTests(bool apf, int memLimitMiB, int arrayMiB)
{
    private Machine _machine = null!;

    [OneTimeSetUp]
    public void BootMachine()
    {
        _machine = new Machine(new BenchConfig
        {
            Vcpus = 2,
            GuestMemBytes = 256 * BenchConfig.MiB,
            MemLimitBytes = memLimitMiB * BenchConfig.MiB,
            ArrayBytes = arrayMiB * BenchConfig.MiB,
            DurationNs = 50_000_000,
            Apf = apf,
        });
        _machine.Start();
        // Walk in the middle of bm's measured interval, when faults, workers and sleepers are in flight.
        while (!_machine.Console.Lines.Contains("start") && _machine.Loop.Now < 10_000_000_000)
        {
            _machine.Loop.Run(_machine.Loop.Now + 10_000_000);
        }
        _machine.Loop.Run(_machine.Loop.Now + 25_000_000);
    }

    [Test]
    public void GuestKernel_FieldGraph_DoesNotReachHost()
    {
        var walk = FieldGraph.Walk(_machine.Guest, "guest", _machine.Host);
        TestContext.Out.WriteLine($"walked {walk.Count} objects from the guest kernel; {_machine.Guest.Tasks.Count} tasks at {_machine.Loop.Now} ns");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(walk.PathsToTarget, Is.Empty, () => "the guest kernel reaches the host kernel through:\n" + string.Join('\n', walk.PathsToTarget));
            Assert.That(_machine.Guest.Tasks, Is.Not.Empty, "the guest booted no task: the walk proves little");
            Assert.That(_machine.Guest.Tasks.All(walk.Visited), Is.True, "the walk missed guest tasks (List<> not walked?)");
            Assert.That(_machine.Guest.Runqueues.All(rq => walk.Visited(rq.Idle) && walk.Visited(rq.Cfs)), Is.True, "the walk missed the run queues (arrays not walked?)");
        }
    }

    [Test]
    public void HostKernel_FieldGraph_DoesNotReachGuest()
    {
        var walk = FieldGraph.Walk(_machine.Host, "host", _machine.Guest);
        TestContext.Out.WriteLine($"walked {walk.Count} objects from the host kernel; {_machine.Host.NrUsedPages} host pages in use, "
            + $"{_machine.Host.ApfCounters.NotPresent} async PFs injected at {_machine.Loop.Now} ns");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(walk.PathsToTarget, Is.Empty, () => "the host kernel reaches the guest kernel through:\n" + string.Join('\n', walk.PathsToTarget));
            Assert.That(_machine.Vm, Is.Not.Null, "the VMM created no VM: the walk proves little");
            Assert.That(walk.Visited(_machine.Vm!) && walk.Visited(_machine.Cgroup) && walk.Visited(_machine.VmmMm), Is.True,
                "the walk missed the VM, the VMM's mm or its cgroup");
            Assert.That(_machine.Vcpus.Where(v => v is not null).All(walk.Visited), Is.True, "the walk missed vCPUs");
            Assert.That(_machine.Host.ApfCounters.NotPresent, apf ? Is.Positive : Is.Zero,
                "async faults in flight: the walk covers their work items, workers and sleepers only if some happened");
        }
    }

    [Test]
    public void FieldGraph_KernelBehindListDictionaryAndDelegate_IsFoundWithItsPath()
    {
        var (guest, host) = TwoKernels();
        var task = guest.AllocTask("leak", null);
        task.UserData = new List<object> { new Dictionary<int, Func<string>> { [7] = host.ToString } };

        var walk = FieldGraph.Walk(guest, "guest", host);

        Assert.That(walk.PathsToTarget, Has.Some.Contains("UserData[0][7]"));
    }

    [Test]
    public void FieldGraph_KernelBehindClosure_IsFound()
    {
        var (guest, host) = TwoKernels();
        var task = guest.AllocTask("leak", null);
        Func<string> closure = () => host.Name;
        task.UserData = new[] { closure };

        var walk = FieldGraph.Walk(guest, "guest", host);

        Assert.That(walk.PathsToTarget, Has.Some.Contains("UserData[0]"));
    }

    [Test]
    public void FieldGraph_KernelBehindHardware_IsNotFollowed()
    {
        var (guest, host) = TwoKernels();
        var task = guest.AllocTask("through-hw", null);
        var port = new SerialPort { LineWritten = line => host.ToString() };
        task.UserData = new object[] { new SimTimer(() => host.ToString()), new Func<string?>(port.ToString) };

        var walk = FieldGraph.Walk(guest, "guest", host);

        Assert.That(walk.PathsToTarget, Is.Empty);
    }

    private static (Kernel Guest, Kernel Host) TwoKernels()
    {
        var loop = new EventLoop();
        var costs = new CostModel();
        var ram = new PhysicalMemory();
        var rng = new Rng(1);
        X86Cpu[] cpus = [new X86Cpu(0, loop, ram, costs)];
        return (new Kernel(Kconfig.Guest, loop, rng.Split("guest"), costs, cpus),
            new Kernel(Kconfig.Host, loop, rng.Split("host"), costs, cpus, ram));
    }

    /// <summary>A breadth-first walk of the object graph by reflection; the first paths found are the shortest.</summary>
    internal sealed class FieldGraph
    {
        private const int MaxPaths = 10;

        private static readonly ConcurrentDictionary<Type, FieldInfo[]> s_fields = new();
        private static readonly ConcurrentDictionary<Type, bool> s_holdsReferences = new();

        private readonly HashSet<object> _visited = new(ReferenceEqualityComparer.Instance);
        private readonly List<(int Parent, string Label)> _nodes = [];
        private readonly Queue<(object Value, int Node)> _queue = new();
        private readonly object _target;

        private FieldGraph(object target) => _target = target;

        /// <summary>Field paths from the root to the target, at most ten.</summary>
        public List<string> PathsToTarget { get; } = [];

        /// <summary>Objects the walk reached (and expanded).</summary>
        public int Count => _visited.Count;

        public bool Visited(object o) => _visited.Contains(o);

        public static FieldGraph Walk(object root, string rootName, object target)
        {
            var graph = new FieldGraph(target);
            graph.Reach(root, -1, rootName);
            while (graph._queue.TryDequeue(out var item) && graph.PathsToTarget.Count < MaxPaths)
            {
                graph.Expand(item.Value, item.Node);
            }
            return graph;
        }

        private void Reach(object? value, int parent, string label)
        {
            if (value is null || IsLeaf(value.GetType()))
            {
                return;
            }
            if (ReferenceEquals(value, _target))
            {
                PathsToTarget.Add(PathOf(parent) + label);
                return;
            }
            var type = value.GetType();
            if (IsHardware(type))
            {
                return; // the boundary: what the hardware holds is not the kernel's
            }
            if (!type.IsValueType && !_visited.Add(value))
            {
                return;
            }
            _nodes.Add((parent, label));
            _queue.Enqueue((value, _nodes.Count - 1));
        }

        private void Expand(object value, int node)
        {
            switch (value)
            {
                case Delegate d:
                    foreach (var single in d.GetInvocationList())
                    {
                        if (single.Target is { } target && !IsHardware(target.GetType()))
                        {
                            Reach(target, node, $"=>{single.Method.Name}");
                        }
                    }
                    return;
                case Array array:
                    if (HoldsReferences(array.GetType().GetElementType()!))
                    {
                        int i = 0;
                        foreach (object? element in array)
                        {
                            Reach(element, node, $"[{i++}]");
                        }
                    }
                    return;
                case IDictionary dictionary when IsCollectionOfReferences(value.GetType()):
                    var e = dictionary.GetEnumerator();
                    while (e.MoveNext())
                    {
                        string key = KeyLabel(e.Key);
                        Reach(e.Key, node, $".Keys[{key}]");
                        Reach(e.Value, node, $"[{key}]");
                    }
                    break; // and its fields below (comparer)
                case IEnumerable sequence when IsCollectionOfReferences(value.GetType()):
                    int index = 0;
                    foreach (object? element in sequence)
                    {
                        Reach(element, node, $"[{index++}]");
                    }
                    break;
            }
            foreach (var field in FieldsOf(value.GetType()))
            {
                Reach(field.GetValue(value), node, "." + FieldLabel(field));
            }
        }

        private string PathOf(int node)
        {
            var labels = new List<string>();
            for (int n = node; n >= 0; n = _nodes[n].Parent)
            {
                labels.Add(_nodes[n].Label);
            }
            labels.Reverse();
            return string.Concat(labels);
        }

        private static bool IsHardware(Type type) => type.Namespace is "Hw" || (type.Namespace?.StartsWith("Hw.", StringComparison.Ordinal) ?? false);

        /// <summary>A BCL collection whose elements may be objects (a Dictionary&lt;ulong, ulong&gt; is not enumerated: nothing to find, much to box).</summary>
        private static bool IsCollectionOfReferences(Type type) =>
            (type.Namespace?.StartsWith("System.Collections", StringComparison.Ordinal) ?? false)
            && (!type.IsGenericType || type.GetGenericArguments().Any(HoldsReferences));

        /// <summary>Objects that cannot lead anywhere, or whose graph is the runtime's (reflection).</summary>
        private static bool IsLeaf(Type type) =>
            type.IsPrimitive || type.IsEnum || type.IsPointer || type == typeof(string) || type == typeof(decimal)
            || typeof(MemberInfo).IsAssignableFrom(type) || typeof(Assembly).IsAssignableFrom(type) || typeof(Module).IsAssignableFrom(type)
            || (type.IsValueType && !HoldsReferences(type));

        private static string KeyLabel(object key) => key is string or ValueType ? Convert.ToString(key, System.Globalization.CultureInfo.InvariantCulture) ?? "?" : key.GetType().Name;

        /// <summary>A field's name with the compiler's backing-field decoration removed.</summary>
        private static string FieldLabel(FieldInfo field)
        {
            string name = field.Name;
            return name.StartsWith('<') && name.IndexOf(">k__BackingField", StringComparison.Ordinal) is > 0 and var end ? name[1..end] : name;
        }

        /// <summary>Instance fields of the type and its bases that can hold a reference.</summary>
        private static FieldInfo[] FieldsOf(Type type)
        {
            if (!s_fields.TryGetValue(type, out var fields))
            {
                var list = new List<FieldInfo>();
                for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
                {
                    list.AddRange(t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
                        .Where(f => HoldsReferences(f.FieldType)));
                }
                fields = [.. list];
                s_fields[type] = fields;
            }
            return fields;
        }

        /// <summary>False for types whose values cannot contain an object reference (primitives, enums, unmanaged structs).</summary>
        private static bool HoldsReferences(Type type)
        {
            if (!type.IsValueType)
            {
                return type != typeof(string);
            }
            if (type.IsPrimitive || type.IsEnum || type.IsPointer)
            {
                return false;
            }
            if (s_holdsReferences.TryGetValue(type, out bool holds))
            {
                return holds;
            }
            s_holdsReferences[type] = false; // a struct cannot contain itself; this only breaks recursion through generics
            holds = type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).Any(f => HoldsReferences(f.FieldType));
            s_holdsReferences[type] = holds;
            return holds;
        }
    }
}
