namespace KvmApf.Tracing;

/// <summary>Names of the VMX basic exit reasons the machine produces, as kvm_exit prints them (Intel SDM vol. 3, appendix C).</summary>
public static class ExitReasons
{
    public static string Name(int reason) => reason switch
    {
        0 => "EXCEPTION_NMI",
        1 => "EXTERNAL_INTERRUPT",
        2 => "TRIPLE_FAULT",
        7 => "PENDING_INTERRUPT",
        12 => "HLT",
        48 => "EPT_VIOLATION",
        _ => $"EXIT_{reason}",
    };
}
