using Hw;

namespace Linux;

/// <summary>
/// The kernel image. Every ported C file is a part of this class: its functions are methods,
/// its global and static variables are fields declared in the file that defines them in C.
/// Host and guest are two instances with their own <see cref="Kconfig"/>; an instance never
/// holds a reference to another one, and reaches the other side only through the hardware.
/// </summary>
public sealed partial class Kernel
{
    /// <summary>Builds a kernel instance on the hardware it is given.</summary>
    /// <param name="config">The instance's Kconfig.</param>
    /// <param name="loop">The machine's clock and event loop.</param>
    /// <param name="rng">This kernel's stream of the run's generator.</param>
    /// <param name="costs">The machine's cost model.</param>
    /// <param name="cpus">The CPUs this kernel runs on: the host's VMX CPUs, or the guest's vCPUs.</param>
    /// <param name="ram">Physical memory, for the host; null for a guest, which reaches its memory through its CPUs.</param>
    /// <param name="swapDevice">The swap device, if the kernel has one.</param>
    public Kernel(Kconfig config, EventLoop loop, Rng rng, CostModel costs, IReadOnlyList<X86Cpu> cpus,
        IPhysicalMemory? ram = null, IBlockDevice? swapDevice = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(cpus);
        Config = config;
        Loop = loop;
        Rng = rng;
        Costs = costs;
        HwCpus = cpus;
        Ram = ram;
        SwapDevice = swapDevice;
        SchedInit();
    }

    public Kconfig Config { get; }

    public EventLoop Loop { get; }

    /// <summary>This kernel's random stream (the run's generator split by the kernel's name).</summary>
    public Rng Rng { get; }

    public CostModel Costs { get; }

    /// <summary>The CPUs the kernel runs on.</summary>
    public IReadOnlyList<X86Cpu> HwCpus { get; }

    internal IPhysicalMemory? Ram { get; }

    internal IBlockDevice? SwapDevice { get; }

    /// <summary>"host" or "guest": the instance's name in traces and errors.</summary>
    public string Name => Config.Name;

    /// <summary>ktime_get(): the hardware clock, ns. Guest time too comes from it (kvmclock), so a stalled vCPU's time is charged to its task.</summary>
    public long Now => Loop.Now;

    public override string ToString() => $"{Name} kernel";
}

/// <summary>The Kconfig of one kernel instance.</summary>
public sealed record Kconfig
{
    /// <summary>"host" or "guest".</summary>
    public string Name { get; init; } = "host";

    /// <summary>KVM host support.</summary>
    public bool CONFIG_KVM { get; init; }

    /// <summary>KVM paravirtual guest support.</summary>
    public bool CONFIG_KVM_GUEST { get; init; }

    /// <summary>Preemptible kernel (the guest sets send-always only with it, patch 11).</summary>
    public bool CONFIG_PREEMPT { get; init; }

    /// <summary>Async page faults (virt/kvm/Kconfig, selected by arch/x86/kvm/Kconfig; patch 8).</summary>
    public bool CONFIG_KVM_ASYNC_PF { get; init; }

    /// <summary>The async PF ABI the kernel is built against (patch 2): v3 by default, or the merged values.</summary>
    public ApfAbi Abi { get; init; } = ApfAbi.V3;

    /// <summary>Memory cgroups (the host's VMM runs in one).</summary>
    public bool CONFIG_CGROUP_MEM_RES_CTLR { get; init; }

    /// <summary>Timer interrupts per second. 1000: the CONFIG_HZ_1000 of 2010 distribution kernels (Fedora 12, RHEL 6).</summary>
    public int HZ { get; init; } = 1000;

    /// <summary>
    /// Unlike Linux, the host's scheduler is not modelled: the host has a physical CPU for every
    /// vCPU thread and worker (DESIGN section 2), so a host task that wakes runs at once.
    /// </summary>
    public bool DedicatedCpuPerTask { get; init; }

    /// <summary>The host configuration.</summary>
    public static Kconfig Host => new() { Name = "host", CONFIG_KVM = true, CONFIG_CGROUP_MEM_RES_CTLR = true, DedicatedCpuPerTask = true };

    /// <summary>The guest configuration.</summary>
    public static Kconfig Guest => new() { Name = "guest", CONFIG_KVM_GUEST = true };
}
