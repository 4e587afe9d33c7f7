using Hw;
using KvmApf.Guest;
using Linux;

namespace KvmApf.Vmm;

/// <summary>
/// One simulated machine running the slides' benchmark: the hardware, a host kernel with KVM
/// whose VMM process (this class, in QEMU's role) lives in a memory cgroup, and a guest kernel
/// running bm. Everything runs on the machine's one event loop.
/// </summary>
public sealed class Machine
{
    /// <summary>The VMM's own resident memory besides guest RAM (code, heap, device state): 16 MiB.</summary>
    public const ulong VmmOverheadBytes = 16 * (ulong)BenchConfig.MiB;

    private const ulong VmmHeapHva = 0x5555_0000_0000UL;

    public Machine(BenchConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        var rng = new Rng(config.Seed);
        Hardware = new MachineHardware(config.Vcpus, config.GuestMemBytes, config.Costs, rng);
        var abi = config.Abi == "merged" ? ApfAbi.Merged : ApfAbi.V3;
        Host = new Kernel(Kconfig.Host with { CONFIG_KVM_ASYNC_PF = config.Apf, Abi = abi }, Loop, rng.Split("host"), config.Costs, Cpus, Ram, Disk)
        {
            AsyncPfPerVcpu = config.ApfPerVcpu,
            AsyncPfHaltVariant = config.ApfHalt,
            TraceRunId = RunIds.Next(),
        };
        Hardware.BootHost(Host);
        Guest = new Kernel(Kconfig.Guest with { Abi = abi, CONFIG_PREEMPT = config.GuestPreempt, CONFIG_KVM_GUEST = config.GuestPv }, Loop, rng.Split("guest"), config.Costs, Cpus)
        {
            TraceRunId = Host.TraceRunId,
        };
        Bm = new Bm(new Libc(Guest), new BmOptions(config.FaultThreads, config.WorkThreads, (ulong)config.ArrayBytes, config.DurationNs), config.Costs);
        Cgroup = new MemCgroup("kvm-apf-vmm", config.MemLimitBytes);
        VmmMm = new MmStruct(new SoftPageTable(), 0) { MemCgroup = Cgroup };
    }

    public BenchConfig Config { get; }

    public MachineHardware Hardware { get; }

    public EventLoop Loop => Hardware.Loop;

    public PhysicalMemory Ram => Hardware.Ram;

    public SwapDisk Disk => Hardware.Disk;

    public X86Cpu[] Cpus => Hardware.Cpus;

    public SerialPort Console => Hardware.Console;

    public Kernel Host { get; }

    public Kernel Guest { get; }

    public Bm Bm { get; }

    public MemCgroup Cgroup { get; }

    /// <summary>The VMM process's address space.</summary>
    public MmStruct VmmMm { get; }

    public Kvm? Vm { get; private set; }

    public KvmVcpu[] Vcpus { get; private set; } = [];

    /// <summary>
    /// Starts the VMM: its own memory, guest RAM as an anonymous mapping, the VM and its memory
    /// slot, the guest powered on with bm as init, and one thread per vCPU calling KVM_RUN.
    /// </summary>
    public void Start()
    {
        Host.DoFork("qemu", VmmMm, VmmMain);
    }

    private async SimTask VmmMain(TaskStruct self)
    {
        // The VMM's own memory, charged to the cgroup like everything of the process.
        Kernel.DoMmapPgoff(VmmMm, VmmHeapHva, VmmOverheadBytes, write: true);
        for (ulong a = VmmHeapHva; a < VmmHeapHva + VmmOverheadBytes; a += Pgtable.PAGE_SIZE)
        {
            await Host.GetUserPages(self, VmmMm, a, write: true);
        }
        (Vm, Vcpus) = VmmBoot.Launch(Host, Guest, VmmMm, Cpus, (ulong)Config.GuestMemBytes, Config.Paging == PagingMode.Tdp, Console, Bm.Main);
    }

    /// <summary>
    /// Live migration as far as async PF is concerned (v3 cover letter): the destination has none of
    /// the source's outstanding work, and the VMM restores each vCPU's saved MSRs and queued events
    /// there (KVM_SET_MSRS, then KVM_SET_VCPU_EVENTS, as QEMU does). Restoring the async PF MSR
    /// queues a wake-all, so every guest task waiting for a page retries. A #PF the source had
    /// queued (an async PF event whose reason word, in guest RAM, migrates with it) is still
    /// injected, and first: a page-ready waits while an event needs (re)injection.
    /// </summary>
    public void Migrate()
    {
        foreach (var vcpu in Vcpus)
        {
            var saved = Host.MsrsToSave.Select(msr => (msr, Host.KvmGetMsrCommon(vcpu, msr, out ulong v) == 0 ? v : 0)).ToList();
            var events = Kernel.KvmVcpuIoctlX86GetVcpuEvents(vcpu);
            Host.KvmArchVcpuReset(vcpu);
            foreach (var (msr, value) in saved)
            {
                Host.KvmSetMsrCommon(vcpu, msr, value);
            }
            Kernel.KvmVcpuIoctlX86SetVcpuEvents(vcpu, events);
        }
    }

    /// <summary>Makes every vCPU thread return from KVM_RUN at its next exit.</summary>
    public void StopVcpus()
    {
        foreach (var vcpu in Vcpus)
        {
            vcpu.StopRequested = true;
        }
    }
}

/// <summary>Run ids for tracepoints: distinct per machine in a process (machines may be built on several threads). Not in the JSON.</summary>
internal static class RunIds
{
    private static long s_next;

    public static long Next() => Interlocked.Increment(ref s_next);
}
