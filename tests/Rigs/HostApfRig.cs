using Hw;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>The shape of a <see cref="HostApfRig"/>: one small VM, a disk whose every random request costs the same.</summary>
public sealed record HostRigOptions
{
    public int Vcpus { get; init; } = 1;

    /// <summary>EPT (true) or shadow paging built by paging_tmpl (false).</summary>
    public bool Tdp { get; init; } = true;

    /// <summary>CONFIG_KVM_ASYNC_PF of the host (false: the baseline kernel of patch 0).</summary>
    public bool AsyncPf { get; init; } = true;

    /// <summary>The ABI profile both sides are built against.</summary>
    public ApfAbi Abi { get; init; } = ApfAbi.V3;

    /// <summary>ASYNC_PF_PER_VCPU.</summary>
    public int AsyncPfPerVcpu { get; init; } = 64;

    public long GuestMemBytes { get; init; } = 8 * MiB;

    /// <summary>The VMM's cgroup limit: roomy, so reclaim never runs by itself; fixtures evict what they mean to.</summary>
    public long MemLimitBytes { get; init; } = 64 * MiB;

    /// <summary>Period of the guest's local APIC timer (0: no timer). It is what makes a running vCPU exit and see completions.</summary>
    public long TimerPeriodNs { get; init; } = Ms;

    /// <summary>Service time of every non-sequential swap request (seek, no rotational delay), so disk time is exact.</summary>
    public long DiskSeekNs { get; init; } = 5 * Ms;

    public ulong Seed { get; init; } = 1;
}

/// <summary>
/// The host half of a machine as tools/vmm/Machine.cs assembles it (the hardware, a host kernel
/// with KVM whose VMM process lives in a memory cgroup, one thread per vCPU in <c>__vcpu_run</c>),
/// with NSubstitute standing in for the guest kernel through the IDT (<see cref="HostPvGuest"/>).
/// The guest's memory is laid out by the rig: four-level page tables for two address spaces,
/// the async PF areas in a memory slot of their own, and data pages the fixtures touch, evict
/// and watch. Everything runs on the machine's one event loop, in virtual time.
/// </summary>
/// <remarks>
/// Guest-physical layout (slot 0: gfn 0–0xf, slot 1: gfn 0x10, slot 2: the rest):
/// address space <c>s</c> has its PML4, PDPT, PD and PT at gfns 1+4s … 4+4s; the area of vCPU
/// <c>c</c> is at gpa 0x10000 + 64c; user page <c>i</c> (gva 0x400000 + 4096i) maps gfn 0x100 + i
/// in space 0 and gfn 0x300 + i in space 1, except page 511, which no PTE maps until
/// <see cref="MapUserPage"/>.
/// </remarks>
public sealed class HostApfRig : IDisposable
{
    /// <summary>Where the VMM maps guest RAM (as Machine does).</summary>
    public const ulong GuestRamHva = VmmBoot.GuestRamHva;

    /// <summary>The guest-linear address of user page 0.</summary>
    public const ulong UserBase = 0x40_0000;

    /// <summary>The one page of the async PF areas, in its own memory slot.</summary>
    public const ulong AreaGfn = 0x10;

    /// <summary>User page <see cref="UnmappedPage"/> has no PTE until a fixture maps it.</summary>
    public const int UnmappedPage = 511;

    /// <summary>The guest's timer vector (LOCAL_TIMER_VECTOR).</summary>
    public const byte TimerVector = 0xef;

    /// <summary>The guest kernel's direct map, for kernel accesses under shadow paging.</summary>
    public const ulong DirectMapBase = 0xffff_8800_0000_0000UL;

    /// <summary>User pages the VMM faults in before the guest runs (so that they are resident, not yet mapped by sptes).</summary>
    public const int PrefaultedPages = 32;

    private static long s_nextRunId = 1L << 40;

    private readonly bool[] _resetRequested;
    private readonly Dictionary<ulong, ulong> _slotOf = [];
    private bool _booted;

    public HostApfRig(HostRigOptions? options = null)
    {
        Options = options ?? new HostRigOptions();
        var o = Options;
        Costs = new CostModel { Disk = new DiskGeometry { MinSeekNs = o.DiskSeekNs, MaxSeekNs = o.DiskSeekNs, RotationNs = 0 } };
        var rng = new Rng(o.Seed);
        Hardware = new MachineHardware(o.Vcpus, o.GuestMemBytes, Costs, rng);
        foreach (var cpu in Cpus)
        {
            cpu.DirectMapBase = DirectMapBase;
        }
        Swap = new RecordingBlockDevice(Disk, Loop);
        Host = new Kernel(Kconfig.Host with { CONFIG_KVM_ASYNC_PF = o.AsyncPf, Abi = o.Abi }, Loop, rng.Split("host"), Costs, Cpus, Ram, Swap)
        {
            AsyncPfPerVcpu = o.AsyncPfPerVcpu,
            TraceRunId = Interlocked.Increment(ref s_nextRunId),
        };
        Hardware.BootHost(Host);
        Trace = new HostKvmTrace(Host.TraceRunId);
        Cgroup = new MemCgroup("host-rig-vmm", o.MemLimitBytes);
        VmmMm = new MmStruct(new SoftPageTable(), 0) { MemCgroup = Cgroup };
        Guests = [.. Cpus.Select(c => new HostPvGuest(this, c))];
        VcpuThreads = new TaskStruct[o.Vcpus];
        Vcpus = new KvmVcpu[o.Vcpus];
        _resetRequested = new bool[o.Vcpus];
    }

    public HostRigOptions Options { get; }

    public CostModel Costs { get; }

    /// <summary>The machine's hardware; its serial console is unused, since no guest kernel writes to it.</summary>
    public MachineHardware Hardware { get; }

    public EventLoop Loop => Hardware.Loop;

    public PhysicalMemory Ram => Hardware.Ram;

    public SwapDisk Disk => Hardware.Disk;

    /// <summary>The host's swap device as the host sees it: the disk behind a recorder.</summary>
    public RecordingBlockDevice Swap { get; }

    public X86Cpu[] Cpus => Hardware.Cpus;

    public Kernel Host { get; }

    public HostKvmTrace Trace { get; }

    public MemCgroup Cgroup { get; }

    public MmStruct VmmMm { get; }

    /// <summary>The guest of each vCPU, as the host sees it through the IDT.</summary>
    public HostPvGuest[] Guests { get; }

    public Kvm Vm { get; private set; } = null!;

    public KvmVcpu[] Vcpus { get; }

    public TaskStruct[] VcpuThreads { get; }

    /// <summary>What each KVM_RUN returned, with the exit it returned after.</summary>
    public List<(long AtNs, int Vcpu, int Result, ExitReason Exit)> RunReturns { get; } = [];

    /// <summary>Raised on the vCPU thread right before the VMM resets a vCPU (after a triple fault or <see cref="RequestReset"/>).</summary>
    public event Action<KvmVcpu>? Resetting;

    public void Dispose() => Trace.Dispose();

    // ---- layout -------------------------------------------------------------------------------

    /// <summary>Guest-physical address of vCPU <paramref name="cpu"/>'s async PF area.</summary>
    public static ulong AreaGpaOf(int cpu) => (AreaGfn << Pgtable.PAGE_SHIFT) + ((ulong)cpu * 64);

    /// <summary>CR3 (the PML4's gpa) of address space <paramref name="space"/> (0 or 1).</summary>
    public static ulong Cr3Of(int space) => (ulong)(1 + (4 * space)) << Pgtable.PAGE_SHIFT;

    /// <summary>The guest-linear address of user page <paramref name="page"/>.</summary>
    public static ulong Gva(int page) => UserBase + ((ulong)page * Pgtable.PAGE_SIZE);

    /// <summary>The gfn user page <paramref name="page"/> maps to in address space <paramref name="space"/>.</summary>
    public static ulong Gfn(int page, int space = 0) => (space == 0 ? 0x100UL : 0x300UL) + (ulong)page;

    /// <summary>The gpa of user page <paramref name="page"/> in address space <paramref name="space"/>.</summary>
    public static ulong Gpa(int page, int space = 0) => Gfn(page, space) << Pgtable.PAGE_SHIFT;

    // ---- the machine's life -------------------------------------------------------------------

    /// <summary>Starts the VMM: guest RAM, the VM, its slots, the guest's page tables, one parked thread per vCPU.</summary>
    public HostApfRig Boot()
    {
        Host.DoFork("qemu", VmmMm, VmmMain);
        Loop.Run();
        if (!_booted || VcpuThreads.Any(t => t is null))
        {
            throw new InvalidOperationException("the VMM did not finish setting up the VM");
        }
        return this;
    }

    /// <summary>A booted rig with user page 0 (<see cref="Gfn"/> 0) on swap, and guest 0 set to enable async PF when it boots.</summary>
    public static HostApfRig BootWithPageZeroSwapped(PagingMode paging = PagingMode.Tdp)
    {
        var rig = new HostApfRig(new HostRigOptions { Tdp = paging == PagingMode.Tdp }).Boot();
        rig.Evict(Gfn(0));
        rig.Guests[0].EnableAtBoot = true;
        return rig;
    }

    /// <summary>Powers the guest on: IDT, CR3, the APIC timer, the first context; then every vCPU thread enters KVM_RUN.</summary>
    public void Go()
    {
        for (int i = 0; i < Cpus.Length; i++)
        {
            var cpu = Cpus[i];
            cpu.WriteCr3(Cr3Of(0));
            if (Options.TimerPeriodNs > 0)
            {
                cpu.Wrmsr(X2Apic.MSR_X2APIC_LVTT, X2Apic.APIC_LVT_TIMER_PERIODIC | TimerVector);
                cpu.Wrmsr(X2Apic.MSR_X2APIC_TMICT, (ulong)Options.TimerPeriodNs);
            }
            Guests[i].Start();
            Host.WakeUpProcess(VcpuThreads[i]);
        }
    }

    /// <summary>
    /// Spawns a "toucher" on <paramref name="guest"/> that stores to user page <paramref name="page"/>,
    /// powers the guest on (<see cref="Go"/>) and runs until that store is done. Returns when it was done.
    /// </summary>
    public long GoAndTouch(HostPvGuest guest, int page)
    {
        ArgumentNullException.ThrowIfNull(guest);
        long done = -1;
        guest.Spawn("toucher", async ctx =>
        {
            await ctx.Store(Gva(page));
            done = Loop.Now;
        });
        Go();
        RunUntil(() => done >= 0);
        return done;
    }

    /// <summary>Runs the machine for <paramref name="ns"/> of virtual time.</summary>
    public void Run(long ns) => Loop.Run(Loop.Now + ns);

    /// <summary>Runs until <paramref name="condition"/> holds (checked every 10 µs of virtual time); throws after <paramref name="budgetNs"/>.</summary>
    public void RunUntil(Func<bool> condition, long budgetNs = 200 * Ms)
    {
        ArgumentNullException.ThrowIfNull(condition);
        long deadline = Loop.Now + budgetNs;
        while (!condition())
        {
            if (Loop.Now >= deadline)
            {
                throw new InvalidOperationException($"condition not reached within {budgetNs} ns (now {Loop.Now})");
            }
            Loop.Run(Math.Min(deadline, Loop.Now + (10 * Us)));
        }
    }

    /// <summary>Calls <paramref name="action"/> from the event loop at virtual time <paramref name="atNs"/> (the VMM or an outside event).</summary>
    public void At(long atNs, Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        Loop.Arm(new SimTimer(action), atNs);
    }

    /// <summary>Starts a host thread of the VMM process running <paramref name="fn"/> (it runs at once, up to its first sleep).</summary>
    public TaskStruct HostThread(string name, Func<TaskStruct, SimTask> fn) => Host.DoFork(name, VmmMm, fn);

    /// <summary>The VMM resets vCPU <paramref name="vcpu"/> (INIT, or KVM_SET_REGS to reset state): it leaves KVM_RUN, is reset, and the guest reboots.</summary>
    public void RequestReset(int vcpu)
    {
        _resetRequested[vcpu] = true;
        Vcpus[vcpu].StopRequested = true;
        Host.KvmVcpuKick(Vcpus[vcpu]);
    }

    // ---- host memory ----------------------------------------------------------------------------

    /// <summary>The VMM's address of guest frame <paramref name="gfn"/> (through the memslots as they are now).</summary>
    public ulong HvaOf(ulong gfn) => Kernel.GfnToHva(Vm, gfn);

    /// <summary>The VMM's PTE of guest frame <paramref name="gfn"/> (0 if none).</summary>
    public ulong HostPte(ulong gfn) => VmmMm.PageTable.PeekPte(HvaOf(gfn)) ?? 0;

    /// <summary>The host frame behind guest frame <paramref name="gfn"/>, if it is resident and mapped.</summary>
    public ulong? HostPfn(ulong gfn) => HostPfnAt(HvaOf(gfn));

    /// <summary>The host frame mapped at <paramref name="hva"/> in the VMM, if any.</summary>
    public ulong? HostPfnAt(ulong hva)
    {
        ulong pte = VmmMm.PageTable.PeekPte(hva) ?? 0;
        return Pgtable.PtePresent(pte) ? Pgtable.PtePfn(pte) : null;
    }

    /// <summary>A u32 of guest memory read through the VMM's mapping, as a debugger would; null if the page is not resident.</summary>
    public uint? PeekGuestU32(ulong gpa) => PeekHvaU32(HvaOf(gpa >> Pgtable.PAGE_SHIFT) + (gpa & (Pgtable.PAGE_SIZE - 1)));

    /// <summary>A u32 at a VMM address, if its page is resident.</summary>
    public uint? PeekHvaU32(ulong hva) =>
        HostPfnAt(hva & ~(Pgtable.PAGE_SIZE - 1)) is { } pfn ? Ram.ReadU32((pfn << Pgtable.PAGE_SHIFT) | (hva & (Pgtable.PAGE_SIZE - 1))) : null;

    /// <summary>Writes a u32 of guest memory through the VMM's mapping; false (and nothing written) if the page is not resident.</summary>
    public bool PokeGuestU32(ulong gpa, uint value)
    {
        if (HostPfn(gpa >> Pgtable.PAGE_SHIFT) is not { } pfn)
        {
            return false;
        }
        Ram.WriteU32((pfn << Pgtable.PAGE_SHIFT) | (gpa & (Pgtable.PAGE_SIZE - 1)), value);
        return true;
    }

    /// <summary>Maps user page <paramref name="page"/> of address space <paramref name="space"/> to <paramref name="gfn"/> (a guest kernel writing a PTE).</summary>
    public void MapUserPage(int page, ulong gfn, int space = 0)
    {
        ulong pteGpa = PtGpa(space) + ((ulong)page * 8);
        ulong pfn = HostPfn(pteGpa >> Pgtable.PAGE_SHIFT) ?? throw new InvalidOperationException("the guest's page table is not resident");
        Ram.WriteU64((pfn << Pgtable.PAGE_SHIFT) | (pteGpa & (Pgtable.PAGE_SIZE - 1)), (gfn << Pgtable.PAGE_SHIFT) | UserPteFlags);
    }

    /// <summary>True if an spte maps <paramref name="gfn"/>: its EPT entry, a shadow direct-map spte or a shadow spte under any CR3.</summary>
    public bool SecondaryMapped(ulong gfn) => SecondaryPfns(gfn).Count > 0;

    /// <summary>The host frames the sptes of <paramref name="gfn"/> point at.</summary>
    public IReadOnlyList<ulong> SecondaryPfns(ulong gfn) => [.. Vm.Arch.SptesOf(gfn).Select(Spte.Pfn)];

    /// <summary>True if a shadow spte maps <paramref name="gva"/> under guest CR3 <paramref name="cr3"/>.</summary>
    public bool ShadowMapped(ulong cr3, ulong gva) => Vm.Arch.Shadow.ContainsKey((cr3, gva >> Pgtable.PAGE_SHIFT));

    // ---- eviction -------------------------------------------------------------------------------

    /// <summary>
    /// Evicts guest frames to swap the way reclaim does (shrink_page_list for each page: a slot,
    /// try_to_unmap with its MMU-notifier zap, pageout, freed when the write completes), and runs
    /// the machine until the writes are done. The frames are then on swap only.
    /// </summary>
    public void Evict(params ulong[] gfns) => EvictCore(gfns, free: true);

    /// <summary>As <see cref="Evict"/>, but the written pages stay in the swap cache (unmapped): a later fault is a minor one.</summary>
    public void EvictToSwapCache(params ulong[] gfns) => EvictCore(gfns, free: false);

    /// <summary>Evicts the page the VMM maps at <paramref name="hva"/> (a page outside the memslots, or behind a moved one).</summary>
    public void EvictHva(ulong hva) => EvictPages([PageAt(hva)], free: true);

    /// <summary>The swap slot an evicted frame was written to.</summary>
    public ulong SlotOf(ulong gfn) => _slotOf[gfn];

    /// <summary>The reads of <paramref name="gfn"/>'s swap slot so far.</summary>
    public IReadOnlyList<DiskTrace> ReadsOf(ulong gfn)
    {
        ulong slot = SlotOf(gfn);
        return Swap.Requests.Where(r => !r.Write && r.Covers(slot)).ToList();
    }

    private void EvictCore(ulong[] gfns, bool free)
    {
        var pages = gfns.Select(g => PageAt(HvaOf(g))).ToList();
        var slots = EvictPages(pages, free);
        for (int i = 0; i < gfns.Length; i++)
        {
            _slotOf[gfns[i]] = slots[i];
        }
    }

    private Page PageAt(ulong hva) =>
        HostPfnAt(hva) is { } pfn && Host.PfnToPage(pfn) is { } page
            ? page
            : throw new InvalidOperationException($"nothing resident at hva {hva:x}");

    private List<ulong> EvictPages(List<Page> pages, bool free)
    {
        var slots = new List<ulong>();
        foreach (var page in pages)
        {
            if (!page.Test(PageFlags.PG_swapcache) && !Host.AddToSwap(page))
            {
                throw new InvalidOperationException("swap is full");
            }
            Host.TryToUnmapOne(page);
            if (page.Mapcount != 0)
            {
                throw new InvalidOperationException($"{page} is still mapped");
            }
            if (free)
            {
                page.Set(PageFlags.PG_reclaim);
            }
            slots.Add(page.Private.Offset);
            Host.SwapWritepage(page);
        }
        Host.SwapUnplug();
        RunUntil(() => Swap.Outstanding == 0);
        return slots;
    }

    // ---- the VMM ----------------------------------------------------------------------------------

    private const ulong UserPteFlags = Pgtable._PAGE_PRESENT | Pgtable._PAGE_RW | Pgtable._PAGE_USER;

    private static ulong PtGpa(int space) => (ulong)(4 + (4 * space)) << Pgtable.PAGE_SHIFT;

    private async SimTask VmmMain(TaskStruct self)
    {
        ulong ramBytes = (ulong)Options.GuestMemBytes;
        ulong areaGpa = AreaGfn << Pgtable.PAGE_SHIFT;
        ulong dataGpa = areaGpa + Pgtable.PAGE_SIZE;
        Kernel.DoMmapPgoff(VmmMm, GuestRamHva, ramBytes, write: true);
        Vm = Host.KvmCreateVm(VmmMm, Options.Tdp);
        if (Host.__KvmSetMemoryRegion(Vm, 0, areaGpa, GuestRamHva) != 0
            || Host.__KvmSetMemoryRegion(Vm, areaGpa, Pgtable.PAGE_SIZE, GuestRamHva + areaGpa) != 0
            || Host.__KvmSetMemoryRegion(Vm, dataGpa, ramBytes - dataGpa, GuestRamHva + dataGpa) != 0)
        {
            throw new InvalidOperationException("KVM_SET_USER_MEMORY_REGION failed");
        }
        for (int space = 0; space < 2; space++)
        {
            ulong pml4 = Cr3Of(space);
            ulong pdpt = pml4 + Pgtable.PAGE_SIZE;
            ulong pd = pdpt + Pgtable.PAGE_SIZE;
            ulong pt = pd + Pgtable.PAGE_SIZE;
            await WriteAtBoot(self, pml4, pdpt | Pgtable._PAGE_TABLE);
            await WriteAtBoot(self, pdpt, pd | Pgtable._PAGE_TABLE);
            await WriteAtBoot(self, pd + (((UserBase >> 21) & 511) * 8), pt | Pgtable._PAGE_TABLE);
            for (int page = 0; page < UnmappedPage; page++)
            {
                await WriteAtBoot(self, pt + ((ulong)page * 8), Gpa(page, space) | UserPteFlags);
            }
        }
        await Host.GetUserPages(self, VmmMm, GuestRamHva + areaGpa, write: true);
        for (int page = 0; page < PrefaultedPages; page++)
        {
            await Host.GetUserPages(self, VmmMm, GuestRamHva + Gpa(page, 0), write: true);
            await Host.GetUserPages(self, VmmMm, GuestRamHva + Gpa(page, 1), write: true);
        }
        for (int i = 0; i < Cpus.Length; i++)
        {
            int id = i;
            VcpuThreads[i] = Host.DoFork($"qemu-vcpu{i}", VmmMm, t => VcpuThread(t, id));
        }
        _booted = true;
    }

    private async SimTask WriteAtBoot(TaskStruct self, ulong gpa, ulong value)
    {
        var page = await Host.GetUserPages(self, VmmMm, GuestRamHva + gpa, write: true)
            ?? throw new InvalidOperationException($"no page for gpa {gpa:x}");
        Ram.WriteU64((page.Pfn << Pgtable.PAGE_SHIFT) | (gpa & (Pgtable.PAGE_SIZE - 1)), value);
    }

    private async SimTask VcpuThread(TaskStruct self, int id)
    {
        var vcpu = Host.KvmVcpuInit(Vm, id, Cpus[id], self);
        Vcpus[id] = vcpu;
        // Parked until Go: the VMM starts KVM_RUN once the fixture has set the stage.
        Host.SetCurrentState(TaskStates.TASK_INTERRUPTIBLE);
        await Host.Schedule();
        while (true)
        {
            int r = await Host.__VcpuRun(vcpu);
            var exit = Cpus[id].LastExit.Reason;
            RunReturns.Add((Loop.Now, id, r, exit));
            if (r < 0)
            {
                throw new InvalidOperationException($"KVM_RUN on vcpu {id} failed with {r}");
            }
            bool shutdown = r == 0 && exit == ExitReason.TripleFault;
            if (!shutdown && !_resetRequested[id])
            {
                return;
            }
            // The VMM's system reset (QEMU's qemu_system_reset after KVM_EXIT_SHUTDOWN, or an INIT).
            _resetRequested[id] = false;
            vcpu.StopRequested = false;
            Resetting?.Invoke(vcpu);
            Host.KvmArchVcpuReset(vcpu);
            Guests[id].Reboot();
        }
    }
}
