using Hw;

namespace KvmApf.Tests.Rigs;

/// <summary>
/// The guest's IDT as the host-side fixtures substitute it: <c>Substitute.For&lt;HostGuestGates&gt;()</c>.
/// </summary>
/// <remarks>
/// Unlike the other hardware interfaces, <see cref="IInterruptDescriptorTable"/> cannot be handed
/// to <c>Substitute.For</c> directly: its <see cref="IInterruptDescriptorTable.DeliveryFootprint"/>
/// takes a <see cref="Span{T}"/>, and the proxy Castle.Core 5.1.1 emits for a ref struct parameter
/// is an invalid program (InvalidProgramException at the first delivery). This adapter keeps
/// that one member out of the proxy and asks the substitutable <see cref="Footprint"/> instead;
/// the two gates the CPU delivers through are abstract, so NSubstitute records and answers them.
/// </remarks>
public abstract class HostGuestGates : IInterruptDescriptorTable
{
    /// <inheritdoc/>
    public abstract void DeliverInterrupt(X86Cpu cpu, byte vector);

    /// <inheritdoc/>
    public abstract SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode, int savedCpl);

    /// <summary>The guest-physical pages delivering an event on <paramref name="ctx"/> touches (none unless a fixture says so).</summary>
    public abstract IReadOnlyList<ulong> Footprint(X86Cpu cpu, GuestContext ctx);

    int IInterruptDescriptorTable.DeliveryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages)
    {
        var footprint = Footprint(cpu, ctx) ?? [];
        int n = Math.Min(footprint.Count, pages.Length);
        for (int i = 0; i < n; i++)
        {
            pages[i] = footprint[i];
        }
        return n;
    }
}
