using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The one clock and queue (hw/EventLoop.cs): exact (time, sequence) order whichever internal
/// queue an entry sits in, cancellation and re-arming through the generation stamp, and the
/// bounds of <see cref="EventLoop.Run"/>.
/// </summary>
[TestFixture]
[Category("hw")]
public class EventLoopTests
{
    private EventLoop _loop = null!;
    private List<string> _log = null!;

    [SetUp]
    public void SetUp()
    {
        _loop = new EventLoop();
        _log = [];
    }

    [Test]
    public void Post_SeveralAtSameTime_RunInPostOrder()
    {
        for (int i = 0; i < 300; i++)
        {
            int n = i;
            _loop.Post(() => _log.Add($"p{n}"));
        }

        _loop.Run();

        Assert.That(_log, Is.EqualTo(Enumerable.Range(0, 300).Select(i => $"p{i}")));
    }

    private static IEnumerable<TestCaseData> ArmOrders()
    {
        yield return new TestCaseData(new[] { 0, 1, 2, 3 }).SetArgDisplayNames("ascending");
        yield return new TestCaseData(new[] { 3, 2, 1, 0 }).SetArgDisplayNames("descending");
        yield return new TestCaseData(new[] { 2, 0, 3, 1 }).SetArgDisplayNames("shuffled");
    }

    [TestCaseSource(nameof(ArmOrders))]
    public void Arm_SeveralAtSameFutureTime_FireInArmOrder(int[] order)
    {
        var timers = Enumerable.Range(0, order.Length).Select(Logger).ToArray();
        foreach (int i in order)
        {
            _loop.Arm(timers[i], 100);
        }

        _loop.Run();

        Assert.That(_log, Is.EqualTo(order.Select(i => $"t{i}@100")));
    }

    /// <summary>Hundreds of timers over a few distinct times: the order must be a stable sort by time of the arm order.</summary>
    [TestCase(1UL)]
    [TestCase(2UL)]
    [TestCase(3UL)]
    public void Arm_ManyTimersWithTies_FireInTimeThenArmOrder(ulong seed)
    {
        var rng = new Rng(seed);
        var times = Enumerable.Range(0, 500).Select(_ => rng.NextInRange(1, 8) * 1000).ToArray();
        for (int i = 0; i < times.Length; i++)
        {
            _loop.Arm(Logger(i), times[i]);
        }

        _loop.Run();

        var expected = times.Select((t, i) => (t, i)).OrderBy(x => x.t).Select(x => $"t{x.i}@{x.t}");
        Assert.That(_log, Is.EqualTo(expected));
    }

    /// <summary>
    /// Timers armed in the past for time T were queued before anything posted or armed at T,
    /// so they run first; entries queued at T run after them in queue order.
    /// </summary>
    [Test]
    public void Run_EntriesArmedEarlierAndQueuedNowAtSameTime_RunInSequenceOrder()
    {
        var late = Logger("late-armed");
        _loop.Arm(new SimTimer(() =>
        {
            _log.Add($"first@{_loop.Now}");
            _loop.Post(() => _log.Add($"posted-by-first@{_loop.Now}"));
            _loop.Arm(late, _loop.Now);
            _loop.Post(() => _log.Add($"posted-after-arm@{_loop.Now}"));
        }), 10);
        _loop.Arm(new SimTimer(() =>
        {
            _log.Add($"second@{_loop.Now}");
            _loop.Post(() => _log.Add($"posted-by-second@{_loop.Now}"));
        }), 10);
        _loop.Arm(Logger("third"), 10);

        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[]
        {
            "first@10", "second@10", "third@10",
            "posted-by-first@10", "late-armed@10", "posted-after-arm@10", "posted-by-second@10",
        }));
    }

    [Test]
    public void Run_PostedEntriesAndLaterTimer_TimerWaitsForPostedWork()
    {
        _loop.Arm(Logger("timer"), 1);
        _loop.Post(() =>
        {
            _log.Add($"post@{_loop.Now}");
            _loop.Post(() => _log.Add($"chained@{_loop.Now}"));
        });

        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[] { "post@0", "chained@0", "timer@1" }));
    }

    [Test]
    public void Cancel_ArmedTimer_NeverFires()
    {
        var cancelled = Logger("cancelled");
        _loop.Arm(cancelled, 50);
        _loop.Arm(Logger("kept"), 60);

        EventLoop.Cancel(cancelled);
        bool armedAfterCancel = cancelled.Armed;
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(armedAfterCancel, Is.False);
            Assert.That(_log, Is.EqualTo(new[] { "kept@60" }));
            Assert.That(cancelled.Expires, Is.EqualTo(-1));
        }
    }

    [Test]
    public void Cancel_FromEarlierEventAtSameTime_TimerDoesNotFire()
    {
        var victim = Logger("victim");
        _loop.Arm(new SimTimer(() => EventLoop.Cancel(victim)), 10);
        _loop.Arm(victim, 10);

        _loop.Run();

        Assert.That(_log, Is.Empty);
    }

    [TestCase(100L, 50L)]
    [TestCase(50L, 100L)]
    [TestCase(70L, 70L)]
    public void Arm_ReArmedTimer_FiresOnceAtNewTime(long first, long second)
    {
        var timer = Logger("t");
        _loop.Arm(timer, first);

        _loop.Arm(timer, second);
        long expires = timer.Expires;
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(expires, Is.EqualTo(second));
            Assert.That(_log, Is.EqualTo(new[] { $"t@{second}" }));
            Assert.That(timer.Armed, Is.False);
        }
    }

    [Test]
    public void Arm_TimerReArmedFromItsOwnCallback_FiresAgain()
    {
        SimTimer? timer = null;
        timer = new SimTimer(() =>
        {
            _log.Add($"tick@{_loop.Now}");
            if (_loop.Now < 30)
            {
                _loop.ArmAfter(timer!, 10);
            }
        });
        _loop.ArmAfter(timer, 10);

        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[] { "tick@10", "tick@20", "tick@30" }));
    }

    [Test]
    public void ArmAfter_Delay_FiresAtNowPlusDelay()
    {
        _loop.Arm(new SimTimer(() => _loop.ArmAfter(Logger("after"), 25)), 100);

        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[] { "after@125" }));
    }

    [Test]
    public void Run_Until_StopsAtBoundAndSetsNow()
    {
        _loop.Arm(Logger("a"), 10);
        _loop.Arm(Logger("b"), 20);
        _loop.Arm(Logger("c"), 30);

        bool stopped = _loop.Run(25);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stopped, Is.True);
            Assert.That(_loop.Now, Is.EqualTo(25));
            Assert.That(_log, Is.EqualTo(new[] { "a@10", "b@20" }));
            Assert.That(_loop.Pending, Is.EqualTo(1));
        }
    }

    /// <summary>
    /// Runs bounded at the first event's time fire that event, not the next, and leave time
    /// there: a bound exactly at an event includes it, and a later bound below now does not move time back.
    /// </summary>
    [TestCase(20L, 21L, new long[] { 20 }, TestName = "Run_UntilExactlyAnEventTime_FiresThatEvent")]
    [TestCase(100L, 200L, new long[] { 100, 50 }, TestName = "Run_UntilBeforeNow_DoesNotMoveTimeBack")]
    public void Run_UntilAtMostTheFirstEvent_FiresOnlyItAndStaysAtItsTime(long firstAt, long secondAt, long[] bounds)
    {
        _loop.Arm(Logger("a"), firstAt);
        _loop.Arm(Logger("b"), secondAt);

        foreach (long until in bounds)
        {
            _loop.Run(until);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_log, Is.EqualTo(new[] { $"a@{firstAt}" }));
            Assert.That(_loop.Now, Is.EqualTo(firstAt));
        }
    }

    [Test]
    public void Run_UntilBeyondLastEvent_DrainsAndAdvancesToBound()
    {
        _loop.Arm(Logger("a"), 10);

        bool stopped = _loop.Run(1_000);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stopped, Is.False);
            Assert.That(_loop.Now, Is.EqualTo(1_000));
            Assert.That(_log, Is.EqualTo(new[] { "a@10" }));
        }
    }

    [Test]
    public void Run_CalledAgainAfterBound_ContinuesWhereItStopped()
    {
        _loop.Arm(Logger("a"), 10);
        _loop.Arm(Logger("b"), 30);
        _loop.Run(20);

        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_log, Is.EqualTo(new[] { "a@10", "b@30" }));
            Assert.That(_loop.Now, Is.EqualTo(30));
        }
    }

    private static IEnumerable<TestCaseData> FarTimesAndBounds()
    {
        for (int bits = 6; bits <= 20; bits += 2)
        {
            foreach (long offset in (long[])[-2, 0, 3])
            {
                foreach (long gap in (long[])[1, 7])
                {
                    long due = (1L << bits) + offset;
                    yield return new TestCaseData(due, due - gap).SetArgDisplayNames($"due {due}", $"bound {due - gap}");
                }
            }
        }
    }

    /// <summary>
    /// Something armed between two runs, after the clock stopped at a bound, for the same time as
    /// a timer armed long before (or just after it), still fires in sequence order and on time.
    /// </summary>
    [TestCaseSource(nameof(FarTimesAndBounds))]
    public void Arm_BetweenRunsAfterBound_KeepsOrderWithTimersArmedEarlier(long due, long bound)
    {
        _loop.Arm(Logger("early"), due);
        _loop.Run(bound);

        _loop.Arm(Logger("same-time"), due);
        _loop.Arm(Logger("after"), due + 1);
        _loop.Post(() => _log.Add($"posted@{_loop.Now}"));
        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[] { $"posted@{bound}", $"early@{due}", $"same-time@{due}", $"after@{due + 1}" }));
    }

    [Test]
    public void Stop_InsideEvent_RunReturnsAfterThatEvent()
    {
        _loop.Arm(new SimTimer(() =>
        {
            _log.Add("stopper");
            _loop.Stop();
        }), 10);
        _loop.Arm(Logger("same-time"), 10);
        _loop.Arm(Logger("later"), 20);

        bool stopped = _loop.Run();
        var logAtStop = _log.ToArray();
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stopped, Is.True);
            Assert.That(logAtStop, Is.EqualTo(new[] { "stopper" }));
            Assert.That(_log, Is.EqualTo(new[] { "stopper", "same-time@10", "later@20" }));
        }
    }

    [TestCase(0L, -1L)]
    [TestCase(100L, 99L)]
    [TestCase(100L, 0L)]
    public void Arm_InThePast_Throws(long now, long when)
    {
        _loop.Run(now);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => _loop.Arm(Logger("t"), when), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => _loop.ArmAfter(Logger("t"), when - now), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(_loop.Pending, Is.Zero);
        }
    }

    [Test]
    public void EventsProcessed_CancelledAndSupersededEntries_CountsFiredEventsOnly()
    {
        var cancelled = Logger("cancelled");
        var rearmed = Logger("rearmed");
        _loop.Arm(cancelled, 10);
        _loop.Arm(rearmed, 10);
        _loop.Arm(rearmed, 40);
        _loop.Arm(Logger("plain"), 20);
        _loop.Post(() => _log.Add("posted"));
        EventLoop.Cancel(cancelled);
        int pendingBeforeRun = _loop.Pending;

        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(pendingBeforeRun, Is.EqualTo(5), "cancelled and superseded entries stay queued until they come up");
            Assert.That(_loop.EventsProcessed, Is.EqualTo(3));
            Assert.That(_log, Has.Count.EqualTo(3));
            Assert.That(_loop.Pending, Is.Zero);
        }
    }

    [Test]
    public void Post_Null_Throws()
    {
        Assert.That(() => _loop.Post(null!), Throws.ArgumentNullException);
    }

    private SimTimer Logger(int index) => Logger($"t{index}");

    private SimTimer Logger(string name) => new(() => _log.Add($"{name}@{_loop.Now}"));
}
