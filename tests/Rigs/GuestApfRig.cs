using Hw;
using KvmApf.Guest;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>The shape of a <see cref="GuestApfRig"/>: the machine, with the series' host.</summary>
public sealed record GuestApfRigOptions : GuestMachineOptions
{
    /// <summary>CONFIG_KVM_ASYNC_PF of the host.</summary>
    public bool Apf { get; init; } = true;

    /// <summary>The ABI both kernels are built against.</summary>
    public ApfAbi Abi { get; init; } = ApfAbi.V3;

    /// <summary>CONFIG_PREEMPT of the guest (it then sets send-always).</summary>
    public bool GuestPreempt { get; init; }

    /// <summary>ASYNC_PF_PER_VCPU of the host.</summary>
    public int ApfPerVcpu { get; init; } = 64;
}

/// <summary>
/// A whole machine assembled as tools/vmm/Machine.cs assembles it (the series' host with async
/// PF, its VMM in a memory cgroup, a PV guest), but with the guest running the init program a
/// fixture gives instead of bm, since Machine always boots bm. Trace events carry
/// <see cref="TraceRunId"/>, drawn from a range of its own so that they never share a run id
/// with a Machine of the same process.
/// </summary>
public sealed class GuestApfRig
{
    /// <summary>Where the VMM maps guest RAM (as Machine does).</summary>
    public const ulong GuestRamHva = VmmBoot.GuestRamHva;

    private static long s_nextRunId = 1L << 40;

    private Func<GuestApfRig, TaskStruct, SimTask>? _init;

    public GuestApfRig(GuestApfRigOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        var rng = new Rng(options.Seed);
        Hardware = new MachineHardware(options.Vcpus, options.GuestMemBytes, options.Costs, rng);
        TraceRunId = Interlocked.Increment(ref s_nextRunId);
        Host = new Kernel(Kconfig.Host with { CONFIG_KVM_ASYNC_PF = options.Apf, Abi = options.Abi }, Loop, rng.Split("host"), options.Costs, Cpus,
            new HostView(this, Ram), Disk)
        {
            AsyncPfPerVcpu = options.ApfPerVcpu,
            TraceRunId = TraceRunId,
        };
        Hardware.BootHost(Host);
        Guest = new Kernel(Kconfig.Guest with { Abi = options.Abi, CONFIG_PREEMPT = options.GuestPreempt }, Loop, rng.Split("guest"), options.Costs, Cpus)
        {
            TraceRunId = TraceRunId,
        };
        Libc = new Libc(Guest);
        Cgroup = new MemCgroup("rig-vmm", options.MemLimitBytes);
        VmmMm = new MmStruct(new SoftPageTable(), 0) { MemCgroup = Cgroup };
    }

    public GuestApfRigOptions Options { get; }

    public MachineHardware Hardware { get; }

    public EventLoop Loop => Hardware.Loop;

    public PhysicalMemory Ram => Hardware.Ram;

    public SwapDisk Disk => Hardware.Disk;

    public X86Cpu[] Cpus => Hardware.Cpus;

    public SerialPort Console => Hardware.Console;

    /// <summary>The run id both kernels' tracepoints carry.</summary>
    public long TraceRunId { get; }

    public Kernel Host { get; }

    public Kernel Guest { get; }

    public Libc Libc { get; }

    public MemCgroup Cgroup { get; }

    public MmStruct VmmMm { get; }

    public Kvm Vm { get; private set; } = null!;

    public KvmVcpu[] Vcpus { get; private set; } = [];

    /// <summary>
    /// Raised at every store the host kernel makes into physical memory (hpa, size in bytes,
    /// value), at its virtual time. The vCPUs store through the hardware, not through the host's
    /// view, so these are exactly the host's writes into guest RAM.
    /// </summary>
    public event Action<ulong, int, ulong>? HostStored;

    /// <summary>True once the init program has returned.</summary>
    public bool Finished { get; private set; }

    /// <summary>Starts the VMM, which creates the VM and powers the guest on with <paramref name="init"/> as its first process.</summary>
    public void Start(Func<GuestApfRig, TaskStruct, SimTask> init)
    {
        ArgumentNullException.ThrowIfNull(init);
        _init = init;
        Host.DoFork("qemu", VmmMm, VmmMain);
    }

    /// <summary>Runs the machine until the init program returns; fails if it has not after <paramref name="budgetNs"/> of virtual time.</summary>
    public void RunUntilFinished(long budgetNs)
    {
        long deadline = Loop.Now + budgetNs;
        while (!Finished)
        {
            Assert.That(Loop.Now, Is.LessThan(deadline),
                () => $"the guest program did not finish within {budgetNs} ns; console: {string.Join(" | ", Console.Lines)}");
            bool more = Loop.Run(deadline);
            Assert.That(more || Finished, Is.True, "the machine went idle before the guest program finished");
        }
    }

    private SimTask VmmMain(TaskStruct self)
    {
        (Vm, Vcpus) = VmmBoot.Launch(Host, Guest, VmmMm, Cpus, (ulong)Options.GuestMemBytes, Options.Tdp, Console, InitMain);
        return SimTask.CompletedTask;
    }

    /// <summary>The host kernel's view of physical memory: the same frames, with its stores reported.</summary>
    private sealed class HostView(GuestApfRig rig, PhysicalMemory ram) : IPhysicalMemory
    {
        public int FramesWithContent => ram.FramesWithContent;

        public ulong ReadU64(ulong hpa) => ram.ReadU64(hpa);

        public uint ReadU32(ulong hpa) => ram.ReadU32(hpa);

        public void WriteU64(ulong hpa, ulong value)
        {
            ram.WriteU64(hpa, value);
            rig.HostStored?.Invoke(hpa, 8, value);
        }

        public void WriteU32(ulong hpa, uint value)
        {
            ram.WriteU32(hpa, value);
            rig.HostStored?.Invoke(hpa, 4, value);
        }

        public byte[]? TakeFrame(ulong pfn) => ram.TakeFrame(pfn);

        public void PutFrame(ulong pfn, byte[]? content) => ram.PutFrame(pfn, content);
    }

    private async SimTask InitMain(TaskStruct self)
    {
        await _init!(this, self);
        Finished = true;
        Loop.Stop();
    }
}
