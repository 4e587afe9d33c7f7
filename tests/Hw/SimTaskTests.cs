using Hw;
using KvmApf.EngineBench;

namespace KvmApf.Tests.Hw;

/// <summary>
/// Sleeping is <c>await</c> (hw/SimTask.cs, hw/SimSignal.cs): results through nested async
/// methods, a child resuming its parent inline, a wake from outside resuming the sleeper from
/// the loop, one await per task, exceptions, and no allocation per suspension once warm.
/// </summary>
[TestFixture]
[Category("hw")]
public class SimTaskTests
{
    private EventLoop _loop = null!;
    private Sleeper _sleeper = null!;
    private List<string> _log = null!;

    [SetUp]
    public void SetUp()
    {
        _loop = new EventLoop();
        _sleeper = new Sleeper(_loop);
        _log = [];
    }

    [Test]
    public void Await_NestedAsyncMethodsOverSignal_ProduceResultsInOrder()
    {
        var signal = new SimSignal<int>(_loop);
        _loop.Arm(new SimTimer(() =>
        {
            _log.Add($"set@{_loop.Now}");
            signal.Set(21);
        }), 100);

        Outer().Forget();
        _log.Add("caller continues");
        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[]
        {
            "outer start", "middle start", "inner start", "caller continues",
            "set@100", "inner got 21@100", "middle got 22@100", "outer got 44@100",
        }));

        async SimTask Outer()
        {
            _log.Add("outer start");
            int value = await Middle();
            _log.Add($"outer got {value}@{_loop.Now}");
        }

        async SimTask<int> Middle()
        {
            _log.Add("middle start");
            int value = await Inner();
            _log.Add($"middle got {value}@{_loop.Now}");
            return value * 2;
        }

        async SimTask<int> Inner()
        {
            _log.Add("inner start");
            int value = await signal.Wait();
            _log.Add($"inner got {value}@{_loop.Now}");
            return value + 1;
        }
    }

    [Test]
    public void Await_ChildThatNeverSuspends_CompletesWithoutTheLoop()
    {
        int? result = null;

        Parent().Forget();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result, Is.EqualTo(7));
            Assert.That(_loop.Pending, Is.Zero);
        }

        async SimTask Parent() => result = await Child(3) + await Child(2);

        async SimTask<int> Child(int x)
        {
            if (x < 0)
            {
                await _sleeper.Delay(1);
            }
            return x + 1;
        }
    }

    /// <summary>
    /// A child's completion resumes its parent inline: the parent runs inside the event that
    /// completed the child, before anything that event queued (DESIGN section 2).
    /// </summary>
    [Test]
    public void Await_ChildCompletes_ParentResumesInlineInSameEvent()
    {
        Parent().Forget();

        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_log, Is.EqualTo(new[] { "child done@5", "parent resumed@5", "queued by child@5" }));
            Assert.That(_loop.EventsProcessed, Is.EqualTo(3), "timer, the sleeper's wake, the child's post");
        }

        async SimTask Parent()
        {
            await Child();
            _log.Add($"parent resumed@{_loop.Now}");
        }

        async SimTask Child()
        {
            await _sleeper.Delay(5);
            _loop.Post(() => _log.Add($"queued by child@{_loop.Now}"));
            _log.Add($"child done@{_loop.Now}");
        }
    }

    /// <summary>
    /// A wake from outside never runs the sleeper inside the waker: Set queues the continuation
    /// at (now, next sequence number), after what was already queued for that time.
    /// </summary>
    [Test]
    public void Set_FromAnotherEvent_WaiterResumesLaterFromLoopAtSameTime()
    {
        var signal = new SimSignal(_loop);
        _loop.Arm(new SimTimer(() =>
        {
            _log.Add($"waker before set@{_loop.Now}");
            signal.Set();
            _log.Add($"waker after set, waiting={signal.Waiting}");
            _loop.Post(() => _log.Add($"posted by waker after set@{_loop.Now}"));
        }), 10);
        _loop.Arm(new SimTimer(() => _log.Add($"timer armed earlier for the same time@{_loop.Now}")), 10);

        Waiter().Forget();
        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[]
        {
            "waiter waits",
            "waker before set@10",
            "waker after set, waiting=False",
            "timer armed earlier for the same time@10",
            "waiter resumed@10",
            "posted by waker after set@10",
        }));

        async SimTask Waiter()
        {
            _log.Add("waiter waits");
            await signal.Wait();
            _log.Add($"waiter resumed@{_loop.Now}");
        }
    }

    [Test]
    public void Set_WithNoWaiter_Throws()
    {
        var signal = new SimSignal<int>(_loop);

        Assert.That(() => signal.Set(1), Throws.InvalidOperationException);
    }

    [Test]
    public void Wait_SecondWaiterOnSameSignal_Throws()
    {
        var signal = new SimSignal(_loop);
        signal.Wait();

        Assert.That(() => signal.Wait(), Throws.InvalidOperationException);
    }

    /// <summary>
    /// Between Set and the woken waiter consuming its value the signal still belongs to that
    /// waiter: a second Wait in that window must not take the value from it.
    /// </summary>
    [Test]
    public void Wait_AgainBeforeWokenWaiterConsumedValue_Throws()
    {
        var signal = new SimSignal<int>(_loop);
        Exception? secondWait = null;
        _loop.Arm(new SimTimer(() =>
        {
            signal.Set(1);
            try
            {
                signal.Wait();
            }
            catch (InvalidOperationException e)
            {
                secondWait = e;
            }
        }), 10);

        Waiter().Forget();
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(secondWait, Is.InstanceOf<InvalidOperationException>());
            Assert.That(_log, Is.EqualTo(new[] { "waiter got 1@10" }));
        }

        async SimTask Waiter() => _log.Add($"waiter got {await signal.Wait()}@{_loop.Now}");
    }

    [Test]
    public void Wait_SignalReusedAfterResultConsumed_DeliversEachValue()
    {
        var signal = new SimSignal<int>(_loop);
        var values = new List<int>();
        for (int t = 1; t <= 3; t++)
        {
            _loop.Arm(new SimTimer(() => signal.Set((int)_loop.Now)), t * 10);
        }

        Receiver().Forget();
        _loop.Run();

        Assert.That(values, Is.EqualTo(new[] { 10, 20, 30 }));

        async SimTask Receiver()
        {
            for (int i = 0; i < 3; i++)
            {
                values.Add(await signal.Wait());
            }
        }
    }

    [Test]
    public void Await_SameTaskTwiceWhilePending_Throws()
    {
        var task = Sleep(10);
        task.GetAwaiter().OnCompleted(() => { });

        Assert.That(() => task.GetAwaiter().OnCompleted(() => { }), Throws.InvalidOperationException);
    }

    [Test]
    public void Await_SameAsyncMethodTaskAfterItCompleted_Throws()
    {
        AssertSecondAwaitThrows(SleepThenReturn(10, 5), firstResult: 5);
    }

    [Test]
    public void Await_SameSignalTaskAfterItCompleted_Throws()
    {
        var signal = new SimSignal<int>(_loop);
        var task = signal.Wait();
        _loop.Arm(new SimTimer(() => signal.Set(9)), 10);

        AssertSecondAwaitThrows(task, firstResult: 9);
    }

    /// <summary>An exception thrown before or after the first suspension reaches the awaiter, through an intermediate method.</summary>
    [TestCase(true, 0L)]
    [TestCase(false, 5L)]
    public void Await_MethodThrows_ExceptionPropagatesToAwaiter(bool beforeFirstSuspension, long expectedTime)
    {
        Catcher().Forget();
        _loop.Run();

        Assert.That(_log, Is.EqualTo(new[] { $"caught boom-int and boom-void@{expectedTime}" }));

        async SimTask Catcher()
        {
            string first = "none";
            string second = "none";
            try
            {
                await Middle();
            }
            catch (BoomException e)
            {
                first = e.Message;
            }
            try
            {
                await FaultyVoid(beforeFirstSuspension);
            }
            catch (BoomException e)
            {
                second = e.Message;
            }
            _log.Add($"caught {first} and {second}@{_loop.Now}");
        }

        async SimTask<int> Middle() => await FaultyInt(beforeFirstSuspension) + 1;
    }

    [Test]
    public void Forget_TopLevelCoroutineFaultsAfterSuspending_RunThrows()
    {
        TopLevel().Forget();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => _loop.Run(), Throws.TypeOf<BoomException>().With.Message.EqualTo("top"));
            Assert.That(_loop.Now, Is.EqualTo(10));
        }

        async SimTask TopLevel()
        {
            await _sleeper.Delay(10);
            throw new BoomException("top");
        }
    }

    [Test]
    public void Forget_TopLevelCoroutineWithResultFaults_RunThrows()
    {
        FaultyInt(beforeFirstSuspension: false).Forget();

        Assert.That(() => _loop.Run(), Throws.TypeOf<BoomException>());
    }

    [Test]
    public void Forget_CoroutineFaultsBeforeSuspending_ThrowsAtOnce()
    {
        Assert.That(() => FaultyVoid(beforeFirstSuspension: true).Forget(), Throws.TypeOf<BoomException>());
    }

    /// <summary>
    /// Zero allocation per suspension once warm (DESIGN section 2): 1,000 coroutines, each
    /// awaiting two nested async calls over a timer-and-signal sleep.
    /// </summary>
    [Test]
    public void Run_ThousandWarmCoroutinesWithNestedCalls_AllocatesNothingPerEvent()
    {
        var root = new Rng(5);
        var coroutines = Enumerable.Range(0, 1_000).Select(i => new WarmCoroutine(_loop, root.Split($"coroutine-{i}"))).ToArray();
        foreach (var coroutine in coroutines)
        {
            coroutine.Run().Forget();
        }
        RunEvents(200_000);

        long eventsBefore = _loop.EventsProcessed;
        long bytesBefore = GC.GetAllocatedBytesForCurrentThread();
        RunEvents(1_000_000);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - bytesBefore;
        long events = _loop.EventsProcessed - eventsBefore;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(events, Is.GreaterThanOrEqualTo(1_000_000));
            Assert.That(coroutines.Select(c => c.Iterations), Has.All.GreaterThan(100));
            Assert.That((double)bytes / events, Is.LessThan(1.0), $"{bytes} bytes over {events} events");
        }
    }

    /// <summary>Awaits <paramref name="task"/> twice from one coroutine: the first await gets <paramref name="firstResult"/>, the second throws.</summary>
    private void AssertSecondAwaitThrows(SimTask<int> task, int firstResult)
    {
        Exception? caught = null;

        Twice().Forget();
        _loop.Run();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(_log, Is.EqualTo(new[] { $"first await got {firstResult}" }));
            Assert.That(caught, Is.InstanceOf<InvalidOperationException>());
        }

        async SimTask Twice()
        {
            _log.Add($"first await got {await task}");
            try
            {
                _log.Add($"second await got {await task}");
            }
            catch (InvalidOperationException e)
            {
                caught = e;
            }
        }
    }

    private void RunEvents(long count)
    {
        long target = _loop.EventsProcessed + count;
        while (_loop.EventsProcessed < target)
        {
            _loop.Run(_loop.Now + 1_000);
        }
    }

    private async SimTask Sleep(long ns) => await _sleeper.Delay(ns);

    private async SimTask<int> SleepThenReturn(long ns, int value)
    {
        await _sleeper.Delay(ns);
        return value;
    }

    private async SimTask<int> FaultyInt(bool beforeFirstSuspension)
    {
        if (beforeFirstSuspension)
        {
            throw new BoomException("boom-int");
        }
        await _sleeper.Delay(5);
        throw new BoomException("boom-int");
    }

    private async SimTask FaultyVoid(bool beforeFirstSuspension)
    {
        if (beforeFirstSuspension)
        {
            throw new BoomException("boom-void");
        }
        await _sleeper.Delay(0);
        throw new BoomException("boom-void");
    }

    private sealed class BoomException(string message) : Exception(message);
}
