using Hw;
using KvmApf.Tests.Rigs;

namespace KvmApf.Tests.Hw;

/// <summary>
/// The CPU's cache of upper page-table levels (<see cref="PagingStructureCache"/>): a lookup finds
/// only what a walk of the same root and 2 MiB region filled since the last flush; a walk that
/// finds its region there reads only the last level, yet faults exactly as a full walk would: a TLB
/// flush makes the next walk read the upper levels again (so a table page the host has unmapped
/// exits), and the rights the upper levels grant still decide a user store.
/// </summary>
[TestFixture]
[Category("hw")]
public class PagingStructureCacheTests
{
    private const ulong Pgd = 0x1000;
    private const ulong Pud = 0x2000;
    private const ulong Pmd = 0x3000;
    private const ulong Pt = 0x4000;

    /// <summary>1 GiB: PGD index 0, PUD index 1, PMD index 0, PT index 0.</summary>
    private const ulong A = 0x4000_0000;

    /// <summary>The next page, in the same 2 MiB region (PT index 1).</summary>
    private const ulong B = A + 0x1000;

    /// <summary>Present, writable, user.</summary>
    private const ulong Table = 0x7;

    [Test]
    public void Lookup_FindsWhatWasFilled_ForTheSameRootAndRegionOnly()
    {
        var cache = new PagingStructureCache();
        cache.Fill(Pgd, A, Pt, write: true, user: false);

        Assert.That(cache.TryLookup(Pgd, B, out ulong table, out bool write, out bool user), Is.True, "same root, same 2 MiB region");
        Assert.That((table, write, user), Is.EqualTo((Pt, true, false)));
        Assert.That(cache.TryLookup(Pgd + 0x1000, A, out _, out _, out _), Is.False, "another root");
        Assert.That(cache.TryLookup(Pgd, A + (2UL << 20), out _, out _, out _), Is.False, "the next region");
        Assert.That(cache.TryLookup(Pgd, A + (16UL << 21), out _, out _, out _), Is.False, "a region with the same slot");

        cache.Fill(Pgd, A + (16UL << 21), Pt + 0x1000, write: true, user: true);
        Assert.That(cache.TryLookup(Pgd, A, out _, out _, out _), Is.False, "replaced by the region sharing its slot");

        cache.Flush();
        Assert.That(cache.TryLookup(Pgd, A + (16UL << 21), out _, out _, out _), Is.False, "flushed");
    }

    [Test]
    public void UserStore_FillsTheCache_WithTheLastLevelTable()
    {
        var rig = new Rig();

        Assert.That(rig.StoreExits(A), Is.Null);

        Assert.That(rig.Cpu.PagingCache.TryLookup(Pgd, A, out ulong table, out bool write, out bool user), Is.True);
        Assert.That((table, write, user), Is.EqualTo((Pt, true, true)));
    }

    [Test]
    public void AfterTlbFlush_TheWalkReadsTheUpperLevelsAgain_AndExitsOnAnUnmappedTablePage()
    {
        var rig = new Rig();
        Assert.That(rig.StoreExits(A), Is.Null, "fills the region's entry");

        rig.Root.Unmapped.Add(Pmd >> PhysicalMemory.PageShift);
        rig.Cpu.FlushTlb(); // what the MMU notifier does after zapping the spte

        var exit = rig.StoreExits(B);
        Assert.That(exit?.Reason, Is.EqualTo(ExitReason.EptViolation), "a cached PMD entry would have walked past the unmapped table page");
        Assert.That(exit?.GuestPhysical, Is.EqualTo(Pmd), "the PMD entry of B (index 0)");
    }

    [Test]
    public void NewRoot_FlushesTheCache()
    {
        var rig = new Rig();
        Assert.That(rig.StoreExits(A), Is.Null);

        rig.Cpu.Root = rig.Root;

        Assert.That(rig.Cpu.PagingCache.TryLookup(Pgd, A, out _, out _, out _), Is.False);
    }

    [Test]
    public void CachedUpperLevelsWithoutUserAccess_StillFaultAUserStore_AsAFullWalkDoes()
    {
        var uncached = new Rig(pudFlags: Table & ~0x4UL);
        Assert.That(uncached.StoreExits(A), Is.Null);
        Assert.That(uncached.Faults, Is.EqualTo(new[] { (A, 0x7u) }), "a full walk: present, write, user");

        var cached = new Rig(pudFlags: Table & ~0x4UL);
        cached.Cpu.PagingCache.Fill(Pgd, A, Pt, write: true, user: false); // as the guest kernel's own walk fills it
        Assert.That(cached.StoreExits(A), Is.Null);
        Assert.That(cached.Faults, Is.EqualTo(uncached.Faults), "the cached rights decide as the entries do");
    }

    /// <summary>One vCPU in guest mode on four levels of tables mapping <see cref="A"/> and <see cref="B"/>.</summary>
    private sealed class Rig : IInterruptDescriptorTable
    {
        public Rig(ulong pudFlags = Table)
        {
            var ram = new PhysicalMemory();
            ram.WriteU64(Pgd, Pud | Table);
            ram.WriteU64(Pud + (1 * 8), Pmd | pudFlags);
            ram.WriteU64(Pmd, Pt | Table);
            ram.WriteU64(Pt, 0x10_0000 | Table);
            ram.WriteU64(Pt + 8, 0x10_1000 | Table);
            Cpu = new X86Cpu(0, Loop, ram, new CostModel()) { Root = Root, Idt = this };
            Cpu.WriteCr3(Pgd);
            Cpu.SwitchTo(Ctx);
        }

        public EventLoop Loop { get; } = new();

        public IdentityRoot Root { get; } = new();

        public X86Cpu Cpu { get; }

        public GuestContext Ctx { get; } = new("t");

        /// <summary>Page faults delivered to the guest: (CR2, error code). Their handlers never return.</summary>
        public List<(ulong Cr2, uint ErrorCode)> Faults { get; } = [];

        private readonly SimSignal _never = new(new EventLoop());

        /// <summary>Enters, stores to <paramref name="gva"/>, and returns the exit it caused, or null if it completed or faulted in the guest.</summary>
        public VmExit? StoreExits(ulong gva)
        {
            var exit = Cpu.Enter(0, null);
            var store = Ctx.Store(gva);
            Loop.Run();
            if (exit.IsCompleted)
            {
                return exit.GetAwaiter().GetResult();
            }
            Assert.That(store.IsCompleted || Faults.Count > 0, Is.True, "the store completed or faulted");
            Cpu.Kick();
            Loop.Run();
            exit.GetAwaiter().GetResult();
            return null;
        }

        public void DeliverInterrupt(X86Cpu cpu, byte vector)
        {
        }

        public SimTask DeliverException(X86Cpu cpu, byte vector, uint errorCode, int savedCpl)
        {
            Faults.Add((cpu.Cr2, errorCode));
            return _never.Wait();
        }

        public int DeliveryFootprint(X86Cpu cpu, GuestContext ctx, Span<ulong> pages) => 0;
    }
}
