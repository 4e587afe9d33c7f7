using Hw;

namespace KvmApf.EngineBench;

/// <summary>
/// A reusable timed sleep built from the hardware's parts: a <see cref="SimTimer"/> whose
/// firing sets a <see cref="SimSignal"/>, so the sleeper resumes from the loop, as any wake
/// from outside does. Allocates nothing per sleep. The tests compile this file too (tests/Tests.csproj),
/// so that the allocation tests of SimTask sleep exactly as the benchmark does.
/// </summary>
internal sealed class Sleeper
{
    private readonly EventLoop _loop;
    private readonly SimSignal _signal;
    private readonly SimTimer _timer;

    public Sleeper(EventLoop loop)
    {
        _loop = loop;
        _signal = new SimSignal(loop);
        _timer = new SimTimer(_signal.Set);
    }

    public SimTask Delay(long ns)
    {
        var task = _signal.Wait();
        _loop.ArmAfter(_timer, ns);
        return task;
    }
}
