using Hw;

namespace Linux;

// include/linux/kvm_para.h: what a guest asks the host through CPUID.
public sealed partial class Kernel
{
    /// <summary>kvm_para_available(): the KVM signature leaf answers.</summary>
    [Port("include/linux/kvm_para.h", "kvm_para_available")]
    public static bool KvmParaAvailable(X86Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        return cpu.Cpuid(KvmPara.KVM_CPUID_SIGNATURE) != 0;
    }

    /// <summary>kvm_para_has_feature(): a KVM_FEATURE_* bit of CPUID 0x40000001.</summary>
    [Port("include/linux/kvm_para.h", "kvm_para_has_feature")]
    public static bool KvmParaHasFeature(X86Cpu cpu, int feature)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        return (cpu.Cpuid(KvmPara.KVM_CPUID_FEATURES) & (1u << feature)) != 0;
    }
}
