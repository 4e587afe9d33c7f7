using Hw;
using KvmApf.Tests.Rigs;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 10: a not-present that arrives where the current task cannot sleep (the idle task, or
/// preemption disabled) halts the CPU inside the handler, with interrupts on, until the page is
/// ready; the CPU keeps serving interrupts meanwhile, and the wake of such a waiter sends its
/// CPU a reschedule IPI so that it leaves the halt. The test plays the host with a substitute
/// for the inline exits (the IPI is a WRMSR of the x2APIC ICR) and queues the #PFs itself.
/// </summary>
[TestFixture, Category("patch-10"), Description("Handle async PF in non preemptable context")]
public sealed class Patch10NonPreemptibleTests
{
    private const uint NotPresent = ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT;
    private const uint PageReady = ApfAbi.KVM_PV_REASON_PAGE_READY;

    private static ulong Reschedule(int cpu) => ((ulong)cpu << 32) | IrqVectors.RESCHEDULE_VECTOR;

    /// <summary>A guest whose init sleeps for good, so every CPU idles in HLT; returns once CPU <paramref name="cpu"/> is halted.</summary>
    private static GuestHwRig IdleGuest(GuestHwOptions options, int cpu)
    {
        var rig = new GuestHwRig(options);
        rig.Boot(async (r, _) => await r.Libc.Sleep(long.MaxValue / 4));
        rig.RunUntil(() => rig.Halted(cpu), 100 * Ms, $"CPU {cpu} idle");
        return rig;
    }

    [Test]
    public void KvmAsyncPfTaskWait_IdleTaskGetsNotPresent_HaltsInsideTheHandlerInsteadOfSleeping()
    {
        var rig = IdleGuest(new GuestHwOptions(), 0);
        var idle = rig.Guest.Runqueues[0].Idle;
        long switches = rig.Guest.Runqueues[0].NrSwitches;
        uint token = GuestHwRig.Token(1, 0);
        int mark = rig.Events.Count;
        rig.InjectAsyncPf(0, NotPresent, token);
        rig.RunUntil(() => rig.Drained(0) && rig.Halted(0), 10 * Ms, "the CPU halted again");
        var node = rig.SleepNodes().Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That((node.Token, node.Task, node.Halted), Is.EqualTo((token, (TaskStruct?)idle, true)), "a halted entry of the idle task");
            Assert.That(rig.ExitsAfter(0, mark).First(), Is.EqualTo(ExitReason.Hlt), "the CPU executed HLT");
            Assert.That(idle.Context!.ExceptionNesting, Is.EqualTo(1), "inside the #PF handler");
            Assert.That(rig.Cpus[0].InterruptsEnabled, Is.True, "with interrupts on (STI; HLT)");
            Assert.That(rig.Guest.Runqueues[0].NrSwitches, Is.EqualTo(switches), "no schedule(): the idle task cannot sleep");
            Assert.That(idle.State, Is.EqualTo(TaskStates.TASK_RUNNING));
        }
    }

    [Test]
    public void KvmAsyncPfTaskWait_HaltedForAPage_CpuStillServesInterrupts()
    {
        var rig = IdleGuest(new GuestHwOptions(), 0);
        var idle = rig.Guest.Runqueues[0].Idle;
        uint token = GuestHwRig.Token(1, 0);
        rig.InjectAsyncPf(0, NotPresent, token);
        rig.RunUntil(() => rig.Drained(0) && rig.Halted(0), 10 * Ms, "halted in the handler");
        long ticks = rig.Guest.LocalTimerInterrupts[0];
        int mark = rig.Events.Count;
        rig.RunFor(10 * Ms);
        var delivered = rig.Events.Skip(mark).Where(e => e.Cpu == 0 && e.Kind == HwEventKind.InterruptDelivered).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guest.LocalTimerInterrupts[0] - ticks, Is.InRange(9, 11), "the timer interrupts of 10 ms were handled");
            Assert.That(delivered.Select(e => (byte)e.Value), Is.All.EqualTo(IrqVectors.LOCAL_TIMER_VECTOR));
            Assert.That(rig.SleepNodes().Select(n => n.Token), Is.EqualTo(new[] { token }), "still waiting for the page");
            Assert.That(idle.Context!.ExceptionNesting, Is.EqualTo(1), "each interrupt returned into the handler, which halted again");
            Assert.That(rig.ExitsAfter(0, mark), Has.Member(ExitReason.Hlt));
            Assert.That(rig.Halted(0), Is.True);
        }
    }

    [Test]
    public void ApfTaskWakeOne_HaltedWaiter_SendsItsCpuARescheduleIpi()
    {
        var rig = IdleGuest(new GuestHwOptions(), 0);
        var idle = rig.Guest.Runqueues[0].Idle;
        uint token = GuestHwRig.Token(1, 0);
        rig.InjectAsyncPf(0, NotPresent, token);
        rig.RunUntil(() => rig.Drained(0) && rig.Halted(0), 10 * Ms, "halted in the handler");
        rig.Exits.ClearReceivedCalls();
        int mark = rig.Events.Count;
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => rig.SleepNodes().Count == 0 && idle.Context!.ExceptionNesting == 0, 10 * Ms, "the idle task left the handler");
        var after = rig.Events.Skip(mark).ToList();
        int ready = after.FindIndex(e => e.Kind == HwEventKind.ExceptionDelivered);
        int ipi = after.FindIndex(e => e.Kind == HwEventKind.Wrmsr && e.Address == X2Apic.MSR_X2APIC_ICR);
        int resched = after.FindIndex(e => e.Kind == HwEventKind.InterruptDelivered && e.Value == IrqVectors.RESCHEDULE_VECTOR);
        using (Assert.EnterMultipleScope())
        {
            rig.Exits.Received(1).WriteMsr(0, X2Apic.MSR_X2APIC_ICR, Reschedule(0));
            Assert.That(ready, Is.GreaterThanOrEqualTo(0));
            Assert.That(ipi, Is.GreaterThan(ready), "the wake sent the IPI");
            Assert.That(resched, Is.GreaterThan(ipi), "and the CPU took the reschedule interrupt");
        }
    }

    [Test]
    public void ApfTaskWakeOne_SleepingWaiter_IsWokenWithoutAnIpi()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var w = rig.BootWithSpinners(1)[0];
        uint token = GuestHwRig.Token(2, 0);
        rig.PutToSleep(w, token);
        var node = rig.SleepNodes().Single();
        rig.Exits.ClearReceivedCalls();
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => rig.Drained(0) && w.State == TaskStates.TASK_RUNNING, 10 * Ms, "woken");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(node.Halted, Is.False, "a user task can sleep");
            rig.Exits.DidNotReceive().WriteMsr(Arg.Any<int>(), X2Apic.MSR_X2APIC_ICR, Arg.Any<ulong>());
        }
    }

    [Test]
    public void ApfTaskWakeOne_HaltedWaiterOnAnotherCpu_TheIpiEndsItsHalt()
    {
        var (rig, idle1, mark) = WakeHaltedCpu1FromCpu0(userTaskRanOnCpu1First: true);
        AssertIpiEndedCpu1Halt(rig, idle1, mark);
    }

    [Test]
    public void ApfTaskWakeOne_HaltedIdleOfCpuThatNeverRanUserCode_TheIpiEndsItsHalt()
    {
        var (rig, idle1, mark) = WakeHaltedCpu1FromCpu0(userTaskRanOnCpu1First: false);
        AssertIpiEndedCpu1Halt(rig, idle1, mark);
    }

    /// <summary>
    /// Two idle CPUs and no APIC timer, so that nothing but an IPI can end CPU 1's halt: CPU 1's
    /// idle task halts for a page, then the page-ready for its token is handled on CPU 0.
    /// </summary>
    private static (GuestHwRig Rig, TaskStruct Idle1, int Mark) WakeHaltedCpu1FromCpu0(bool userTaskRanOnCpu1First)
    {
        var rig = new GuestHwRig(new GuestHwOptions { Cpus = 2, ApicTimer = false });
        bool stop = false;
        TaskStruct? visitor = null;
        rig.Boot(async (r, _) =>
        {
            if (userTaskRanOnCpu1First)
            {
                visitor = await r.Libc.PthreadCreate("visitor", t => GuestHwRig.Spin(t, () => stop));
            }
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        if (userTaskRanOnCpu1First)
        {
            rig.RunUntil(() => visitor is not null && rig.RunningInUserMode(visitor) == 1, 100 * Ms, "a user thread on CPU 1");
            stop = true;
        }
        rig.RunUntil(() => rig.Halted(0) && rig.Halted(1), 100 * Ms, "both CPUs idle");
        var idle1 = rig.Guest.Runqueues[1].Idle;
        uint token = GuestHwRig.Token(1, 1);
        rig.InjectAsyncPf(1, NotPresent, token);
        rig.RunUntil(() => rig.Drained(1) && rig.Halted(1), 10 * Ms, "CPU 1 halted in the handler");
        rig.RunFor(5 * Ms);
        Assert.That(idle1.Context!.ExceptionNesting == 1 && rig.Halted(1), Is.True, "without an interrupt CPU 1 stays halted in the handler");
        int mark = rig.Events.Count;
        rig.InjectAsyncPf(0, PageReady, token); // the wake runs on CPU 0
        rig.RunUntil(() => rig.Drained(0) && rig.Halted(0), 10 * Ms, "CPU 0 handled the page-ready");
        rig.RunFor(Ms);
        return (rig, idle1, mark);
    }

    private static void AssertIpiEndedCpu1Halt(GuestHwRig rig, TaskStruct idle1, int mark)
    {
        var after = rig.Events.Skip(mark).ToList();
        var ipis = after.Where(e => e.Kind == HwEventKind.Wrmsr && e.Address == X2Apic.MSR_X2APIC_ICR).ToList();
        var taken = after.Where(e => e.Cpu == 1 && e.Kind == HwEventKind.InterruptDelivered).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ipis.Select(e => (e.Cpu, e.Value)), Is.EqualTo(new[] { (0, Reschedule(1)) }), "CPU 0 sent CPU 1 a reschedule IPI");
            Assert.That(taken.Select(e => e.Value), Is.EqualTo(new[] { (ulong)IrqVectors.RESCHEDULE_VECTOR }), "CPU 1 took it");
            if (ipis.Count == 1 && taken.Count == 1)
            {
                Assert.That(taken[0].AtNs - ipis[0].AtNs, Is.LessThan(10 * Us), "at once");
            }
            Assert.That(idle1.Context!.ExceptionNesting, Is.Zero, "and CPU 1 left the handler");
            Assert.That(rig.SleepNodes(), Is.Empty);
            Assert.That(rig.Guest.LocalTimerInterrupts, Is.All.Zero, "no timer interrupt helped");
        }
    }

    [Test]
    public void KvmAsyncPfTaskWait_PreemptionDisabled_HaltsWithTheTaskStillCurrent()
    {
        var rig = new GuestHwRig(new GuestHwOptions { Preempt = true });
        TaskStruct? k = null;
        bool inSection = false;
        bool done = false;
        rig.Boot(async (r, _) =>
        {
            k = await r.Libc.PthreadCreate("k", async t =>
            {
                // A kernel path that holds a spinlock across some work (preempt_count 1).
                var lockInDriver = new Spinlock(r.Guest, "driver.lock");
                t.Context!.SyscallDepth++;
                lockInDriver.Lock();
                inSection = true;
                await t.Context.KernelCompute(20 * Ms);
                inSection = false;
                lockInDriver.Unlock();
                t.Context.SyscallDepth--;
                done = true;
            });
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        rig.RunUntil(() => inSection && rig.Cpus[0].InGuestMode && ReferenceEquals(rig.Cpus[0].Current, k!.Context), 100 * Ms, "k in its section");
        long switches = rig.Guest.Runqueues[0].NrSwitches;
        uint token = GuestHwRig.Token(4, 0);
        rig.InjectAsyncPf(0, NotPresent, token);
        rig.RunUntil(() => rig.Drained(0) && rig.Halted(0), 10 * Ms, "the CPU halted");
        var node = rig.SleepNodes().Single();
        var currentWhileHalted = rig.Cpus[0].Current;
        rig.RunFor(5 * Ms);
        long switchesWhileHalted = rig.Guest.Runqueues[0].NrSwitches;
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => done, 50 * Ms, "k finished its section");
        using (Assert.EnterMultipleScope())
        {
            Assert.That((node.Task, node.Halted), Is.EqualTo((k, true)), "k could not sleep, so it halts");
            Assert.That(currentWhileHalted, Is.SameAs(k!.Context), "the halted CPU still runs k");
            Assert.That(switchesWhileHalted, Is.EqualTo(switches), "no context switch");
            Assert.That(rig.SleepNodes(), Is.Empty);
            rig.Exits.Received(1).WriteMsr(0, X2Apic.MSR_X2APIC_ICR, Reschedule(0));
        }
    }
}
