using System.Numerics;
using System.Runtime.CompilerServices;

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
/// (time, sequence number); nothing reads wall time.
/// </summary>
/// <remarks>
/// Entries due within <see cref="WheelSpan"/> ns of now sit in a timing wheel with one slot per
/// nanosecond: a slot is a FIFO list, and since sequence numbers only grow, appending keeps each
/// slot in sequence order, so the wheel needs no comparisons at all. Posts are appends to the
/// slot of now. Entries due later wait in a binary heap ordered by (time, sequence) and move
/// into the wheel as soon as their time comes within the span, always before anything can be
/// appended to their slot directly (an append at time t needs t within the span of now, and by
/// then the heap holds nothing due before now + span): so every slot stays in sequence order
/// and the order of the whole queue is exactly (time, sequence). A two-level bitmap finds the
/// next non-empty slot.
/// </remarks>
public sealed class EventLoop
{
    private const int WheelBits = 12;
    private const int WheelSpan = 1 << WheelBits;
    private const int WheelMask = WheelSpan - 1;

    /// <summary>A queued entry in the wheel: a node of a slot's singly linked FIFO.</summary>
    private struct Node
    {
        public object? Target;
        public uint Generation;
        public int Next;
    }

    /// <summary>Head and tail node of one wheel slot, or -1.</summary>
    private struct Slot
    {
        public int Head;
        public int Tail;
    }

    /// <summary>An entry due beyond the wheel's span.</summary>
    private struct FarEntry
    {
        public long Time;
        public long Seq;
        public object Target;
        public uint Generation;
    }

    private readonly Slot[] _slots = new Slot[WheelSpan];
    private readonly ulong[] _occupied = new ulong[WheelSpan / 64];
    private ulong _occupiedWords;
    private Node[] _nodes = new Node[1024];
    private int _freeNode;
    private int _wheelCount;
    private FarEntry[] _far = new FarEntry[64];
    private int _farCount;
    private long _farSeq;

    public EventLoop()
    {
        _slots.AsSpan().Fill(new Slot { Head = -1, Tail = -1 });
        ChainFreeNodes(0);
    }

    /// <summary>Virtual time in nanoseconds.</summary>
    public long Now { get; private set; }

    /// <summary>Events fired so far (cancelled entries are not counted).</summary>
    public long EventsProcessed { get; private set; }

    /// <summary>Set by <see cref="Stop"/>; <see cref="Run"/> returns at the next event boundary.</summary>
    public bool Stopping { get; private set; }

    /// <summary>Number of entries waiting, cancelled ones included.</summary>
    public int Pending => _wheelCount + _farCount;

    /// <summary>Runs <paramref name="continuation"/> from the loop at (now, next sequence number).</summary>
    public void Post(Action continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        Append((int)(Now & WheelMask), continuation, 0);
    }

    /// <summary>Arms <paramref name="ev"/> at absolute virtual time <paramref name="when"/>, replacing any earlier arming.</summary>
    public void Arm(SimEvent ev, long when)
    {
        ArgumentNullException.ThrowIfNull(ev);
        if (when < Now)
        {
            throw new ArgumentOutOfRangeException(nameof(when), when, $"cannot arm an event in the past (now {Now})");
        }
        uint generation = ev.Arm(when);
        if (when - Now < WheelSpan)
        {
            Append((int)(when & WheelMask), ev, generation);
        }
        else
        {
            PushFar(new FarEntry { Time = when, Seq = _farSeq++, Target = ev, Generation = generation });
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
            int slot = (int)(Now & WheelMask);
            int index = _slots[slot].Head;
            if (index < 0)
            {
                long next = NextTime();
                if (next < 0)
                {
                    if (until != long.MaxValue)
                    {
                        AdvanceTo(until);
                    }
                    return false;
                }
                if (next > until)
                {
                    AdvanceTo(until);
                    return true;
                }
                AdvanceTo(next);
                continue;
            }
            ref Node node = ref _nodes[index];
            object target = node.Target!;
            uint generation = node.Generation;
            int following = node.Next;
            node.Target = null;
            node.Next = _freeNode;
            _freeNode = index;
            _wheelCount--;
            _slots[slot].Head = following;
            if (following < 0)
            {
                _slots[slot].Tail = -1;
                ClearOccupied(slot);
            }
            if (target.GetType() == typeof(Action))
            {
                EventsProcessed++;
                Unsafe.As<Action>(target).Invoke();
            }
            else
            {
                var ev = Unsafe.As<SimEvent>(target);
                if (ev.Generation != generation)
                {
                    continue;
                }
                EventsProcessed++;
                ev.FireFromLoop(generation);
            }
        }
        return true;
    }

    private void Append(int slot, object target, uint generation)
    {
        int index = _freeNode;
        if (index < 0)
        {
            index = GrowNodes();
        }
        ref Node node = ref _nodes[index];
        _freeNode = node.Next;
        node.Target = target;
        node.Generation = generation;
        node.Next = -1;
        _wheelCount++;
        ref Slot s = ref _slots[slot];
        if (s.Tail < 0)
        {
            s.Head = index;
            _occupied[slot >> 6] |= 1UL << slot;
            _occupiedWords |= 1UL << (slot >> 6);
        }
        else
        {
            _nodes[s.Tail].Next = index;
        }
        s.Tail = index;
    }

    private int GrowNodes()
    {
        int old = _nodes.Length;
        Array.Resize(ref _nodes, old * 2);
        ChainFreeNodes(old);
        return _freeNode;
    }

    private void ChainFreeNodes(int from)
    {
        for (int i = from; i < _nodes.Length - 1; i++)
        {
            _nodes[i].Next = i + 1;
        }
        _nodes[^1].Next = -1;
        _freeNode = from;
    }

    private void ClearOccupied(int slot)
    {
        ref ulong word = ref _occupied[slot >> 6];
        word &= ~(1UL << slot);
        if (word == 0)
        {
            _occupiedWords &= ~(1UL << (slot >> 6));
        }
    }

    /// <summary>The time of the earliest entry, or -1 if there is none. Called when the slot of now is empty.</summary>
    private long NextTime()
    {
        if (_wheelCount > 0)
        {
            int from = (int)(Now & WheelMask);
            int slot = NextOccupied(from);
            return Now + ((slot - from) & WheelMask);
        }
        return _farCount > 0 ? _far[0].Time : -1;
    }

    /// <summary>The first occupied slot at or after <paramref name="from"/>, going round the wheel; the wheel is not empty.</summary>
    private int NextOccupied(int from)
    {
        int w = from >> 6;
        ulong bits = _occupied[w] & (~0UL << from);
        if (bits != 0)
        {
            return (w << 6) | BitOperations.TrailingZeroCount(bits);
        }
        ulong words = w == 63 ? 0 : _occupiedWords & (~0UL << (w + 1));
        if (words == 0)
        {
            // Wrap round: what is left is in words 0..w (in word w, only below from).
            words = _occupiedWords;
        }
        int first = BitOperations.TrailingZeroCount(words);
        return (first << 6) | BitOperations.TrailingZeroCount(_occupied[first]);
    }

    /// <summary>Moves the clock to <paramref name="time"/> and brings the far entries now within the span into the wheel.</summary>
    private void AdvanceTo(long time)
    {
        Now = time;
        while (_farCount > 0 && _far[0].Time - time < WheelSpan)
        {
            FarEntry e = PopFar();
            Append((int)(e.Time & WheelMask), e.Target, e.Generation);
        }
    }

    private static bool Before(in FarEntry a, in FarEntry b) => a.Time < b.Time || (a.Time == b.Time && a.Seq < b.Seq);

    private void PushFar(FarEntry e)
    {
        if (_farCount == _far.Length)
        {
            Array.Resize(ref _far, _far.Length * 2);
        }
        int i = _farCount++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Before(e, _far[parent]))
            {
                break;
            }
            _far[i] = _far[parent];
            i = parent;
        }
        _far[i] = e;
    }

    private FarEntry PopFar()
    {
        FarEntry top = _far[0];
        FarEntry last = _far[--_farCount];
        _far[_farCount] = default;
        if (_farCount > 0)
        {
            int i = 0;
            while (true)
            {
                int child = (i << 1) + 1;
                if (child >= _farCount)
                {
                    break;
                }
                if (child + 1 < _farCount && Before(_far[child + 1], _far[child]))
                {
                    child++;
                }
                if (!Before(_far[child], last))
                {
                    break;
                }
                _far[i] = _far[child];
                i = child;
            }
            _far[i] = last;
        }
        return top;
    }
}

/// <summary>A reusable timer: a <see cref="SimEvent"/> that calls a delegate. Allocate once, arm many times.</summary>
public sealed class SimTimer(Action callback) : SimEvent
{
    protected override void Fire() => callback();
}
