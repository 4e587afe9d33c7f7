using Hw;

namespace Linux;

// arch/x86/include/asm/paravirt.h (patch 4): the call site wrapper of pv_cpu_ops.handle_pf.
// The binary patching of paravirt_patch_32.c / paravirt_patch_64.c has nothing to patch in the
// port: the hook is an ordinary indirect call (Documentation/deviations.md).
public sealed partial class Kernel
{
    /// <summary>handle_pf(): asks the paravirt backend whether this #PF is an async PF event.</summary>
    [Port("arch/x86/include/asm/paravirt.h", "handle_pf", Patches = [4])]
    private SimTask<bool> HandlePf(X86Cpu cpu, uint errorCode) => PvCpuOps.HandlePf(cpu, errorCode);
}
