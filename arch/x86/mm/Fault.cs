using Hw;

namespace Linux;

// arch/x86/mm/fault.c (patch 0): the guest's page-fault handler.
public sealed partial class Kernel
{
    /// <summary>
    /// do_page_fault(): demand paging of the faulting task's anonymous memory. Patch 4 first lets
    /// the paravirt hook take the fault: an async PF event is not a fault of the task's own.
    /// </summary>
    [Port("arch/x86/mm/fault.c", "do_page_fault", Patches = [0, 4])]
    internal async SimTask DoPageFault(X86Cpu cpu, uint errorCode)
    {
        if (await HandlePf(cpu, errorCode))
        {
            return;
        }
        MightSleep();
        ulong address = cpu.Cr2;
        var tsk = Current;
        var mm = tsk.Mm ?? throw new InvalidOperationException($"{Name}: kernel page fault at {address:x} in {tsk}");
        await tsk.Context!.KernelCompute(Costs.GuestPageFaultNs);
        var vma = mm.FindVma(address) ?? throw new InvalidOperationException($"{Name}: SIGSEGV: {tsk} at {address:x}");
        bool write = (errorCode & (uint)PfErr.Write) != 0;
        int fault = await HandleMmFault(mm, vma, address, write ? VmFault.FAULT_FLAG_WRITE : 0);
        if ((fault & VmFault.VM_FAULT_ERROR) != 0)
        {
            string what = (fault & VmFault.VM_FAULT_OOM) != 0 ? "out of memory" : "SIGBUS";
            throw new InvalidOperationException($"{Name}: {what}: {tsk} at {address:x}");
        }
        if ((fault & VmFault.VM_FAULT_MAJOR) != 0)
        {
            tsk.MajFlt++;
        }
        else
        {
            tsk.MinFlt++;
        }
    }
}
