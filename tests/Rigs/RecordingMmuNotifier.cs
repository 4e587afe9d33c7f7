using Linux;

namespace KvmApf.Tests.Rigs;

/// <summary>An invalidation of one page of the VMM's mm, as a second secondary MMU saw it.</summary>
/// <param name="Hva">The host virtual address invalidated.</param>
/// <param name="AtNs">Virtual time of the invalidation.</param>
/// <param name="StillMapped">Whether KVM (registered first, so already called) still had an spte for the page.</param>
public readonly record struct Invalidation(ulong Hva, long AtNs, bool StillMapped);

/// <summary>
/// An MMU notifier registered after KVM's on the VMM's mm: it records each invalidation and
/// whether KVM's notifier, called just before it, left any spte of the page behind.
/// </summary>
public sealed class RecordingMmuNotifier(GuestRig rig) : IMmuNotifierOps
{
    private readonly List<Invalidation> _invalidations = [];

    public IReadOnlyList<Invalidation> Invalidations => _invalidations;

    /// <summary>Called at each invalidation, after it was recorded.</summary>
    public event Action<Invalidation>? Invalidated;

    public void InvalidatePage(MmStruct mm, ulong address) => Record(address);

    public void InvalidateRangeStart(MmStruct mm, ulong start, ulong end)
    {
        for (ulong a = start; a < end; a += Pgtable.PAGE_SIZE)
        {
            Record(a);
        }
    }

    public void InvalidateRangeEnd(MmStruct mm, ulong start, ulong end)
    {
    }

    public bool ClearFlushYoung(MmStruct mm, ulong address) => false;

    private void Record(ulong hva)
    {
        bool mapped = Kernel.HvaToGfn(rig.Vm, hva) is { } gfn && rig.SecondaryMapped(gfn);
        var inv = new Invalidation(hva, rig.Loop.Now, mapped);
        _invalidations.Add(inv);
        Invalidated?.Invoke(inv);
    }
}
