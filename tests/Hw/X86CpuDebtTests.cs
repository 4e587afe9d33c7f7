using Hw;
using KvmApf.Tests.Rigs;

namespace KvmApf.Tests.Hw;

/// <summary>
/// Guest time the CPU owes (<see cref="X86Cpu.Charge"/>, an interrupt handler's or a context
/// switch's) is paid before the computation that comes next: the context is credited kernel time
/// for the debt, then the computation's own, and a cut anywhere credits what was done, the debt
/// first, and leaves the rest for after the next entry.
/// </summary>
[TestFixture]
[Category("hw")]
public class X86CpuDebtTests
{
    private const long Debt = 2_000;
    private const long Work = 10_000;

    private static readonly CostModel Costs = new();

    /// <summary>When the CPU is in guest mode after <see cref="Enter"/> at time 0.</summary>
    private static readonly long Entered = Costs.VmEntryNs;

    private sealed record Rig(EventLoop Loop, X86Cpu Cpu, GuestContext Ctx);

    /// <summary>A vCPU with a debt of <see cref="Debt"/>, running a context that asks to compute <see cref="Work"/> of user or kernel code.</summary>
    private static (Rig Rig, SimTask Op) Start(bool kernel)
    {
        var loop = new EventLoop();
        var cpu = new X86Cpu(0, loop, new PhysicalMemory(), Costs) { Root = new IdentityRoot() };
        var ctx = new GuestContext("t");
        cpu.SwitchTo(ctx);
        cpu.Charge(Debt);
        var op = kernel ? ctx.KernelCompute(Work) : ctx.Compute(Work);
        Enter(cpu);
        return (new Rig(loop, cpu, ctx), op);
    }

    private static void Enter(X86Cpu cpu) => cpu.Enter(0, null).Forget();

    [TestCase(false)]
    [TestCase(true)]
    public void DebtThenComputation_CreditsBothParts_AndEndsAfterBoth(bool kernel)
    {
        var (rig, op) = Start(kernel);

        rig.Loop.Run(Entered + Debt);
        Assert.That(rig.Ctx.KernelNs + rig.Cpu.InFlight.KernelNs, Is.EqualTo(Debt), "the debt is paid first");
        Assert.That(rig.Ctx.UserNs + rig.Cpu.InFlight.UserNs, Is.Zero);
        rig.Loop.Run(Entered + Debt + Work - 1);
        Assert.That(op.IsCompleted, Is.False, "the computation starts after the debt");
        rig.Loop.Run(Entered + Debt + Work);

        Assert.That(op.IsCompleted, Is.True);
        Assert.That(rig.Ctx.KernelNs, Is.EqualTo(Debt + (kernel ? Work : 0)));
        Assert.That(rig.Ctx.UserNs, Is.EqualTo(kernel ? 0 : Work));
    }

    [TestCase(false, 500)]
    [TestCase(false, Debt)]
    [TestCase(false, Debt + 3_000)]
    [TestCase(true, 500)]
    [TestCase(true, Debt + 3_000)]
    public void CutInside_CreditsDebtFirst_AndTheRestRunsAfterReentry(bool kernel, long cutAfter)
    {
        var (rig, op) = Start(kernel);
        rig.Loop.Run(Entered + cutAfter);

        long debtPaid = Math.Min(cutAfter, Debt);
        long workDone = cutAfter - debtPaid;
        var inFlight = rig.Cpu.InFlight;
        long kernelNs = rig.Ctx.KernelNs + inFlight.KernelNs;
        long userNs = rig.Ctx.UserNs + inFlight.UserNs;
        Assert.That(kernelNs, Is.EqualTo(debtPaid + (kernel ? workDone : 0)), "kernel time, credited and in flight");
        Assert.That(userNs, Is.EqualTo(kernel ? 0 : workDone), "user time, credited and in flight");

        rig.Cpu.Kick();
        Assert.That(rig.Ctx.KernelNs, Is.EqualTo(kernelNs), "the cut credits what InFlight showed");
        Assert.That(rig.Ctx.UserNs, Is.EqualTo(userNs));

        // The exit takes VmExitNs; the vCPU is entered again right after it.
        long reentered = Entered + cutAfter + Costs.VmExitNs + Costs.VmEntryNs;
        rig.Loop.Run(Entered + cutAfter + Costs.VmExitNs);
        Enter(rig.Cpu);
        long rest = (Debt - debtPaid) + (Work - workDone);
        rig.Loop.Run(reentered + rest - 1);
        Assert.That(op.IsCompleted, Is.False, "what was not done is done after re-entry");
        rig.Loop.Run(reentered + rest);
        Assert.That(op.IsCompleted, Is.True);
        Assert.That(rig.Ctx.KernelNs, Is.EqualTo(Debt + (kernel ? Work : 0)));
        Assert.That(rig.Ctx.UserNs, Is.EqualTo(kernel ? 0 : Work));
    }
}
