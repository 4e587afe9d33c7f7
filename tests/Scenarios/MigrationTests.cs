using Hw;
using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// Migration as the v3 cover letter handles it ("restarting all guest processes after
/// migration"): the destination has none of the source's outstanding async faults, and the
/// VMM's restore of the async PF MSR queues a wake-all on every vCPU. Migrating while bm's
/// threads sleep on tokens must wake every one of them, answer no old token afterwards, and let
/// bm finish with nothing asleep. The vCPU's queued events migrate with it (KVM_GET/SET_VCPU_EVENTS,
/// as QEMU saves and restores them): an async PF #PF that the host had queued, its reason already
/// in the guest's area, still reaches the guest on the destination. Checked on the tracepoints of
/// the run ([NonParallelizable]).
/// </summary>
[TestFixture, NonParallelizable, Category("scenario"), Description("Machine.Migrate wakes every task asleep on a token through a wake-all per vCPU and keeps the events each vCPU had queued")]
public sealed class MigrationTests
{
    private GuestTraceRecorder _trace = null!;

    [OneTimeSetUp]
    public void Listen() => _trace = new GuestTraceRecorder();

    [OneTimeTearDown]
    public void StopListening() => _trace.Dispose();

    private static bool EveryVcpuHasASleeper(Machine m) =>
        Enumerable.Range(0, m.Cpus.Length).All(cpu => m.Guest.AsyncPfSleepers.SelectMany(b => b.List).Any(n => n.Cpu == cpu && n.Task is not null));

    /// <summary>The reason word of <paramref name="vcpu"/>'s async PF area, read through the VMM's mapping of guest RAM (0 if the page is not resident).</summary>
    private static uint ReasonWord(Machine m, KvmVcpu vcpu)
    {
        ulong gpa = vcpu.Arch.ApfData.Gpa;
        ulong hva = Kernel.GfnToHva(m.Vm!, gpa >> Pgtable.PAGE_SHIFT) + (gpa & (Pgtable.PAGE_SIZE - 1));
        ulong pte = m.VmmMm.PageTable.PeekPte(hva) ?? 0;
        return Pgtable.PtePresent(pte) ? m.Ram.ReadU32((Pgtable.PtePfn(pte) << Pgtable.PAGE_SHIFT) | (hva & (Pgtable.PAGE_SIZE - 1))) : 0;
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void MachineMigrate_NotPresentQueuedForReinjection_DestinationDeliversItBeforeTheWakeAll(PagingMode paging)
    {
        var run = new GuestBmRun(GuestBmRun.Small with { Paging = paging });
        var m = run.Machine;
        _trace.Record(m.Host.TraceRunId);
        run.RunUntil(() => run.StartNs >= 0);
        // A not-present whose delivery exited (the faulting task's kernel stack was on swap): the #PF
        // waits for re-injection while the vCPU thread swaps the stack in, its reason already written.
        KvmVcpu? vcpu = null;
        run.RunUntil(() => (vcpu = Array.Find(m.Vcpus, v => v.Arch.Exception is { Pending: true, Nr: Vectors.PageFault }
            && ReasonWord(m, v) == ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT)) is not null, GuestBmRun.Small.DurationNs / 2);
        var source = vcpu!.Arch.Exception;
        long token = (long)source.Address;
        long migratedAt = m.Loop.Now;
        m.Migrate();
        var destination = vcpu.Arch.Exception;
        run.RunToEnd();

        var trace = _trace.Events;
        var onCpu = trace.Where(e => e.Guest && e.Cpu == vcpu.VcpuId && e.TimeNs >= migratedAt).ToList();
        int taken = onCpu.FindIndex(e => e.Name is "apf_task_sleep" or "apf_cpu_halted" or "apf_dummy_consumed" && e.Token == token);
        int wakeAll = onCpu.FindIndex(e => e.Name == "apf_wake_all");
        TestContext.Out.WriteLine($"migrated at {migratedAt} ns with #PF token {token:x} queued on vcpu {vcpu.VcpuId} (re-injection: {source.Reinject})");
        using (Assert.EnterMultipleScope())
        {
            Assert.That((destination.Pending, destination.Nr, destination.HasErrorCode, destination.ErrorCode, destination.Address),
                Is.EqualTo((true, Vectors.PageFault, source.HasErrorCode, source.ErrorCode, source.Address)),
                "the destination vCPU has the #PF queued as the source had it");
            Assert.That(taken, Is.GreaterThanOrEqualTo(0), "the guest took the not-present whose reason the host had written before the migration");
            Assert.That(wakeAll, Is.GreaterThanOrEqualTo(0), "and the wake-all of the restored MSR");
            Assert.That(taken, Is.LessThan(wakeAll), "in that order, so the wake-all finds the task asleep on the token");
            Assert.That(trace.Where(e => e.Guest && e.Name is "apf_task_woken" or "apf_cpu_resumed" && e.Token == token && e.TimeNs >= migratedAt), Is.Not.Empty,
                "the wake-all woke it");
            // Not checked here: a fault that the destination starts before it has injected the
            // wake-all is answered twice, by the wake-all and by its own page-ready, which leaves the
            // guest a dummy entry (it happens in the shadow run, on the other vCPU).
            Assert.That(run.Finished, Is.True, "bm finished");
            Assert.That(GuestBmRun.SleepersNeverWoken(trace), Is.Empty, "no sleep without a wake");
            Assert.That(GuestBmRun.AreaProblems(m.Host, m.Vm!, m.VmmMm, m.Ram), Is.Empty, "every reason written was read");
        }
    }

    [TestCase(PagingMode.Tdp)]
    [TestCase(PagingMode.Shadow)]
    public void MachineMigrate_TasksAsleepOnTokens_WakeAllReachesEveryVcpuAndBmFinishes(PagingMode paging)
    {
        var run = new GuestBmRun(GuestBmRun.Small with { Paging = paging });
        var m = run.Machine;
        _trace.Record(m.Host.TraceRunId);
        run.RunUntil(() => run.StartNs >= 0);
        run.RunUntil(() => m.Loop.Now > run.StartNs + 20_000_000 && EveryVcpuHasASleeper(m), GuestBmRun.Small.DurationNs / 2);
        var asleep = m.Guest.AsyncPfSleepers.SelectMany(b => b.List).ToList();
        var oldTokens = asleep.Select(n => (long)n.Token).ToHashSet();
        long migratedAt = m.Loop.Now;
        long wakeAllsBefore = m.Host.ApfCounters.WakeAll;
        m.Migrate();
        run.RunToEnd();

        var trace = _trace.Events;
        var after = trace.Where(e => e.TimeNs >= migratedAt).ToList();
        var hostWakeAlls = after.Where(e => !e.Guest && e.Name == "kvm_async_pf_ready" && e.Token == ApfAbi.WakeAllToken).Select(e => e.Cpu).ToList();
        var guestWakeAlls = after.Where(e => e.Guest && e.Name == "apf_wake_all").ToList();
        var wokenAfter = after.Where(e => e.Guest && e.Name is "apf_task_woken" or "apf_cpu_resumed").Select(e => e.Token).ToHashSet();
        TestContext.Out.WriteLine($"migrated at {migratedAt} ns with {asleep.Count} asleep: "
            + string.Join(", ", asleep.Select(n => $"{n.Task} on cpu {n.Cpu} token {n.Token:x}{(n.Halted ? " halted" : "")}")));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(run.Finished, Is.True, "bm finished");
            Assert.That(m.Console.Lines, Has.Some.StartsWith("total:"));
            Assert.That(hostWakeAlls, Is.EquivalentTo(new[] { 0, 1 }), "the host sent one wake-all to each vCPU");
            Assert.That(m.Host.ApfCounters.WakeAll - wakeAllsBefore, Is.EqualTo(2), "and injected both");
            Assert.That(guestWakeAlls.Select(e => e.Cpu), Is.EquivalentTo(new[] { 0, 1 }), "each guest CPU handled one");
            Assert.That(guestWakeAlls.Sum(e => e.Woken), Is.GreaterThanOrEqualTo(asleep.Count), "waking every entry there was");
            Assert.That(asleep.Select(n => n.Hashed), Is.All.False, "every sleeper of the migration left the hash");
            Assert.That(asleep.Where(n => !wokenAfter.Contains(n.Token)).Select(n => n.Task), Is.Empty,
                "every task asleep at the migration woke up on its token");
            Assert.That(after.Where(e => !e.Guest && e.Name == "kvm_async_pf_ready" && oldTokens.Contains(e.Token)), Is.Empty,
                "no old token is answered on the destination");
            Assert.That(GuestBmRun.UnansweredNotPresents(trace), Is.Empty, "every not-present answered by its page-ready or the wake-all");
            Assert.That(GuestBmRun.SleepersNeverWoken(trace), Is.Empty, "no sleep without a wake");
            Assert.That(GuestBmRun.SleeperNodesLeft(m.Guest), Is.Empty, "nothing asleep at the end");
            Assert.That(after.Count(e => !e.Guest && e.Name == "kvm_async_pf_not_present"), Is.GreaterThan(0), "async PF goes on after the migration");
        }
    }
}
