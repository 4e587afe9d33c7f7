namespace Hw;

/// <summary>
/// Something the loop can fire at a point of virtual time. A timer that is re-armed or
/// cancelled bumps <see cref="Generation"/>, so an entry already in the queue for its old
/// arming is skipped when it comes up (the generation stamp of DESIGN section 2).
/// </summary>
public abstract class SimEvent
{
    /// <summary>Bumped on every arm and cancel; queue entries carry the value they were armed with.</summary>
    public uint Generation { get; private set; }

    /// <summary>Virtual time the event is armed for, or -1 when it is not armed.</summary>
    public long Expires { get; private set; } = -1;

    /// <summary>True while an arming is waiting in the queue.</summary>
    public bool Armed => Expires >= 0;

    internal uint Arm(long when)
    {
        Expires = when;
        return ++Generation;
    }

    internal void Disarm()
    {
        Expires = -1;
        Generation++;
    }

    internal void FireFromLoop(uint generation)
    {
        if (generation != Generation)
        {
            return;
        }
        Expires = -1;
        Fire();
    }

    /// <summary>Runs from the loop at the armed time.</summary>
    protected abstract void Fire();
}

/// <summary>
/// The one clock and the one queue of a simulated machine. Everything is ordered by
/// (time, sequence number); nothing reads wall time. Events due now are kept in a FIFO ring,
/// future ones in a 4-ary heap: an event in the heap due at <c>t</c> was queued before
/// time reached <c>t</c>, so its sequence number is lower than anything the FIFO holds at
/// <c>t</c>, and draining the heap first keeps the (time, sequence) order exact.
/// </summary>
public sealed class EventLoop
{
    private struct Entry
    {
        public long Time;
        public long Seq;
        public object Target;
        public uint Generation;
    }

    private Entry[] _heap = new Entry[256];
    private int _heapCount;
    private Entry[] _ring = new Entry[256];
    private int _ringHead;
    private int _ringCount;
    private long _seq;

    /// <summary>Virtual time in nanoseconds.</summary>
    public long Now { get; private set; }

    /// <summary>Events fired so far (cancelled entries are not counted).</summary>
    public long EventsProcessed { get; private set; }

    /// <summary>Set by <see cref="Stop"/>; <see cref="Run"/> returns at the next event boundary.</summary>
    public bool Stopping { get; private set; }

    /// <summary>Number of entries waiting, cancelled ones included.</summary>
    public int Pending => _heapCount + _ringCount;

    /// <summary>Runs <paramref name="continuation"/> from the loop at (now, next sequence number).</summary>
    public void Post(Action continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        PushRing(new Entry { Time = Now, Seq = _seq++, Target = continuation });
    }

    /// <summary>Arms <paramref name="ev"/> at absolute virtual time <paramref name="when"/>, replacing any earlier arming.</summary>
    public void Arm(SimEvent ev, long when)
    {
        ArgumentNullException.ThrowIfNull(ev);
        if (when < Now)
        {
            throw new ArgumentOutOfRangeException(nameof(when), when, $"cannot arm an event in the past (now {Now})");
        }
        var entry = new Entry { Time = when, Seq = _seq++, Target = ev, Generation = ev.Arm(when) };
        if (when == Now)
        {
            PushRing(entry);
        }
        else
        {
            PushHeap(entry);
        }
    }

    /// <summary>Arms <paramref name="ev"/> <paramref name="delay"/> ns from now.</summary>
    public void ArmAfter(SimEvent ev, long delay) => Arm(ev, Now + delay);

    /// <summary>Cancels the pending arming of <paramref name="ev"/>: it will not fire for it.</summary>
    public static void Cancel(SimEvent ev)
    {
        ArgumentNullException.ThrowIfNull(ev);
        ev.Disarm();
    }

    /// <summary>Makes <see cref="Run"/> return after the event that is running.</summary>
    public void Stop() => Stopping = true;

    /// <summary>Fires events in order until the queue is empty, <paramref name="until"/> is reached, or <see cref="Stop"/> is called.</summary>
    /// <returns>True if it stopped because of <paramref name="until"/> or <see cref="Stop"/>.</returns>
    public bool Run(long until = long.MaxValue)
    {
        Stopping = false;
        if (until < Now)
        {
            return true; // the bound has passed: nothing is due, and time never goes back
        }
        while (!Stopping)
        {
            Entry e;
            if (_heapCount > 0 && (_ringCount == 0 || _heap[0].Time <= Now))
            {
                if (_heap[0].Time > until)
                {
                    Now = until;
                    return true;
                }
                e = PopHeap();
                Now = e.Time;
            }
            else if (_ringCount > 0)
            {
                e = _ring[_ringHead];
                _ring[_ringHead].Target = null!;
                _ringHead = (_ringHead + 1) & (_ring.Length - 1);
                _ringCount--;
            }
            else
            {
                if (until != long.MaxValue)
                {
                    Now = until;
                }
                return false;
            }
            if (e.Target is SimEvent ev)
            {
                if (ev.Generation != e.Generation)
                {
                    continue;
                }
                EventsProcessed++;
                ev.FireFromLoop(e.Generation);
            }
            else
            {
                EventsProcessed++;
                ((Action)e.Target).Invoke();
            }
        }
        return true;
    }

    private void PushRing(Entry e)
    {
        if (_ringCount == _ring.Length)
        {
            var bigger = new Entry[_ring.Length * 2];
            for (int i = 0; i < _ringCount; i++)
            {
                bigger[i] = _ring[(_ringHead + i) & (_ring.Length - 1)];
            }
            _ring = bigger;
            _ringHead = 0;
        }
        _ring[(_ringHead + _ringCount) & (_ring.Length - 1)] = e;
        _ringCount++;
    }

    private static bool Before(in Entry a, in Entry b) => a.Time < b.Time || (a.Time == b.Time && a.Seq < b.Seq);

    private void PushHeap(Entry e)
    {
        if (_heapCount == _heap.Length)
        {
            Array.Resize(ref _heap, _heap.Length * 2);
        }
        int i = _heapCount++;
        while (i > 0)
        {
            int parent = (i - 1) >> 2;
            if (!Before(e, _heap[parent]))
            {
                break;
            }
            _heap[i] = _heap[parent];
            i = parent;
        }
        _heap[i] = e;
    }

    private Entry PopHeap()
    {
        Entry top = _heap[0];
        Entry last = _heap[--_heapCount];
        _heap[_heapCount].Target = null!;
        if (_heapCount > 0)
        {
            int i = 0;
            while (true)
            {
                int first = (i << 2) + 1;
                if (first >= _heapCount)
                {
                    break;
                }
                int best = first;
                int end = Math.Min(first + 4, _heapCount);
                for (int c = first + 1; c < end; c++)
                {
                    if (Before(_heap[c], _heap[best]))
                    {
                        best = c;
                    }
                }
                if (!Before(_heap[best], last))
                {
                    break;
                }
                _heap[i] = _heap[best];
                i = best;
            }
            _heap[i] = last;
        }
        return top;
    }
}

/// <summary>A reusable timer: a <see cref="SimEvent"/> that calls a delegate. Allocate once, arm many times.</summary>
public sealed class SimTimer(Action callback) : SimEvent
{
    protected override void Fire() => callback();
}
