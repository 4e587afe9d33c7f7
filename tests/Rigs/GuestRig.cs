using Hw;
using KvmApf.Guest;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>The shape of a <see cref="GuestRig"/>: the machine, with a baseline host.</summary>
public sealed record RigOptions : GuestMachineOptions
{
    /// <summary>Also sample the cgroup's usage every this many ns of virtual time (0: only at reclaim and disk events).</summary>
    public long UsageSampleNs { get; init; }
}

/// <summary>
/// A whole machine as tools/vmm/Machine.cs builds it (hardware, a host kernel whose VMM process
/// lives in a memory cgroup, a KVM VM with one memory slot over the VMM's anonymous memory, one
/// vCPU thread per vCPU in <c>__vcpu_run</c>), but with the guest kernel running a program the
/// fixture gives as init instead of bm. The swap device is wrapped in a
/// <see cref="RecordingBlockDevice"/> and a <see cref="RecordingMmuNotifier"/> sits after KVM's
/// notifier, so a fixture sees every swap request and every spte invalidation.
/// </summary>
public sealed class GuestRig
{
    /// <summary>Where the VMM maps guest RAM (as Machine does).</summary>
    public const ulong GuestRamHva = VmmBoot.GuestRamHva;

    private Func<GuestRig, TaskStruct, SimTask>? _init;
    private SimTimer? _sampler;

    public GuestRig(RigOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        var rng = new Rng(options.Seed);
        Hardware = new MachineHardware(options.Vcpus, options.GuestMemBytes, options.Costs, rng);
        Swap = new RecordingBlockDevice(Disk, Loop);
        // The baseline kernel: KVM without async page faults.
        Host = new Kernel(Kconfig.Host with { CONFIG_KVM_ASYNC_PF = false }, Loop, rng.Split("host"), options.Costs, Cpus, Ram, Swap);
        Hardware.BootHost(Host);
        Guest = new Kernel(Kconfig.Guest, Loop, rng.Split("guest"), options.Costs, Cpus);
        Libc = new Libc(Guest);
        Cgroup = new MemCgroup("rig-vmm", options.MemLimitBytes);
        VmmMm = new MmStruct(new SoftPageTable(), 0) { MemCgroup = Cgroup };
        Notifier = new RecordingMmuNotifier(this);
        Swap.Submitted += _ => SampleUsage();
        Swap.Completed += _ => SampleUsage();
        Notifier.Invalidated += _ => SampleUsage();
    }

    public RigOptions Options { get; }

    public MachineHardware Hardware { get; }

    public EventLoop Loop => Hardware.Loop;

    public PhysicalMemory Ram => Hardware.Ram;

    public SwapDisk Disk => Hardware.Disk;

    /// <summary>The host's swap device as the host sees it: the disk behind a recorder.</summary>
    public RecordingBlockDevice Swap { get; }

    public X86Cpu[] Cpus => Hardware.Cpus;

    public SerialPort Console => Hardware.Console;

    public Kernel Host { get; }

    public Kernel Guest { get; }

    public Libc Libc { get; }

    public MemCgroup Cgroup { get; }

    public MmStruct VmmMm { get; }

    public RecordingMmuNotifier Notifier { get; }

    public Kvm Vm { get; private set; } = null!;

    public KvmVcpu[] Vcpus { get; private set; } = [];

    /// <summary>The guest's init task, once forked.</summary>
    public TaskStruct? Init => Guest.Init;

    /// <summary>True once the init program has returned.</summary>
    public bool Finished { get; private set; }

    /// <summary>Highest cgroup usage seen at any sample (reclaim, disk events, the periodic sampler), bytes.</summary>
    public long MaxSampledUsage { get; private set; }

    /// <summary>Number of usage samples taken.</summary>
    public long UsageSamples { get; private set; }

    /// <summary>The first sample that found usage above the limit: (time, usage, limit), or null.</summary>
    public (long AtNs, long Usage, long Limit)? LimitExceeded { get; private set; }

    /// <summary>Starts the VMM, which creates the VM and powers the guest on with <paramref name="init"/> as its first process.</summary>
    public void Start(Func<GuestRig, TaskStruct, SimTask> init)
    {
        ArgumentNullException.ThrowIfNull(init);
        _init = init;
        if (Options.UsageSampleNs > 0)
        {
            _sampler = new SimTimer(() =>
            {
                SampleUsage();
                Loop.ArmAfter(_sampler!, Options.UsageSampleNs);
            });
            Loop.ArmAfter(_sampler, Options.UsageSampleNs);
        }
        Host.DoFork("qemu", VmmMm, VmmMain);
    }

    /// <summary>Runs the machine until the init program returns; throws if it has not after <paramref name="budgetNs"/> of virtual time.</summary>
    public void RunUntilFinished(long budgetNs)
    {
        long deadline = Loop.Now + budgetNs;
        while (!Finished)
        {
            if (Loop.Now >= deadline)
            {
                throw new InvalidOperationException($"the guest program did not finish within {budgetNs} ns (now {Loop.Now}); console: {string.Join(" | ", Console.Lines)}");
            }
            if (!Loop.Run(deadline) && !Finished)
            {
                throw new InvalidOperationException("the machine went idle before the guest program finished");
            }
        }
    }

    // ---- what a fixture reads ---------------------------------------------------------------

    /// <summary>The VMM's address of guest frame <paramref name="gfn"/>.</summary>
    public ulong HvaOf(ulong gfn) => Kernel.GfnToHva(Vm, gfn);

    /// <summary>The host PTE of guest frame <paramref name="gfn"/> in the VMM's page table (0 if none).</summary>
    public ulong HostPte(ulong gfn) => VmmMm.PageTable.PeekPte(HvaOf(gfn)) ?? 0;

    /// <summary>True if any spte maps <paramref name="gfn"/>: its EPT entry, or a shadow spte (direct map or user mapping).</summary>
    public bool SecondaryMapped(ulong gfn) => SecondaryPfns(gfn).Count > 0;

    /// <summary>The host frames the sptes of <paramref name="gfn"/> point at.</summary>
    public IReadOnlyList<ulong> SecondaryPfns(ulong gfn) => [.. Vm.Arch.SptesOf(gfn).Select(Spte.Pfn)];

    // ---- what a guest program uses ----------------------------------------------------------

    /// <summary>
    /// The guest frame mapped at <paramref name="gva"/> in <paramref name="task"/>'s page tables, read
    /// the way a debugger would: through the host's mapping of guest RAM, without touching anything
    /// in the guest or taking a fault. Throws if a table page or the PTE is not there.
    /// </summary>
    public ulong GfnOf(TaskStruct task, ulong gva)
    {
        ArgumentNullException.ThrowIfNull(task);
        ulong table = task.Mm!.Pgd;
        for (int level = 3; level >= 0; level--)
        {
            ulong entryGpa = table + (((gva >> (Pgtable.PAGE_SHIFT + (9 * level))) & 511) * 8);
            ulong hostPte = HostPte(entryGpa >> Pgtable.PAGE_SHIFT);
            if (!Pgtable.PtePresent(hostPte))
            {
                throw new InvalidOperationException($"{task}: the table page at gpa {entryGpa:x} is not resident in the host");
            }
            ulong entry = Ram.ReadU64((Pgtable.PtePfn(hostPte) << Pgtable.PAGE_SHIFT) | (entryGpa & (Pgtable.PAGE_SIZE - 1)));
            if (!Pgtable.PtePresent(entry))
            {
                throw new InvalidOperationException($"{task}: {gva:x} is not mapped (level {level})");
            }
            table = entry & Pgtable.PTE_PFN_MASK;
        }
        return table >> Pgtable.PAGE_SHIFT;
    }

    /// <summary>Sleeps the calling guest task, a tick at a time, until the swap device has nothing in flight.</summary>
    public async SimTask WaitForSwapIdle()
    {
        while (Swap.Outstanding > 0)
        {
            await Libc.Sleep(Guest.TickNsec);
        }
    }

    /// <summary>The pages of a region in order, for <see cref="GuestContext.StoreLoop"/>.</summary>
    public static IStoreSource Sequential(ulong start) => new SequentialPages(start);

    /// <summary>Pages of a region of <paramref name="pages"/> pages drawn uniformly from <paramref name="rng"/>.</summary>
    public static IStoreSource RandomPages(ulong start, ulong pages, Rng rng) => new RandomPagesSource(start, pages, rng);

    // ---- the VMM ----------------------------------------------------------------------------

    private SimTask VmmMain(TaskStruct self)
    {
        (Vm, Vcpus) = VmmBoot.Launch(Host, Guest, VmmMm, Cpus, (ulong)Options.GuestMemBytes, Options.Tdp, Console, InitMain, vm => Kernel.MmuNotifierRegister(Notifier, VmmMm));
        return SimTask.CompletedTask;
    }

    private async SimTask InitMain(TaskStruct self)
    {
        await _init!(this, self);
        Finished = true;
        Loop.Stop();
    }

    private void SampleUsage()
    {
        UsageSamples++;
        MaxSampledUsage = Math.Max(MaxSampledUsage, Cgroup.Usage);
        if (Cgroup.Usage > Cgroup.Limit && LimitExceeded is null)
        {
            LimitExceeded = (Loop.Now, Cgroup.Usage, Cgroup.Limit);
        }
    }


    private sealed class RandomPagesSource(ulong start, ulong pages, Rng rng) : IStoreSource
    {
        public ulong NextAddress() => start + (rng.NextBelow(pages) * Pgtable.PAGE_SIZE);
    }
}
