using Hw;
using KvmApf.Guest;
using KvmApf.Tests.Rigs;
using Linux;

// Not KvmApf.Tests.Kernel: a namespace of that name would hide Linux.Kernel from every KvmApf.Tests.* file.
namespace KvmApf.Tests.Sched;

/// <summary>
/// The guest's scheduler (kernel/sched.c and kernel/sched_fair.c as of 2.6.32), run in a whole
/// machine with no memory pressure: fair sharing of a vCPU, wakeup preemption, fork balancing.
/// </summary>
[TestFixture, Category("patch-00"), Description("Baseline guest scheduler: CFS sharing, wakeup preemption, fork balancing")]
public sealed class SchedTests
{
    /// <summary>A guest thread computing 1 ms at a time until <paramref name="stop"/> says so, then meeting the others at <paramref name="barrier"/>.</summary>
    private static async SimTask Hog(GuestRig rig, TaskStruct self, Func<bool> stop, PthreadBarrier barrier)
    {
        while (!stop())
        {
            await self.Context!.Compute(Ms);
        }
        await rig.Libc.PthreadBarrierWait(barrier);
    }

    [Test]
    public void TaskTickFair_TwoCpuBoundTasksOnOneVcpu_SplitItWithinOnePercent()
    {
        var rig = new GuestRig(new RigOptions { Vcpus = 1 });
        TaskStruct[] tasks = [];
        (long User, long SumExec)[] start = [];
        (long User, long SumExec)[] end = [];
        long window = 0;
        rig.Start(async (r, self) =>
        {
            bool stop = false;
            var barrier = new PthreadBarrier(3);
            tasks =
            [
                await r.Libc.PthreadCreate("hog0", t => Hog(r, t, () => stop, barrier)),
                await r.Libc.PthreadCreate("hog1", t => Hog(r, t, () => stop, barrier)),
            ];
            await r.Libc.Sleep(20 * Ms);
            long t0 = r.Loop.Now;
            start = [.. tasks.Select(t => (t.Context!.UserNs, t.Se.SumExecRuntime))];
            await r.Libc.Sleep(2_000 * Ms);
            end = [.. tasks.Select(t => (t.Context!.UserNs, t.Se.SumExecRuntime))];
            window = r.Loop.Now - t0;
            stop = true;
            await r.Libc.PthreadBarrierWait(barrier);
        });
        rig.RunUntilFinished(10_000 * Ms);
        long user0 = end[0].User - start[0].User;
        long user1 = end[1].User - start[1].User;
        long exec0 = end[0].SumExec - start[0].SumExec;
        long exec1 = end[1].SumExec - start[1].SumExec;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(tasks.Select(t => t.Cpu), Is.All.EqualTo(0), "both on the one vCPU");
            Assert.That(user0 + user1, Is.GreaterThan(window * 95 / 100), "together they used the vCPU");
            Assert.That(Math.Abs(user0 - user1), Is.LessThanOrEqualTo((user0 + user1) / 2 / 100), "user time within 1%");
            Assert.That(Math.Abs(exec0 - exec1), Is.LessThanOrEqualTo((exec0 + exec1) / 2 / 100), "sum_exec_runtime within 1%");
        }
    }

    [Test]
    public void CheckPreemptWakeup_TaskWakesAfterLongSleep_PreemptsRunningTaskAtTheWakingTick()
    {
        var rig = new GuestRig(new RigOptions { Vcpus = 1 });
        long wakingTick = 0;
        long resumedAt = 0;
        long hogRanWhileAsleep = 0;
        TaskStruct? hog = null;
        rig.Start(async (r, self) =>
        {
            bool stop = false;
            var barrier = new PthreadBarrier(3);
            hog = await r.Libc.PthreadCreate("hog", t => Hog(r, t, () => stop, barrier));
            await r.Libc.PthreadCreate("sleeper", async t =>
            {
                await r.Libc.Sleep(5 * Ms);
                // Sleep until half a tick after the tick 50 ms from the next one: the tick after that wakes it.
                long nextTick = r.Vcpus[0].Arch.Apic.Timer!.Expires;
                long expires = nextTick + (50 * Ms) + (r.Guest.TickNsec / 2);
                wakingTick = nextTick + (51 * Ms);
                long hogBefore = hog.Context!.UserNs;
                await r.Libc.Sleep(expires - r.Loop.Now);
                resumedAt = r.Loop.Now;
                hogRanWhileAsleep = hog.Context.UserNs - hogBefore;
                stop = true;
                await r.Libc.PthreadBarrierWait(barrier);
            });
            await r.Libc.PthreadBarrierWait(barrier);
        });
        rig.RunUntilFinished(10_000 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(hogRanWhileAsleep, Is.GreaterThan(45 * Ms), "the hog had the vCPU while the sleeper slept");
            Assert.That(resumedAt, Is.InRange(wakingTick, wakingTick + (100 * Us)),
                "the sleeper ran within the tick that woke it, not at the hog's next tick");
        }
    }

    /// <summary>
    /// The rule select_task_rq_fair's port documents: the idlest CPU, ties to the CPU with fewer
    /// tasks that last ran there, then to the lowest number. A task being forked has run nowhere.
    /// </summary>
    [Test]
    public void SelectTaskRqFork_EveryCpuIdle_TieGoesToLowestNumberedCpu()
    {
        var rig = new GuestRig(new RigOptions { Vcpus = 4 });
        int initCpu = -1;
        int childCpu = -1;
        rig.Start(async (r, self) =>
        {
            initCpu = self.Cpu;
            bool stop = false;
            var barrier = new PthreadBarrier(2);
            var child = await r.Libc.PthreadCreate("hog", t => Hog(r, t, () => stop, barrier));
            childCpu = child.Cpu;
            stop = true;
            await r.Libc.PthreadBarrierWait(barrier);
        });
        rig.RunUntilFinished(10_000 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(initCpu, Is.Zero, "init, forked with every CPU idle and no task anywhere, goes to CPU 0");
            Assert.That(childCpu, Is.EqualTo(1), "init's first thread goes to the lowest-numbered idle CPU");
        }
    }

    [Test]
    public void WakeUpNewTask_ForkOnIdleMachine_PlacesEachThreadOnLeastLoadedCpu()
    {
        const int vcpus = 4;
        var rig = new GuestRig(new RigOptions { Vcpus = vcpus });
        int initCpu = -1;
        int[] placed = [];
        TaskStruct[] threads = [];
        long[] ranInWindow = [];
        long window = 0;
        rig.Start(async (r, self) =>
        {
            bool stop = false;
            var barrier = new PthreadBarrier(vcpus + 1);
            initCpu = self.Cpu;
            var created = new List<TaskStruct>();
            var cpus = new List<int>();
            for (int i = 0; i < vcpus; i++)
            {
                var t = await r.Libc.PthreadCreate($"hog{i}", t => Hog(r, t, () => stop, barrier));
                created.Add(t);
                cpus.Add(t.Cpu);
            }
            threads = [.. created];
            placed = [.. cpus];
            await r.Libc.Sleep(5 * Ms);
            long[] before = [.. threads.Select(t => t.Context!.UserNs)];
            long t0 = r.Loop.Now;
            await r.Libc.Sleep(20 * Ms);
            window = r.Loop.Now - t0;
            ranInWindow = [.. threads.Select((t, i) => t.Context!.UserNs - before[i])];
            stop = true;
            await r.Libc.PthreadBarrierWait(barrier);
        });
        rig.RunUntilFinished(10_000 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(placed, Is.Unique, "each new thread went to a different CPU");
            Assert.That(placed, Is.EquivalentTo(Enumerable.Range(0, vcpus)), "every CPU got one");
            Assert.That(placed[0], Is.Not.EqualTo(initCpu), "the first one left the busy parent's CPU for an idle one");
            Assert.That(ranInWindow, Is.All.GreaterThan(window * 9 / 10), "and they ran in parallel, each with a vCPU of its own");
        }
    }
}
