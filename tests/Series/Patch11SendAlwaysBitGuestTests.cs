using Hw;
using KvmApf.Tests.Rigs;
using Linux;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 11, guest half: a preemptible guest can take an async PF in kernel mode (it sleeps
/// there, or halts where it cannot), so it sets the send-always bit (bit 1) when it enables
/// async PF; a non-preemptible one does not. The host half (the bit's meaning, the narrowed
/// reserved mask) is the host fixture's. The host here is a substitute that records the writes.
/// </summary>
[TestFixture, Category("patch-11"), Description("Let host know whether the guest can handle async PF in non-userspace context.")]
public sealed class Patch11SendAlwaysBitGuestTests
{
    private static readonly object[] Cases =
    [
        new object[] { ApfAbi.V3, true },
        new object[] { ApfAbi.V3, false },
        new object[] { ApfAbi.Merged, true },
        new object[] { ApfAbi.Merged, false },
    ];

    private static GuestHwRig Boot(ApfAbi abi, bool preempt)
    {
        var rig = new GuestHwRig(new GuestHwOptions { Cpus = 2, Abi = abi, Preempt = preempt, CpuidFeatures = GuestHwOptions.Features(abi, asyncPf: true) });
        rig.Boot((_, _) => SimTask.CompletedTask);
        rig.RunFor(5 * rig.Guest.TickNsec);
        return rig;
    }

    [TestCaseSource(nameof(Cases))]
    public void KvmGuestCpuInit_Preemptible_SetsSendAlwaysOnEveryCpu(ApfAbi abi, bool preempt)
    {
        var rig = Boot(abi, preempt);
        var values = rig.MsrWrites.Where(w => w.Index == abi.MSR_KVM_ASYNC_PF_EN).Select(w => w.Value).ToList();
        ulong expected = ApfAbi.KVM_ASYNC_PF_ENABLED | (preempt ? ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS : 0);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(values, Has.Count.EqualTo(2), "one write per CPU");
            Assert.That(values.Select(v => v & 0x3f), Is.All.EqualTo(expected), preempt ? "enabled | send-always" : "enabled only");
            Assert.That(values.Select(v => v & ApfAbi.KVM_ASYNC_PF_RESERVED_MASK), Is.All.Zero, "no reserved bit");
        }
    }

    [TestCase(true)]
    [TestCase(false)]
    public void KvmCpuNotify_CpuBackOnline_WritesTheSameSendAlwaysBit(bool preempt)
    {
        var rig = Boot(ApfAbi.V3, preempt);
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: false);
        rig.Guest.KvmCpuNotify(rig.Cpus[1], online: true);
        ulong last = rig.MsrWrites.Last(w => w.Cpu == 1 && w.Index == ApfAbi.V3.MSR_KVM_ASYNC_PF_EN).Value;
        Assert.That((last & ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS) != 0, Is.EqualTo(preempt));
    }
}
