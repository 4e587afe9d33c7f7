using Hw;

namespace Linux;

// arch/x86/kernel/paravirt.c (patch 4): the native handle_pf and the pv_cpu_ops instance.
public sealed partial class Kernel
{
    private PvCpuOps? _pvCpuOps;

    /// <summary>pv_cpu_ops: native unless a paravirt guest replaced an op at boot.</summary>
    public PvCpuOps PvCpuOps => _pvCpuOps ??= new PvCpuOps { HandlePf = NativeHandlePf };

    /// <summary>native_handle_pf(): on bare metal every #PF is an ordinary one.</summary>
    [Port("arch/x86/kernel/paravirt.c", "native_handle_pf", Patches = [4])]
    private static SimTask<bool> NativeHandlePf(X86Cpu cpu, uint errorCode) => false;
}
