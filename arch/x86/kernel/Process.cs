using Hw;

namespace Linux;

// arch/x86/kernel/process.c and process_64.c (patch 0): the idle loop.
public sealed partial class Kernel
{
    /// <summary>cpu_idle(): halt until there is something to run, then schedule.</summary>
    [Port("arch/x86/kernel/process_64.c", "cpu_idle")]
    internal async SimTask CpuIdle(TaskStruct idle)
    {
        MightSleep();
        while (true)
        {
            while (!idle.NeedResched)
            {
                await DefaultIdle(idle);
            }
            await Schedule();
        }
    }

    /// <summary>default_idle(): safe_halt(), i.e. STI; HLT.</summary>
    [Port("arch/x86/kernel/process.c", "default_idle")]
    private static SimTask DefaultIdle(TaskStruct idle)
    {
        idle.Context!.Cpu!.InterruptsEnabled = true;
        return idle.Context.Halt();
    }
}
