using Hw;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The event loop against a reference model: a plain list searched for the least
/// (time, sequence) entry. A random script, the same for both, arms timers at delays from
/// zero to far beyond any internal window, re-arms and cancels them, and posts actions; the
/// loop runs it in random <see cref="EventLoop.Run"/> chunks. Both must fire the same events
/// at the same times in the same order.
/// </summary>
[TestFixture]
[Category("hw")]
public class EventLoopModelTests
{
    private const int Timers = 48;
    private const int FireBudget = 6_000;

    [TestCase(1UL)]
    [TestCase(2UL)]
    [TestCase(3UL)]
    [TestCase(4UL)]
    [TestCase(5UL)]
    public void Run_RandomScript_FiresLikeReferenceModel(ulong seed)
    {
        var expected = RunModel(new Script(seed));
        var actual = RunLoop(new Script(seed), new Rng(seed).Split("chunks"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(actual, Has.Count.GreaterThan(FireBudget));
            Assert.That(actual, Is.EqualTo(expected));
        }
    }

    private static List<(int Id, long Time)> RunLoop(Script script, Rng chunks)
    {
        var loop = new EventLoop();
        var log = new List<(int Id, long Time)>();
        var timers = new SimTimer[Timers];
        int nextPost = Timers;
        for (int i = 0; i < Timers; i++)
        {
            int id = i;
            timers[i] = new SimTimer(() => Fired(id));
        }
        foreach (var op in script.Start())
        {
            Apply(op);
        }
        while (loop.Pending > 0)
        {
            long step = chunks.NextBelow(4) switch
            {
                0 => 0,
                1 => (long)chunks.NextBelow(100),
                2 => (long)chunks.NextBelow(10_000),
                _ => (long)chunks.NextBelow(3_000_000),
            };
            loop.Run(loop.Now + step);
        }
        return log;

        void Fired(int id)
        {
            log.Add((id, loop.Now));
            foreach (var op in script.OnFire())
            {
                Apply(op);
            }
        }

        void Apply(Op op)
        {
            switch (op.Kind)
            {
                case OpKind.Arm:
                    loop.ArmAfter(timers[op.Target], op.Delay);
                    break;
                case OpKind.Cancel:
                    EventLoop.Cancel(timers[op.Target]);
                    break;
                case OpKind.Post:
                    int id = nextPost++;
                    loop.Post(() => Fired(id));
                    break;
            }
        }
    }

    private static List<(int Id, long Time)> RunModel(Script script)
    {
        var queue = new List<(long Time, long Seq, int Id, int Generation)>();
        var generation = new int[Timers];
        var log = new List<(int Id, long Time)>();
        long now = 0;
        long seq = 0;
        int nextPost = Timers;
        foreach (var op in script.Start())
        {
            Apply(op);
        }
        while (queue.Count > 0)
        {
            int best = 0;
            for (int i = 1; i < queue.Count; i++)
            {
                if (queue[i].Time < queue[best].Time || (queue[i].Time == queue[best].Time && queue[i].Seq < queue[best].Seq))
                {
                    best = i;
                }
            }
            var e = queue[best];
            queue.RemoveAt(best);
            now = e.Time;
            if (e.Id < Timers && e.Generation != generation[e.Id])
            {
                continue;
            }
            log.Add((e.Id, now));
            foreach (var op in script.OnFire())
            {
                Apply(op);
            }
        }
        return log;

        void Apply(Op op)
        {
            switch (op.Kind)
            {
                case OpKind.Arm:
                    queue.Add((now + op.Delay, seq++, op.Target, ++generation[op.Target]));
                    break;
                case OpKind.Cancel:
                    generation[op.Target]++;
                    break;
                case OpKind.Post:
                    queue.Add((now, seq++, nextPost++, 0));
                    break;
            }
        }
    }

    private enum OpKind
    {
        Arm,
        Cancel,
        Post,
    }

    private readonly record struct Op(OpKind Kind, int Target = 0, long Delay = 0);

    /// <summary>What each fired event does next; deterministic in the order it is asked.</summary>
    private sealed class Script(ulong seed)
    {
        private readonly Rng _rng = new Rng(seed).Split("script");
        private int _fired;

        public List<Op> Start()
        {
            var ops = new List<Op>();
            for (int i = 0; i < Timers; i++)
            {
                ops.Add(new Op(OpKind.Arm, i, Delay()));
            }
            ops.Add(new Op(OpKind.Post));
            return ops;
        }

        public List<Op> OnFire()
        {
            var ops = new List<Op>();
            if (++_fired > FireBudget)
            {
                return ops;
            }
            int arms = 1 + (int)_rng.NextBelow(2);
            for (int i = 0; i < arms; i++)
            {
                ops.Add(new Op(OpKind.Arm, (int)_rng.NextBelow(Timers), Delay()));
            }
            if (_rng.NextBelow(4) == 0)
            {
                ops.Add(new Op(OpKind.Post));
            }
            if (_rng.NextBelow(8) == 0)
            {
                ops.Add(new Op(OpKind.Cancel, (int)_rng.NextBelow(Timers)));
            }
            return ops;
        }

        /// <summary>Zero, short, around powers of two that a wheel might use as its span, and far.</summary>
        private long Delay() => _rng.NextBelow(6) switch
        {
            0 => 0,
            1 => (long)_rng.NextBelow(50),
            2 => (1L << (int)_rng.NextInRange(8, 16)) + _rng.NextInRange(-3, 3),
            3 => _rng.NextInRange(10_000, 1_000_000),
            4 => _rng.NextInRange(1_000_000, 50_000_000),
            _ => (long)_rng.NextBelow(5_000),
        };
    }
}
