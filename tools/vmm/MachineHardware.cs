using Hw;
using Linux;

namespace KvmApf.Vmm;

/// <summary>
/// The hardware of one machine: the event loop everything runs on, physical memory, a swap disk
/// with room for all of guest RAM, one CPU per vCPU and a serial console. Shared by
/// <see cref="Machine"/> and the test rigs, so that they all run on the same machine.
/// </summary>
public sealed class MachineHardware
{
    /// <param name="cpus">How many CPUs (one per vCPU).</param>
    /// <param name="guestMemBytes">Guest RAM, which the swap disk must be able to hold.</param>
    /// <param name="costs">The cost model of the CPUs and the disk.</param>
    /// <param name="rng">The machine's generator; the disk draws from its "swap-disk" split.</param>
    public MachineHardware(int cpus, long guestMemBytes, CostModel costs, Rng rng)
    {
        ArgumentNullException.ThrowIfNull(costs);
        ArgumentNullException.ThrowIfNull(rng);
        Loop = new EventLoop();
        Ram = new PhysicalMemory();
        SwapBlocks = Math.Max(costs.Disk.Blocks, (guestMemBytes / 4096) + 1024);
        Disk = new SwapDisk(Loop, rng.Split("swap-disk"), costs.Disk with { Blocks = SwapBlocks });
        Cpus = new X86Cpu[cpus];
        for (int i = 0; i < cpus; i++)
        {
            Cpus[i] = new X86Cpu(i, Loop, Ram, costs);
        }
        Console = new SerialPort();
    }

    public EventLoop Loop { get; }

    public PhysicalMemory Ram { get; }

    /// <summary>Size of the swap disk in 4 KiB blocks: all of guest RAM and 4 MiB more, or the geometry's own size if larger.</summary>
    public long SwapBlocks { get; }

    public SwapDisk Disk { get; }

    public X86Cpu[] Cpus { get; }

    public SerialPort Console { get; }

    /// <summary>
    /// Brings <paramref name="host"/> up on this machine: every frame of RAM but the first, swap on
    /// the whole disk, and, in a host built with CONFIG_KVM_ASYNC_PF, the async PF module.
    /// </summary>
    public void BootHost(Kernel host)
    {
        ArgumentNullException.ThrowIfNull(host);
        host.MemInit(1, ulong.MaxValue);
        host.SysSwapon(SwapBlocks);
        if (host.Config.CONFIG_KVM_ASYNC_PF && host.KvmAsyncPfInit() != 0)
        {
            throw new InvalidOperationException("kvm_async_pf_init failed");
        }
    }
}
