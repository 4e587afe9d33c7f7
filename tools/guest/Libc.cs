using Hw;
using Linux;

namespace KvmApf.Guest;

/// <summary>
/// glibc's random(): the TYPE_3 additive feedback generator (degree 31, separation 3) that
/// random() uses by default, seeded as srandom(1) seeds it, so the fault threads draw the
/// sequence a 2010 glibc would give them. One state shared by all threads, as in glibc (where
/// a lock serialises it; the lock's cost is part of the fault loop's cost).
/// </summary>
public sealed class GlibcRandom
{
    private const int Degree = 31;
    private const int Separation = 3;
    private readonly int[] _state = new int[Degree];
    private int _front = Separation;
    private int _rear;

    public GlibcRandom(uint seed = 1)
    {
        int word = seed == 0 ? 1 : (int)seed;
        _state[0] = word;
        for (int i = 1; i < Degree; i++)
        {
            int hi = word / 127773;
            int lo = word % 127773;
            word = (16807 * lo) - (2836 * hi);
            if (word < 0)
            {
                word += 2147483647;
            }
            _state[i] = word;
        }
        for (int i = 0; i < Degree * 10; i++)
        {
            Next();
        }
    }

    /// <summary>random(): the next value in [0, 2^31).</summary>
    public int Next()
    {
        unchecked
        {
            _state[_front] += _state[_rear];
            int result = (int)((uint)_state[_front] >> 1);
            if (++_front >= Degree)
            {
                _front = 0;
                _rear++;
            }
            else if (++_rear >= Degree)
            {
                _rear = 0;
            }
            return result;
        }
    }
}

/// <summary>pthread_barrier_t: a generation counter that waiters sleep on with futex.</summary>
public sealed class PthreadBarrier(int count)
{
    public int Count { get; } = count;

    internal int Waiting { get; set; }

    internal int Generation { get; set; }
}

/// <summary>The part of the C library the benchmark uses, as calls into the guest kernel.</summary>
public sealed class Libc(Kernel kernel)
{
    public Kernel Kernel { get; } = kernel;

    /// <summary>The process's random() state.</summary>
    public GlibcRandom Random { get; } = new();

    /// <summary>The calling thread.</summary>
    public TaskStruct Self => Kernel.Current;

    /// <summary>pthread_create().</summary>
    public SimTask<TaskStruct> PthreadCreate(string name, Func<TaskStruct, SimTask> start) => Kernel.SysClone(name, start);

    /// <summary>pthread_barrier_wait(): the last thread to arrive releases the others.</summary>
    public async SimTask PthreadBarrierWait(PthreadBarrier barrier)
    {
        ArgumentNullException.ThrowIfNull(barrier);
        barrier.Waiting++;
        if (barrier.Waiting == barrier.Count)
        {
            barrier.Waiting = 0;
            barrier.Generation++;
            await Kernel.SysFutexWake(barrier, int.MaxValue);
            return;
        }
        int generation = barrier.Generation;
        while (generation == barrier.Generation)
        {
            await Kernel.SysFutexWait(barrier, () => generation == barrier.Generation);
        }
    }

    /// <summary>malloc() of a large, page-aligned block (glibc uses mmap for it).</summary>
    public SimTask<ulong> Malloc(ulong bytes) => Kernel.SysMmap(bytes);

    /// <summary>sleep(), in nanoseconds.</summary>
    public SimTask Sleep(long ns) => Kernel.SysNanosleep(ns);

    /// <summary>printf() of one line.</summary>
    public SimTask Puts(string line) => Kernel.SysWrite(line);
}
