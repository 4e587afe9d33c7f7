using Hw;

namespace Linux;

// kernel/fork.c and kernel/exit.c (patch 0): creating and ending tasks.
public sealed partial class Kernel
{
    /// <summary>
    /// do_fork() for a thread (CLONE_VM) or a kernel thread: a task that runs
    /// <paramref name="fn"/> once scheduled, on the CPU fork balancing picks.
    /// </summary>
    [Port("kernel/fork.c", "do_fork")]
    public TaskStruct DoFork(string comm, MmStruct? mm, Func<TaskStruct, SimTask> fn)
    {
        ArgumentNullException.ThrowIfNull(fn);
        var p = AllocTask(comm, mm);
        if (p.Context is not null)
        {
            p.KernelStack = AllocThreadInfo();
            RetFromFork(p, fn).Forget();
        }
        WakeUpNewTask(p);
        if (p.Context is null)
        {
            var previous = _current;
            _current = p;
            RunHostThread(p, fn).Forget();
            _current = previous;
        }
        return p;
    }

    /// <summary>ret_from_fork (entry_64.S): the new task's first instructions, once a CPU switches to it.</summary>
    [Port("arch/x86/kernel/entry_64.S", "ret_from_fork")]
    private async SimTask RetFromFork(TaskStruct p, Func<TaskStruct, SimTask> fn)
    {
        MightSleep();
        await p.Context!.WaitScheduledIn();
        await fn(p);
        await DoExit();
    }

    /// <summary>A host thread starts at once on its own CPU.</summary>
    private async SimTask RunHostThread(TaskStruct p, Func<TaskStruct, SimTask> fn)
    {
        MightSleep();
        await fn(p);
        p.State = TaskStates.TASK_DEAD;
    }

    /// <summary>do_exit(): the task leaves its run queue for good.</summary>
    [Port("kernel/exit.c", "do_exit")]
    public async SimTask DoExit()
    {
        MightSleep();
        var me = Current;
        me.State = TaskStates.TASK_DEAD;
        await Schedule();
        throw new InvalidOperationException($"{Name}: {me} ran after do_exit");
    }

    private ulong _nextStack = GuestLayout.KernelStackBase;

    /// <summary>alloc_thread_info(): a kernel stack page in the kernel's reservation.</summary>
    [Port("kernel/fork.c", "alloc_thread_info")]
    private ulong AllocThreadInfo() => _nextStack++ << Pgtable.PAGE_SHIFT;
}
