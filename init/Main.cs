using Hw;

namespace Linux;

// init/main.c (patch 0): booting the guest kernel.
public sealed partial class Kernel
{
    private bool _kvmclockEnabled;
    private bool _bootCpuDone;

    /// <summary>The console the guest prints to (its serial port).</summary>
    public SerialPort? Console { get; private set; }

    /// <summary>The init task, once forked.</summary>
    public TaskStruct? Init { get; private set; }

    /// <summary>
    /// Powers the guest on: every vCPU starts on its idle task, the boot CPU in start_kernel,
    /// the others in start_secondary. <paramref name="init"/> is the program the kernel runs as
    /// its first user process (init=). Call before the vCPUs first enter guest mode.
    /// </summary>
    public void PowerOn(SerialPort console, ulong memBytes, Func<TaskStruct, SimTask> init)
    {
        ArgumentNullException.ThrowIfNull(init);
        Console = console;
        ulong totalPages = memBytes >> Pgtable.PAGE_SHIFT;
        for (int cpu = 0; cpu < HwCpus.Count; cpu++)
        {
            var idle = Runqueues[cpu].Idle;
            idle.KernelStack = (GuestLayout.PerCpuBase + (ulong)cpu) << Pgtable.PAGE_SHIFT;
            HwCpus[cpu].InterruptsEnabled = false; // until the CPU has its IDT (local_irq_enable in start_kernel / start_secondary)
            HwCpus[cpu].SwitchTo(idle.Context!);
            _current = idle;
            (cpu == 0 ? StartKernel(idle, totalPages, init) : StartSecondary(idle)).Forget();
        }
        _current = null;
    }

    /// <summary>start_kernel() → rest_init() → kernel_init(): on the boot CPU.</summary>
    [Port("init/main.c", "start_kernel")]
    private async SimTask StartKernel(TaskStruct idle, ulong totalPages, Func<TaskStruct, SimTask> init)
    {
        MightSleep();
        await idle.Context!.WaitScheduledIn();
        var cpu = idle.Context.Cpu!;
        cpu.DirectMapBase = GuestLayout.PAGE_OFFSET;
        TrapInit();
        LoadIdt(cpu);
        cpu.InterruptsEnabled = true;
        MemInit(GuestLayout.ReservedPages, totalPages);
        for (ulong gfn = 0; gfn < GuestLayout.BootFootprintPages; gfn++)
        {
            await idle.Context.Touch((GuestLayout.KernelTextHot + gfn) << Pgtable.PAGE_SHIFT);
        }
        _kvmclockEnabled = KvmclockInit(cpu);
        KvmGuestInit(cpu);
        SmpPrepareBootCpu(cpu);
        _bootCpuDone = true;
        SetupAPICTimer(cpu);
        Init = DoFork("init", await MmAlloc(idle.Context), init);
        await CpuIdle(idle);
    }

    /// <summary>mm_alloc() → pgd_alloc(): a new address space with a zeroed top-level table.</summary>
    [Port("kernel/fork.c", "mm_alloc")]
    private async SimTask<MmStruct> MmAlloc(GuestContext ctx)
    {
        MightSleep();
        var pgd = AllocPage() ?? throw new InvalidOperationException("guest out of memory for a pgd");
        ulong pgdPhys = pgd.Pfn << Pgtable.PAGE_SHIFT;
        await ctx.Touch(pgdPhys);
        return new MmStruct(new X86PageTable(this, pgdPhys), pgdPhys);
    }
}
