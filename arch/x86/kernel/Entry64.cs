using Hw;

namespace Linux;

// arch/x86/kernel/entry_64.S system_call and the syscalls guest user space uses (patch 0).
// A syscall runs on the task's context at CPL 0; its return path schedules when asked to.
public sealed partial class Kernel
{
    private ulong _nextMmap = 0x7f00_0000_0000UL;

    /// <summary>system_call: entry.</summary>
    [Port("arch/x86/kernel/entry_64.S", "system_call")]
    private async SimTask<TaskStruct> SystemCall()
    {
        MightSleep();
        var me = Current;
        me.Context!.SyscallDepth++;
        await me.Context.KernelCompute(Costs.GuestSyscallNs);
        return me;
    }

    /// <summary>ret_from_sys_call / sysret_careful: schedule if needed, back to user mode.</summary>
    [Port("arch/x86/kernel/entry_64.S", "sysret_careful")]
    private async SimTask SysretCareful(TaskStruct me)
    {
        MightSleep();
        if (me.NeedResched)
        {
            await Schedule();
        }
        me.Context!.SyscallDepth--;
    }

    /// <summary>clone(CLONE_VM | CLONE_THREAD …): a thread of the caller's process running <paramref name="fn"/>.</summary>
    [Port("kernel/fork.c", "sys_clone")]
    public async SimTask<TaskStruct> SysClone(string comm, Func<TaskStruct, SimTask> fn)
    {
        MightSleep();
        var me = await SystemCall();
        var child = DoFork(comm, me.Mm, fn);
        await SysretCareful(me);
        return child;
    }

    /// <summary>mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS): returns the address.</summary>
    [Port("arch/x86/kernel/sys_x86_64.c", "sys_mmap")]
    public async SimTask<ulong> SysMmap(ulong length)
    {
        MightSleep();
        var me = await SystemCall();
        ulong len = (length + Pgtable.PAGE_SIZE - 1) & ~(Pgtable.PAGE_SIZE - 1);
        ulong address = _nextMmap;
        _nextMmap += len + (1UL << 30); // leave a gap between mappings
        DoMmapPgoff(me.Mm!, address, len, write: true);
        await SysretCareful(me);
        return address;
    }

    /// <summary>write(1, …) of one line to the console.</summary>
    [Port("fs/read_write.c", "sys_write")]
    public async SimTask SysWrite(string line)
    {
        MightSleep();
        var me = await SystemCall();
        Console?.WriteLine(line);
        await SysretCareful(me);
    }

    /// <summary>nanosleep().</summary>
    [Port("kernel/hrtimer.c", "sys_nanosleep")]
    public async SimTask SysNanosleep(long ns)
    {
        MightSleep();
        var me = await SystemCall();
        await DoNanosleep(ns);
        await SysretCareful(me);
    }

    /// <summary>futex(FUTEX_WAIT).</summary>
    public async SimTask SysFutexWait(object key, Func<bool> valueUnchanged)
    {
        MightSleep();
        var me = await SystemCall();
        await FutexWait(key, valueUnchanged);
        await SysretCareful(me);
    }

    /// <summary>futex(FUTEX_WAKE).</summary>
    public async SimTask<int> SysFutexWake(object key, int nrWake)
    {
        MightSleep();
        var me = await SystemCall();
        int woken = FutexWake(key, nrWake);
        await SysretCareful(me);
        return woken;
    }
}
