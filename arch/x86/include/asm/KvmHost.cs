using Hw;

namespace Linux;

/// <summary>arch/x86/include/asm/kvm_host.h: an exception queued for injection.</summary>
public struct KvmQueuedException
{
    public bool Pending;
    public byte Nr;
    public bool HasErrorCode;
    public uint ErrorCode;
    /// <summary>The exception was being delivered when the CPU exited: re-inject as it was.</summary>
    public bool Reinject;
    /// <summary>CR2 to load with a #PF.</summary>
    public ulong Address;
}

/// <summary>arch/x86/include/asm/kvm_host.h: an interrupt queued for injection.</summary>
public struct KvmQueuedInterrupt
{
    public bool Pending;
    public byte Nr;
}

/// <summary>arch/x86/include/asm/kvm_host.h: struct kvm_vcpu_arch.</summary>
public sealed class KvmVcpuArch
{
    public int MpState { get; set; } = KvmAbi.KVM_MP_STATE_RUNNABLE;

    public KvmQueuedException Exception;

    public KvmQueuedInterrupt Interrupt;

    public KvmLapic Apic { get; set; } = null!;

    /// <summary>The MMU root the vCPU runs on.</summary>
    public ITranslationRoot Root { get; set; } = null!;

    /// <summary>Exits counted by reason (the v3 statistics' exits, here as plain counters of the run loop).</summary>
    public long Exits { get; set; }

    /// <summary>apf_msr_val (patch 2): what the guest wrote to MSR_KVM_ASYNC_PF_EN.</summary>
    public ulong ApfMsrVal { get; set; }

    /// <summary>apf_data (patch 2, cached per patch 7): where the reason word goes in guest memory.</summary>
    public GfnToHvaCache ApfData { get; } = new();

    /// <summary>apf_id (patch 8): the per-vCPU counter of the token's upper bits.</summary>
    public uint ApfId { get; set; }

    /// <summary>apf.halted (the halt variant): the vCPU waits for a page instead of running.</summary>
    public bool ApfHalted { get; set; }

    /// <summary>apf_send_user_only (patch 11): the guest did not set send-always.</summary>
    public bool ApfSendUserOnly { get; set; } = true;
}

/// <summary>
/// arch/x86/include/asm/kvm_host.h: struct kvm_arch, the VM's MMU state. Sptes are kept in tables
/// keyed by what they translate rather than in page-table pages (Documentation/deviations.md).
/// </summary>
public sealed class KvmArch
{
    /// <summary>Protected by mmu_lock: the EPT, gfn → spte (host pfn, writable bit).</summary>
    public GfnTable Ept { get; } = new();

    /// <summary>Protected by mmu_lock: shadow tables, (guest CR3, guest page) → spte.</summary>
    public Dictionary<(ulong Cr3, ulong Vpn), ulong> Shadow { get; } = [];

    /// <summary>Protected by mmu_lock: the reverse map of shadow sptes, gfn → their keys.</summary>
    public Dictionary<ulong, List<(ulong Cr3, ulong Vpn)>> ShadowRmap { get; } = [];

    /// <summary>Protected by mmu_lock: the shadow direct map of the guest kernel, gfn → spte.</summary>
    public GfnTable ShadowDirect { get; } = new();

    /// <summary>Every spte that maps <paramref name="gfn"/>: its EPT entry, its shadow direct-map spte, its shadow sptes under any CR3.</summary>
    public IEnumerable<ulong> SptesOf(ulong gfn)
    {
        if (Ept.TryGetValue(gfn, out ulong spte))
        {
            yield return spte;
        }
        if (ShadowDirect.TryGetValue(gfn, out spte))
        {
            yield return spte;
        }
        if (ShadowRmap.TryGetValue(gfn, out var keys))
        {
            foreach (var key in keys)
            {
                if (Shadow.TryGetValue(key, out spte))
                {
                    yield return spte;
                }
            }
        }
    }

    /// <summary>TDP (EPT) or shadow paging.</summary>
    public bool TdpEnabled { get; set; } = true;

    /// <summary>sptes installed.</summary>
    public long SptesInstalled { get; set; }

    /// <summary>sptes zapped by MMU notifiers.</summary>
    public long SptesZapped { get; set; }
}

/// <summary>
/// Sptes indexed by gfn: the last level of a TDP table flattened over guest-physical memory
/// (an spte of 0 is not present). Grows with the highest gfn mapped.
/// </summary>
public sealed class GfnTable : IEnumerable<KeyValuePair<ulong, ulong>>
{
    private readonly IndexedArray<ulong> _sptes = new("gfn");

    /// <summary>Present sptes.</summary>
    public int Count { get; private set; }

    public ulong this[ulong gfn]
    {
        set
        {
            if (value == 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), "an installed spte is present");
            }
            ref ulong spte = ref _sptes.At(gfn);
            if (spte == 0)
            {
                Count++;
            }
            spte = value;
        }
    }

    /// <summary>All present sptes, by increasing gfn.</summary>
    public IEnumerable<ulong> Values => this.Select(entry => entry.Value);

    public bool TryGetValue(ulong gfn, out ulong spte)
    {
        spte = _sptes[gfn];
        return spte != 0;
    }

    public bool ContainsKey(ulong gfn) => TryGetValue(gfn, out _);

    public bool Remove(ulong gfn, out ulong spte)
    {
        if (!TryGetValue(gfn, out spte))
        {
            return false;
        }
        _sptes[gfn] = 0;
        Count--;
        return true;
    }

    public void Clear()
    {
        _sptes.Clear();
        Count = 0;
    }

    public IEnumerator<KeyValuePair<ulong, ulong>> GetEnumerator()
    {
        for (ulong gfn = 0; gfn < _sptes.Bound; gfn++)
        {
            ulong spte = _sptes[gfn];
            if (spte != 0)
            {
                yield return new(gfn, spte);
            }
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>Bits of an spte in the port's tables.</summary>
public static class Spte
{
    public const ulong PT_PRESENT_MASK = 1;
    public const ulong PT_WRITABLE_MASK = 2;

    public static ulong Make(ulong pfn, bool writable) => (pfn << Pgtable.PAGE_SHIFT) | PT_PRESENT_MASK | (writable ? PT_WRITABLE_MASK : 0);

    public static ulong Pfn(ulong spte) => spte >> Pgtable.PAGE_SHIFT;

    public static bool Writable(ulong spte) => (spte & PT_WRITABLE_MASK) != 0;

    /// <summary>The host-physical address an spte table maps <paramref name="key"/> to, if it maps it.</summary>
    public static bool TryLookup<TKey>(Dictionary<TKey, ulong> table, TKey key, out ulong hostPhysical)
        where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(table);
        bool found = table.TryGetValue(key, out ulong spte);
        hostPhysical = found ? Pfn(spte) << Pgtable.PAGE_SHIFT : 0;
        return found;
    }

    /// <inheritdoc cref="TryLookup{TKey}"/>
    public static bool TryLookup(GfnTable table, ulong gfn, out ulong hostPhysical)
    {
        ArgumentNullException.ThrowIfNull(table);
        bool found = table.TryGetValue(gfn, out ulong spte);
        hostPhysical = found ? Pfn(spte) << Pgtable.PAGE_SHIFT : 0;
        return found;
    }
}
