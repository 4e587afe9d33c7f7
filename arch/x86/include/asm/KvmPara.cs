namespace Linux;

/// <summary>arch/x86/include/asm/kvm_para.h: the paravirtual ABI between KVM and its guests (patch 0 part).</summary>
public static class KvmPara
{
    /// <summary>CPUID leaf with KVM's signature.</summary>
    public const uint KVM_CPUID_SIGNATURE = 0x40000000;

    /// <summary>CPUID leaf whose EAX holds the KVM_FEATURE_* bits.</summary>
    public const uint KVM_CPUID_FEATURES = 0x40000001;

    public const int KVM_FEATURE_CLOCKSOURCE = 0;
    public const int KVM_FEATURE_NOP_IO_DELAY = 1;
    public const int KVM_FEATURE_MMU_OP = 2;

    public const uint MSR_KVM_WALL_CLOCK = 0x11;
    public const uint MSR_KVM_SYSTEM_TIME = 0x12;
}
