using Hw;
using KvmApf.Tests.Rigs;
using Linux;
using NSubstitute;

namespace KvmApf.Tests.Series;

/// <summary>
/// Patch 12 widens patch 8's rule: can_do_async_pf() allows an async fault in kernel mode (CPL 0)
/// when the guest set send-always (patch 11), and still only when async PF is enabled, no event
/// waits to be re-injected and the guest can take an interrupt. The rule is checked through the
/// fault path, row by row, against the formula
/// <c>enabled ∧ ¬event pending ∧ IF ∧ (send-always ∨ CPL 3)</c>: a fault on a swapped page either
/// goes async (the guest gets a not-present) or is handled synchronously (the vCPU stalls).
/// </summary>
[TestFixture, Category("patch-12"), Description("Send async PF when guest is not in userspace too.")]
public sealed class Patch12SendAsyncPfOutsideUserspaceTests
{
    /// <summary>One row of can_do_async_pf's truth table.</summary>
    public readonly record struct Row(bool Enabled, bool SendAlways, int Cpl, bool InterruptsEnabled, bool EventPending)
    {
        public bool ExpectAsync => Enabled && !EventPending && InterruptsEnabled && (SendAlways || Cpl == 3);

        public override string ToString() =>
            $"{(Enabled ? "enabled" : "disabled")}, {(SendAlways ? "send-always" : "user-only")}, CPL {Cpl}, IF={(InterruptsEnabled ? 1 : 0)}, "
            + $"{(EventPending ? "event pending" : "no event")} → {(ExpectAsync ? "async" : "sync")}";
    }

    private static IEnumerable<TestCaseData> TruthTable()
    {
        bool[] no = [false, true];
        foreach (bool enabled in no)
        {
            foreach (bool sendAlways in no)
            {
                foreach (int cpl in new[] { 3, 0 })
                {
                    foreach (bool ifOn in no)
                    {
                        foreach (bool pending in no)
                        {
                            var row = new Row(enabled, sendAlways, cpl, ifOn, pending);
                            yield return new TestCaseData(row).SetArgDisplayNames(row.ToString());
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Runs one row: the guest enables async PF (or writes the MSR without the enable bit) with or
    /// without send-always, then a context at the row's CPL and IF faults on a swapped page. With
    /// an event pending, the swapped page is one that delivering a guest #PF touches (its kernel
    /// stack), so the EPT violation happens while the #PF is being delivered and the host must
    /// re-inject it (IDT-vectoring information).
    /// </summary>
    [TestCaseSource(nameof(TruthTable))]
    public void CanDoAsyncPf_GuestStateRow_AsyncExactlyWhenTheRuleAllows(Row row)
    {
        using var rig = new HostApfRig().Boot();
        ulong swapped = HostApfRig.Gfn(0);
        rig.Evict(swapped);
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        guest.EnableAtBoot = row.Enabled;
        guest.SendAlwaysAtBoot = row.SendAlways;
        var faulter = default(GuestContext);
        if (row.EventPending)
        {
            // The guest #PF for the unmapped page is delivered on the faulter's kernel stack, which the host swapped out.
            guest.Gates.Footprint(Arg.Any<X86Cpu>(), Arg.Is<GuestContext>(c => ReferenceEquals(c, faulter)))
                .Returns(new[] { HostApfRig.Gpa(0) });
            guest.OrdinaryFault = cr2 => rig.MapUserPage(HostApfRig.UnmappedPage, HostApfRig.Gfn(1));
        }
        long done = -1;
        faulter = guest.Spawn("faulter", async ctx =>
        {
            if (!row.Enabled && row.SendAlways)
            {
                // send-always without the enable bit: accepted, and async PF stays off.
                Assert.That(cpu.Wrmsr(rig.Options.Abi.MSR_KVM_ASYNC_PF_EN, guest.AreaGpa | ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS), Is.True);
            }
            ctx.SyscallDepth = row.Cpl == 0 ? 1 : 0;
            cpu.InterruptsEnabled = row.InterruptsEnabled;
            await ctx.Store(HostApfRig.Gva(row.EventPending ? HostApfRig.UnmappedPage : 0));
            cpu.InterruptsEnabled = true;
            ctx.SyscallDepth = 0;
            done = rig.Loop.Now;
        });
        rig.Go();
        rig.RunUntil(() => done >= 0);

        var read = rig.ReadsOf(swapped).Single();
        bool wentAsync = guest.NotPresents.Any();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(wentAsync, Is.EqualTo(row.ExpectAsync), "async or synchronous, as can_do_async_pf decides");
            Assert.That(rig.Trace.NotPresent.Select(e => e.Gva), Is.EqualTo(row.ExpectAsync ? new[] { (long)HostApfRig.Gpa(0) } : []));
            if (row.ExpectAsync)
            {
                Assert.That(guest.NotPresents.Single().Context, Is.EqualTo("faulter"));
                Assert.That(cpu.Residency[VcpuState.Stall], Is.Zero, "the vCPU never stalled");
                Assert.That(guest.PageReadies.Select(f => f.Token), Is.EqualTo(guest.NotPresents.Select(f => f.Token)));
            }
            else
            {
                Assert.That(cpu.Residency[VcpuState.Stall], Is.InRange(read.LatencyNs, read.LatencyNs + (100 * Us)),
                    "the vCPU stalled for the read");
                Assert.That(rig.VcpuThreads[0].MajFlt, Is.EqualTo(1), "the vCPU thread took the major fault");
                Assert.That(rig.Host.NrWorkers, Is.Zero);
            }
            if (row.EventPending)
            {
                Assert.That(guest.PageFaults.Where(f => f.Reason == 0).Select(f => f.Cr2), Is.EqualTo(new[] { HostApfRig.Gva(HostApfRig.UnmappedPage) }),
                    "the guest #PF whose delivery faulted was re-injected and handled once");
            }
        }
    }

    [Test]
    public void CanDoAsyncPf_KernelModeFaultWithSendAlways_GuestKeepsRunning()
    {
        using var rig = new HostApfRig().Boot();
        rig.Evict(HostApfRig.Gfn(0));
        var guest = rig.Guests[0];
        var cpu = rig.Cpus[0];
        guest.EnableAtBoot = true;
        guest.SendAlwaysAtBoot = true;
        bool stop = false;
        guest.Spawn("syscall", async ctx =>
        {
            ctx.SyscallDepth = 1;
            await ctx.Store(HostApfRig.Gva(0));
            ctx.SyscallDepth = 0;
            stop = true;
        });
        var hog = guest.SpawnHog(() => stop);
        long hogAtNotPresent = -1;
        guest.Delivered += pf =>
        {
            if (pf.Reason == ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT)
            {
                hogAtNotPresent = hog.UserNs;
            }
        };
        rig.Go();
        rig.RunUntil(() => stop && guest.Finished(hog));
        var np = guest.NotPresents.Single();
        var ready = guest.PageReadies.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rig.Vcpus[0].Arch.ApfSendUserOnly, Is.False, "precondition: send-always");
            Assert.That(np.Context, Is.EqualTo("syscall"), "the CPL 0 fault went async");
            Assert.That(ready.Token, Is.EqualTo(np.Token));
            Assert.That(hog.UserNs - hogAtNotPresent, Is.GreaterThanOrEqualTo(rig.Options.DiskSeekNs - rig.Options.TimerPeriodNs),
                "the other task ran while the kernel-mode fault waited");
            Assert.That(cpu.Residency[VcpuState.Stall], Is.Zero);
        }
    }
}
