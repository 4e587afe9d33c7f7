using KvmApf.Guest;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Scenarios;

/// <summary>
/// The kvm-unit-tests style guest program (tools/guest/AsyncPfTest.cs, after x86/asyncpf.c) run as
/// init of a PV guest on the series' host, in a guest with more memory than the VMM's cgroup
/// allows: it must print its PASS lines, see async page faults of its own, and agree with the
/// host on how many it was sent. With the cgroup large enough that nothing is swapped, the same
/// program must fail, since it asserts that at least one async fault happened.
/// </summary>
[TestFixture, Category("scenario"), Description("asyncpf: a guest test program reports from inside the guest")]
public sealed class AsyncPfGuestTestTests
{
    private const long S = 1_000_000_000;

    private static (GuestApfRig Rig, AsyncPfTest Test) Run(GuestApfRigOptions options, ulong bufferBytes)
    {
        var rig = new GuestApfRig(options);
        var test = new AsyncPfTest(rig.Libc, new AsyncPfTestOptions(bufferBytes));
        rig.Start((_, self) => test.Main(self));
        rig.RunUntilFinished(600 * S);
        TestContext.Out.WriteLine(string.Join('\n', rig.Console.Lines));
        TestContext.Out.WriteLine($"virtual time {rig.Loop.Now} ns, events {rig.Loop.EventsProcessed}");
        return (rig, test);
    }

    /// <summary>192 MiB of guest RAM in a 96 MiB cgroup; the program touches 96 MiB twice.</summary>
    private static GuestApfRigOptions Swapping(bool tdp = true) => new()
    {
        Vcpus = 1,
        GuestMemBytes = 192 * MiB,
        MemLimitBytes = 96 * MiB,
        Tdp = tdp,
    };

    [TestCase(true)]
    [TestCase(false)]
    public void AsyncPfTestMain_GuestLargerThanCgroup_PrintsPassAndSawAsyncFaults(bool tdp)
    {
        var (rig, test) = Run(Swapping(tdp), 96 * (ulong)MiB);
        var lines = rig.Console.Lines;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(lines, Has.Some.StartsWith("PASS: async page faults happened"));
            Assert.That(lines, Has.None.StartsWith("FAIL"));
            Assert.That(lines[^1], Is.EqualTo("SUMMARY: 5 tests, 0 unexpected failures"));
            Assert.That(test.Passed, Is.True);
            Assert.That(test.OwnAsyncFaults, Is.GreaterThan(0), "the program's own task took async faults");
            Assert.That(test.NotPresent, Is.EqualTo(rig.Host.ApfCounters.NotPresent), "the guest saw every not-present the host sent");
            Assert.That(test.PageReady, Is.EqualTo(rig.Host.ApfCounters.PageReady), "and every page-ready");
            Assert.That(test.OwnAsyncFaults, Is.LessThanOrEqualTo(test.NotPresent));
            Assert.That(rig.Guest.AsyncPfSleepers.SelectMany(b => b.List), Is.Empty, "nothing left in the sleeper hash");
        }
    }

    [Test]
    public void AsyncPfTestMain_NothingSwapped_FailsForLackOfAsyncFaults()
    {
        var (rig, test) = Run(Swapping() with { MemLimitBytes = 512 * MiB }, 32 * (ulong)MiB);
        var lines = rig.Console.Lines;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Host.PswpIn, Is.Zero, "the host never swapped");
            Assert.That(lines, Has.Member("FAIL: async page faults happened (0)"));
            Assert.That(lines[^1], Is.EqualTo("SUMMARY: 5 tests, 1 unexpected failures"));
            Assert.That(test.Passed, Is.False);
        }
    }

    [Test]
    public void AsyncPfTestMain_HostWithoutAsyncPf_Fails()
    {
        var (rig, test) = Run(Swapping() with { Apf = false }, 96 * (ulong)MiB);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Console.Lines, Has.Member("FAIL: async PF enabled on every CPU"));
            Assert.That(rig.Host.PswpIn, Is.GreaterThan(0), "the host did swap, synchronously");
            Assert.That(test.OwnAsyncFaults, Is.Zero);
            Assert.That(test.Passed, Is.False);
        }
    }
}
