using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 4: do_page_fault() first asks pv_cpu_ops.handle_pf, which a KVM guest points at
/// kvm_handle_pf(): read and clear the reason word of this CPU's area, then reason 1 puts the
/// current task to sleep on the token in CR2, reason 2 wakes the sleeper of that token (or
/// leaves a dummy entry when the wake came first; the token 0xffffffff wakes every sleeper of
/// this CPU), and reason 0 is an ordinary fault. The test plays the host: it writes the reason
/// at Kernel.ApfReasonGpa(cpu) and injects the #PF with the token in CR2.
/// </summary>
[TestFixture, Category("patch-04"), Description("Add \"handle page fault\" PV helper.")]
public sealed class Patch04HandlePageFaultHelperTests
{
    private const uint NotPresent = ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT;
    private const uint PageReady = ApfAbi.KVM_PV_REASON_PAGE_READY;

    [Test]
    public void KvmHandlePf_NotPresent_ReadsAndClearsReasonBeforeAnythingElse()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var w = rig.BootWithSpinners(1)[0];
        uint token = GuestHwRig.Token(1, 0);
        int mark = rig.Events.Count;
        rig.PutToSleep(w, token);
        ulong area = Kernel.ApfReasonGpa(0);
        var after = rig.Events.Skip(mark).ToList();
        int delivered = after.FindIndex(e => e.Kind == HwEventKind.ExceptionDelivered && e.Address == token);
        Assert.That(delivered, Is.GreaterThanOrEqualTo(0), "the #PF with the token was delivered");
        var hostWrite = after.Take(delivered).LastOrDefault(e => e.Kind == HwEventKind.HostWrite);
        var d = after[delivered];
        var reasonAccesses = after.Skip(delivered + 1).Where(e => e.Kind is HwEventKind.Read or HwEventKind.Write && e.Address == area).Take(2).ToList();
        Assert.That(reasonAccesses, Has.Count.EqualTo(2), "the handler read and wrote the reason word");
        var (read, clear) = (reasonAccesses[0], reasonAccesses[1]);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(hostWrite.Value, Is.EqualTo(NotPresent), "the host wrote reason 1 before the injection");
            Assert.That((read.Kind, read.Value), Is.EqualTo((HwEventKind.Read, (ulong)NotPresent)), "the handler read reason 1 first");
            Assert.That((clear.Kind, clear.Value), Is.EqualTo((HwEventKind.Write, 0UL)), "and cleared it next");
            Assert.That(read.MemAccesses, Is.EqualTo(d.MemAccesses + 1), "the read is the handler's first memory access: no walk, no fault before it");
            Assert.That(clear.MemAccesses, Is.EqualTo(read.MemAccesses + 1), "the clear is its second");
            Assert.That(read.AtNs, Is.EqualTo(d.AtNs), "no virtual time passed between delivery and the read: no interrupt could come in between");
            Assert.That(clear.AtNs, Is.EqualTo(d.AtNs));
            Assert.That(after.Skip(delivered + 1).TakeWhile(e => e != read).Where(e => e.Kind is HwEventKind.ExceptionDelivered or HwEventKind.InterruptDelivered), Is.Empty);
            Assert.That(rig.Ram.ReadU32(area), Is.Zero, "the word is 0 after the handler");
            Assert.That(rig.SleepNodes().Select(n => (n.Token, n.Task)), Is.EqualTo(new[] { (token, (TaskStruct?)w) }));
        }
    }

    [Test]
    public void KvmHandlePf_NotPresentThenPageReady_TaskSleepsThenResumesAndLeavesNoEntry()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var w = rig.BootWithSpinners(1)[0];
        uint token = GuestHwRig.Token(7, 0);
        rig.PutToSleep(w, token);
        long userAsleep = w.Context!.UserNs;
        rig.RunFor(5 * Ms);
        long userAfterWait = w.Context.UserNs;
        var resumes = rig.WatchResumes(w.Context);
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => resumes.Count > 0, 10 * Ms, "the sleeper resumed");
        rig.RunFor(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(userAfterWait, Is.EqualTo(userAsleep), "no user progress while asleep");
            Assert.That(rig.SleepNodes(), Is.Empty);
            Assert.That(w.State, Is.EqualTo(TaskStates.TASK_RUNNING));
            Assert.That(w.Context.UserNs, Is.GreaterThan(userAfterWait), "it runs again");
            Assert.That(rig.Ram.ReadU32(Kernel.ApfReasonGpa(0)), Is.Zero);
        }
    }

    [Test]
    public void KvmHandlePf_ReasonZero_FallsThroughToOrdinaryFault()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var (w, buffer) = BootSpinnerWithBuffer(rig);
        ulong address = buffer + (3 * Pgtable.PAGE_SIZE);
        long minFlt = w.MinFlt;
        ulong pteBefore = rig.GuestPte(w, address);
        rig.InjectPageFault(0, address, (uint)(PfErr.Write | PfErr.User));
        rig.RunUntil(() => rig.Drained(0) && w.MinFlt > minFlt, 10 * Ms, "the fault handled");
        rig.RunFor(Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(pteBefore, Is.Zero, "the page was not mapped before");
            Assert.That(Pgtable.PtePresent(rig.GuestPte(w, address)), Is.True, "do_page_fault mapped it");
            Assert.That(w.MinFlt, Is.EqualTo(minFlt + 1));
            Assert.That(rig.SleepNodes(), Is.Empty, "nobody sleeps on CR2 as a token");
            Assert.That(w.State, Is.EqualTo(TaskStates.TASK_RUNNING));
        }
    }

    [Test]
    public void DoPageFault_HostWithoutAsyncPf_IgnoresReasonWord()
    {
        var rig = new GuestHwRig(new GuestHwOptions { CpuidFeatures = GuestHwOptions.Features(ApfAbi.V3, asyncPf: false) });
        var (w, buffer) = BootSpinnerWithBuffer(rig);
        ulong area = Kernel.ApfReasonGpa(0);
        rig.Ram.WriteU32(area, NotPresent); // a stale word: async PF was never enabled on this CPU
        long minFlt = w.MinFlt;
        rig.InjectPageFault(0, buffer, (uint)(PfErr.Write | PfErr.User));
        rig.RunUntil(() => rig.Drained(0) && w.MinFlt > minFlt, 10 * Ms, "the fault handled");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Guest.AsyncPfSleepers, Is.Empty, "no sleeper hash without the feature");
            Assert.That(w.MinFlt, Is.EqualTo(minFlt + 1), "an ordinary fault");
            Assert.That(rig.Ram.ReadU32(area), Is.EqualTo(NotPresent), "native_handle_pf never looks at the word");
        }
    }

    [Test]
    public void KvmAsyncPfTaskWake_ReadyBeforeNotPresent_LeavesOneDummyAndTheWaitDoesNotSleep()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var w = rig.BootWithSpinners(1)[0];
        uint token = GuestHwRig.Token(3, 0);
        rig.RunUntil(() => rig.RunningInUserMode(w) == 0, 10 * Ms, "w runs");
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => rig.Drained(0) && rig.SleepNodes().Count > 0, 10 * Ms, "the early wake handled");
        var dummies = rig.SleepNodes().Select(n => (n.Token, n.Cpu, n.Mm, n.Task)).ToList();
        long switches = rig.Guest.Runqueues[0].NrSwitches;
        int mark = rig.Events.Count;
        rig.RunUntil(() => rig.RunningInUserMode(w) == 0, 10 * Ms, "w runs");
        rig.InjectAsyncPf(0, NotPresent, token);
        rig.RunUntil(() => rig.Drained(0) && rig.SleepNodes().Count == 0, 10 * Ms, "the not-present handled");
        long user = w.Context!.UserNs;
        rig.RunFor(2 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(dummies, Is.EqualTo(new[] { (token, 0, (MmStruct?)null, (TaskStruct?)null) }), "exactly one dummy entry, with no mm and no task");
            Assert.That(rig.SleepNodes(), Is.Empty, "the not-present consumed it");
            Assert.That(rig.Guest.Runqueues[0].NrSwitches, Is.EqualTo(switches), "the task never left the CPU");
            Assert.That(rig.ExitsAfter(0, mark), Has.No.Member(ExitReason.Hlt), "nor did the CPU halt");
            Assert.That(w.State, Is.EqualTo(TaskStates.TASK_RUNNING));
            Assert.That(w.Context.UserNs, Is.GreaterThan(user), "it retried and went on");
            Assert.That(rig.Guest.AsyncPfSleepers.Where(b => b.Lock.IsLocked).Select(b => b.Lock.Name), Is.Empty, "and the bucket's lock was dropped");
        }
    }

    [Test]
    public void KvmAsyncPfTaskWake_WakeAll_WakesEveryWaiterOfThisCpuOnly()
    {
        var rig = new GuestHwRig(new GuestHwOptions { Cpus = 2 });
        var tasks = rig.BootWithSpinners(4);
        var sleptOn = new Dictionary<TaskStruct, int>();
        for (int i = 0; i < tasks.Count; i++)
        {
            var t = tasks[i];
            rig.RunUntil(() => rig.RunningInUserMode(t) >= 0, 100 * Ms, $"{t} runs");
            int cpu = rig.RunningInUserMode(t);
            sleptOn[t] = rig.PutToSleep(t, GuestHwRig.Token((uint)i + 1, cpu));
        }
        var onCpu0 = tasks.Where(t => sleptOn[t] == 0).ToList();
        var onCpu1 = tasks.Where(t => sleptOn[t] == 1).ToList();
        Assert.That((onCpu0.Count, onCpu1.Count), Is.EqualTo((2, 2)), "fork balancing put two threads on each CPU");
        var nodes = rig.SleepNodes().ToList();
        int buckets = rig.Guest.AsyncPfSleepers.Count(b => b.List.Count > 0);
        rig.InjectAsyncPf(0, PageReady, ApfAbi.WakeAllToken);
        rig.RunUntil(() => rig.Drained(0) && onCpu0.All(t => t.State == TaskStates.TASK_RUNNING), 10 * Ms, "CPU 0's waiters woken");
        rig.RunFor(5 * Ms);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(nodes.Select(n => n.Cpu), Is.EquivalentTo(new[] { 0, 0, 1, 1 }));
            Assert.That(buckets, Is.EqualTo(4), "hash_32 put the four tokens in four buckets");
            Assert.That(rig.SleepNodes(), Is.EquivalentTo(nodes.Where(n => n.Cpu == 1)), "only CPU 1's entries are left");
            Assert.That(onCpu0.Select(t => t.State), Is.All.EqualTo(TaskStates.TASK_RUNNING));
            Assert.That(onCpu1.Select(t => t.State), Is.All.EqualTo(TaskStates.TASK_UNINTERRUPTIBLE), "CPU 1's waiters sleep on");
            Assert.That(onCpu1.Select(t => t.OnRq), Is.All.False);
        }
    }

    // ---- the page-ready's return path (page_fault in entry_64.S) -----------------------------

    /// <summary>
    /// One CPU: thread "s" and <paramref name="victim"/> share it until s is put to sleep on a
    /// token; the victim then runs alone for 20 ms, so the page-ready that wakes s finds the victim
    /// far ahead in vruntime and check_preempt_wakeup sets the victim's need_resched. The page-ready
    /// is injected once <paramref name="victimBusy"/> holds while the victim is current. Returns
    /// when s has run again.
    /// </summary>
    private static PageReadyWake WakeSleeperWhileVictimRuns(GuestHwRig rig, Func<TaskStruct?> victim, Func<bool> victimBusy)
    {
        TaskStruct? s = null;
        rig.RunUntil(() => (s = rig.Guest.Tasks.Find(t => t.Comm == "s")) is not null && victim() is not null, 100 * Ms, "threads created");
        uint token = GuestHwRig.Token(9, 0);
        rig.PutToSleep(s!, token);
        rig.RunFor(20 * Ms);
        var v = victim()!;
        rig.RunUntil(() => rig.Cpus[0].InGuestMode && ReferenceEquals(rig.Cpus[0].Current, v.Context) && victimBusy(), 20 * Ms, $"{v} busy");
        var resumes = rig.WatchResumes(s!.Context!);
        int mark = rig.Events.Count;
        rig.InjectAsyncPf(0, PageReady, token);
        rig.RunUntil(() => rig.Drained(0) && s.State == TaskStates.TASK_RUNNING, 10 * Ms, "the page-ready woke s");
        var currAfterHandler = rig.Guest.Runqueues[0].Curr;
        bool victimNeedResched = v.NeedResched;
        rig.RunUntil(() => resumes.Count > 0, 50 * Ms, "s ran again");
        var delivered = rig.Events.Skip(mark).First(e => e.Kind == HwEventKind.ExceptionDelivered && e.Address == token);
        return new PageReadyWake(delivered.AtNs, resumes[0], currAfterHandler, victimNeedResched);
    }

    private readonly record struct PageReadyWake(long DeliveredAt, long SleeperResumedAt, TaskStruct CurrAfterHandler, bool VictimNeedResched);

    [Test]
    public void PageFault_PageReadyInterruptsKernelThreadWithNeedResched_ReturnsToItWithoutScheduling()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var stretchEnds = new List<long>();
        long stretchStart = -1;
        TaskStruct? k = null;
        rig.Boot(async (r, _) =>
        {
            await r.Libc.PthreadCreate("s", t => GuestHwRig.Spin(t, () => false));
            // A kernel thread, so no syscall: kernel code in 5 ms stretches, each followed by cond_resched().
            k = r.Guest.DoFork("kthread", null, async t =>
            {
                while (true)
                {
                    stretchStart = r.Loop.Now;
                    await t.Context!.KernelCompute(5 * Ms);
                    stretchEnds.Add(r.Loop.Now);
                    if (t.NeedResched)
                    {
                        await r.Guest.Schedule();
                    }
                }
            });
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        var wake = WakeSleeperWhileVictimRuns(rig, () => k, () => k!.Context!.InKernelOperation && rig.Loop.Now - stretchStart is >= Ms and <= 2 * Ms);
        rig.RunUntil(() => stretchEnds.Exists(t => t >= wake.DeliveredAt), 50 * Ms, "the kernel thread's stretch ended");
        long stretchEnd = stretchEnds.Find(t => t >= wake.DeliveredAt);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(wake.CurrAfterHandler, Is.SameAs(k), "the handler returned to the kernel thread");
            Assert.That(wake.VictimNeedResched, Is.True, "with its need_resched still set: the wake asked for a reschedule");
            Assert.That(stretchEnd - wake.DeliveredAt, Is.GreaterThan(2 * Ms), "the #PF came in the middle of a stretch");
            Assert.That(wake.SleeperResumedAt, Is.GreaterThanOrEqualTo(stretchEnd),
                "s ran only once the kernel thread reached cond_resched(): a #PF that interrupted kernel code does not schedule on its way out");
        }
    }

    [Test]
    public void PageFault_PageReadyInterruptsUserCodeWithNeedResched_SchedulesOnReturnToUser()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        TaskStruct? u = null;
        rig.Boot(async (r, _) =>
        {
            await r.Libc.PthreadCreate("s", t => GuestHwRig.Spin(t, () => false));
            u = await r.Libc.PthreadCreate("u", t => GuestHwRig.Spin(t, () => false));
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        var wake = WakeSleeperWhileVictimRuns(rig, () => u, () => rig.RunningInUserMode(u!) == 0);
        var interrupts = rig.Events.Where(e => e.Kind == HwEventKind.InterruptDelivered && e.AtNs >= wake.DeliveredAt && e.AtNs <= wake.SleeperResumedAt);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(wake.CurrAfterHandler.Comm, Is.EqualTo("s"), "the return to user mode switched to the woken thread");
            Assert.That(wake.SleeperResumedAt - wake.DeliveredAt, Is.LessThan(10 * Us), "at once");
            Assert.That(interrupts, Is.Empty, "no tick or IPI did it instead");
        }
    }

    [Test]
    public void KvmAsyncPfTaskWait_TaskAsleepOnToken_IsNeverPickedUntilWoken()
    {
        var rig = new GuestHwRig(new GuestHwOptions());
        var tasks = rig.BootWithSpinners(2);
        var (sleeper, other) = (tasks[0], tasks[1]);
        uint token = GuestHwRig.Token(5, 0);
        rig.PutToSleep(sleeper, token);
        var resumes = rig.WatchResumes(sleeper.Context!);
        long otherBefore = other.Context!.UserNs;
        long from = rig.Loop.Now;
        rig.RunFor(30 * Ms);
        long window = rig.Loop.Now - from;
        int resumedWhileAsleep = resumes.Count;
        bool onRqWhileAsleep = sleeper.OnRq;
        long otherRan = other.Context.UserNs - otherBefore;
        rig.InjectAsyncPf(0, PageReady, token);
        long readyQueuedAt = rig.Loop.Now;
        rig.RunUntil(() => resumes.Count > 0, 30 * Ms, "the sleeper picked again");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(resumedWhileAsleep, Is.Zero, "the CPU never resumed the sleeper's code while it waited for the page");
            Assert.That(onRqWhileAsleep, Is.False, "it was not on the run queue");
            Assert.That(otherRan, Is.GreaterThan(window * 9 / 10), "the other thread had the CPU meanwhile");
            Assert.That(resumes[0], Is.GreaterThanOrEqualTo(readyQueuedAt), "picked only after the page-ready");
            Assert.That(sleeper.State, Is.EqualTo(TaskStates.TASK_RUNNING));
        }
    }

    /// <summary>Boots the guest with a 16-page heap buffer and one spinning thread, and runs until that thread is in user mode.</summary>
    private static (TaskStruct Spinner, ulong Buffer) BootSpinnerWithBuffer(GuestHwRig rig)
    {
        ulong buffer = 0;
        TaskStruct? w = null;
        rig.Boot(async (r, self) =>
        {
            buffer = await r.Libc.Malloc(16 * Pgtable.PAGE_SIZE);
            w = await r.Libc.PthreadCreate("w", t => GuestHwRig.Spin(t, () => false));
            await r.Libc.Sleep(long.MaxValue / 4);
        });
        rig.RunUntil(() => w is not null && rig.RunningInUserMode(w) == 0, 100 * Ms, "w runs");
        return (w!, buffer);
    }
}
