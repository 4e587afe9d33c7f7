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

/// <summary>
/// The async PF ABI values (patch 2, with patch 11's send-always bit). The v3 series used MSR
/// 0x4b564d00 and feature bit 3; the merged series (2.6.38) moved them to 0x4b564d02 and 4. A
/// kernel is built against one profile (Kconfig.Abi); host and guest must agree.
/// </summary>
public sealed record ApfAbi(string Name, uint MSR_KVM_ASYNC_PF_EN, int KVM_FEATURE_ASYNC_PF, int KVM_CAP_ASYNC_PF)
{
    /// <summary>The v3 values (patch 2 of the series).</summary>
    public static ApfAbi V3 { get; } = new("v3", 0x4b564d00, 3, 44);

    /// <summary>The values merged for 2.6.38.</summary>
    public static ApfAbi Merged { get; } = new("merged", 0x4b564d02, 4, 59);

    /// <summary>Bit 0 of the MSR: async PF enabled.</summary>
    public const ulong KVM_ASYNC_PF_ENABLED = 1UL << 0;

    /// <summary>Bit 1 of the MSR (patch 11): the guest can take async PF in kernel mode.</summary>
    public const ulong KVM_ASYNC_PF_SEND_ALWAYS = 1UL << 1;

    /// <summary>The reserved bits that make the MSR write #GP after patch 11 (bits 2–5; patch 2 had 1–5, 0x3e).</summary>
    public const ulong KVM_ASYNC_PF_RESERVED_MASK = 0x3c;

    /// <summary>Reason in the shared area: a page the guest touched is swapped out in the host.</summary>
    public const uint KVM_PV_REASON_PAGE_NOT_PRESENT = 1;

    /// <summary>Reason in the shared area: a page the guest waited for is in memory now.</summary>
    public const uint KVM_PV_REASON_PAGE_READY = 2;

    /// <summary>The token of a page-ready that wakes every waiter of the vCPU.</summary>
    public const uint WakeAllToken = 0xffffffff;

    public override string ToString() => Name;
}
