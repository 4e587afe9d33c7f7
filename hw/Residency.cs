namespace Hw;

/// <summary>Where a vCPU's time goes (the four columns of the bench contract's <c>vcpus[]</c>).</summary>
public enum VcpuState
{
    /// <summary>In the host handling an exit, not sleeping.</summary>
    Host,
    /// <summary>In guest mode.</summary>
    Guest,
    /// <summary>The vCPU thread asleep in the host waiting for a page.</summary>
    Stall,
    /// <summary>Halted: a guest <c>hlt</c>, or the host halting the vCPU for a page.</summary>
    Halt,
}

/// <summary>Time-in-state counters of one vCPU, in virtual ns.</summary>
public sealed class Residency(EventLoop loop)
{
    private readonly long[] _ns = new long[4];
    private long _since = loop.Now;

    public VcpuState State { get; private set; } = VcpuState.Host;

    /// <summary>Moves to <paramref name="state"/> now.</summary>
    public void Mark(VcpuState state)
    {
        _ns[(int)State] += loop.Now - _since;
        _since = loop.Now;
        State = state;
    }

    /// <summary>Time spent in <paramref name="state"/> since the last <see cref="Reset"/>, the current stretch included.</summary>
    public long this[VcpuState state] => _ns[(int)state] + (state == State ? loop.Now - _since : 0);

    /// <summary>Starts a measured interval.</summary>
    public void Reset()
    {
        Array.Clear(_ns);
        _since = loop.Now;
    }
}
