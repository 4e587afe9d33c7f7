using KvmApf.Tests.Rigs;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// Migration as the v3 cover letter handles it ("restarting all guest processes after
/// migration"): the destination has none of the source's outstanding async faults, and the
/// VMM's restore of the async PF MSR queues a wake-all on every vCPU. Migrating while bm's
/// threads sleep on tokens must wake every one of them, answer no old token afterwards, and let
/// bm finish with nothing asleep. Checked on the tracepoints of the run ([NonParallelizable]).
/// </summary>
[TestFixture, NonParallelizable, Category("scenario"), Description("Machine.Migrate wakes every task asleep on a token through a wake-all per vCPU")]
public sealed class MigrationTests
{
    private GuestTraceRecorder _trace = null!;

    [OneTimeSetUp]
    public void Listen() => _trace = new GuestTraceRecorder();

    [OneTimeTearDown]
    public void StopListening() => _trace.Dispose();

    private static bool EveryVcpuHasASleeper(Machine m) =>
        Enumerable.Range(0, m.Cpus.Length).All(cpu => m.Guest.AsyncPfSleepers.SelectMany(b => b.List).Any(n => n.Cpu == cpu && n.Task is not null));

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
