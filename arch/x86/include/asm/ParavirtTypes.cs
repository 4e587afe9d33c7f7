using Hw;

namespace Linux;

/// <summary>
/// arch/x86/include/asm/paravirt_types.h: struct pv_cpu_ops, reduced to the hook the series adds
/// (patch 4): handle_pf, which a PV guest points at its async PF handler. It returns true when
/// it consumed the fault (an async PF event), false for an ordinary #PF.
/// </summary>
public sealed class PvCpuOps
{
    [Port("arch/x86/include/asm/paravirt_types.h", "pv_cpu_ops.handle_pf", Patches = [4])]
    public Func<X86Cpu, uint, SimTask<bool>> HandlePf { get; set; } = null!;
}
