using Hw;

namespace Linux;

/// <summary>The guest's IDT: the gates trap_init and apic_intr_init install, as the CPU sees them.</summary>
public sealed class GuestIdt(Kernel kernel) : IInterruptDescriptorTable
{
    public void DeliverInterrupt(X86Cpu cpu, byte vector) => kernel.DoIRQ(cpu, vector);

    public SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode, int savedCpl) => kernel.PageFault(cpu, vector, errorCode, savedCpl);

    public int DeliveryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages) => kernel.EntryFootprint(cpu, ctx, pages);
}

/// <summary>arch/x86/include/asm/irq_vectors.h.</summary>
public static class IrqVectors
{
    public const byte LOCAL_TIMER_VECTOR = 0xef;
    public const byte RESCHEDULE_VECTOR = 0xfd;
}

// arch/x86/kernel/traps.c and the interrupt entry of arch/x86/kernel/entry_64.S (patch 0).
public sealed partial class Kernel
{
    private GuestIdt? _idt;

    /// <summary>trap_init(): builds the IDT (loaded by each CPU as it comes up).</summary>
    [Port("arch/x86/kernel/traps.c", "trap_init")]
    internal void TrapInit() => _idt = new GuestIdt(this);

    /// <summary>load_idt() on one CPU.</summary>
    internal void LoadIdt(X86Cpu cpu) => cpu.Idt = _idt;

    /// <summary>
    /// The pages an event delivery touches: the IDT and the hot entry text, the CPU's per-CPU
    /// area, and the kernel stack of the interrupted task.
    /// </summary>
    internal int EntryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages)
    {
        pages[0] = GuestLayout.KernelTextHot << Pgtable.PAGE_SHIFT;
        pages[1] = (GuestLayout.PerCpuBase + (ulong)cpu.Id) << Pgtable.PAGE_SHIFT;
        pages[2] = ctx.Owner is TaskStruct t ? t.KernelStack : pages[0];
        return 3;
    }

    /// <summary>do_IRQ() / the apic interrupt stubs: dispatch, then the return-from-interrupt path.</summary>
    [Port("arch/x86/kernel/irq.c", "do_IRQ")]
    internal void DoIRQ(X86Cpu cpu, byte vector)
    {
        HardirqCount++;
        switch (vector)
        {
            case IrqVectors.LOCAL_TIMER_VECTOR:
                SmpApicTimerInterrupt(cpu);
                break;
            case IrqVectors.RESCHEDULE_VECTOR:
                SmpRescheduleInterrupt(cpu);
                break;
        }
        HardirqCount--;
        RetintCareful(cpu);
    }

    /// <summary>
    /// ret_from_intr / retint_careful (entry_64.S): returning to user mode with need_resched set
    /// schedules. The kernel is not preemptible, so an interrupted kernel path is not.
    /// </summary>
    [Port("arch/x86/kernel/entry_64.S", "retint_careful")]
    private void RetintCareful(X86Cpu cpu)
    {
        var rq = Runqueues[cpu.Id];
        var curr = rq.Curr;
        if (curr.NeedResched && !curr.IsIdle && curr.Context!.Cpl == 3 && ReferenceEquals(cpu.Current, curr.Context))
        {
            __Schedule(rq);
        }
    }

    /// <summary>
    /// The exception gates: #PF goes to do_page_fault; the return path (error_exit) schedules if
    /// asked to, but only on its way back to user mode. Whether it returns to user mode is the
    /// saved CS of the interrupted frame (<paramref name="savedCpl"/>, user_mode(regs)), not the
    /// context's state now: by the time the handler runs, the CPU has moved an interrupted kernel
    /// operation aside, so kernel code outside a syscall (a kernel thread, ret_from_fork) would
    /// look like user code.
    /// </summary>
    [Port("arch/x86/kernel/entry_64.S", "page_fault")]
    internal async SimTask PageFault(X86Cpu cpu, byte vector, uint errorCode, int savedCpl)
    {
        if (vector != Vectors.PageFault)
        {
            throw new InvalidOperationException($"{Name}: unexpected exception {vector} on CPU {cpu.Id}");
        }
        bool userMode = savedCpl == 3;
        await DoPageFault(cpu, errorCode);
        if (userMode && Current.NeedResched && !Current.IsIdle)
        {
            await Schedule();
        }
    }
}

/// <summary>Where the guest kernel keeps its own pages (guest frame numbers). Not an ABI: the port's layout.</summary>
public static class GuestLayout
{
    /// <summary>Start of the kernel image (1 MiB), the hot entry text and IDT.</summary>
    public const ulong KernelTextHot = 0x100;

    /// <summary>Per-CPU areas, one page each.</summary>
    public const ulong PerCpuBase = 0x200;

    /// <summary>Kernel stacks, one page per task.</summary>
    public const ulong KernelStackBase = 0x1000;

    /// <summary>Pages the kernel touches while booting (image, memmap, slab): 48 MiB from 1 MiB.</summary>
    public const ulong BootFootprintPages = 12288;

    /// <summary>The kernel's reservation: the page allocator hands out frames from 64 MiB on.</summary>
    public const ulong ReservedPages = 16384;

    /// <summary>PAGE_OFFSET of x86-64 in 2.6.32: the direct map of all guest-physical memory.</summary>
    public const ulong PAGE_OFFSET = 0xffff_8800_0000_0000UL;
}
