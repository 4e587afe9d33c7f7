namespace Linux;

/// <summary>
/// Ties a member of the port to the C symbol it implements, and lists every patch of the series
/// that changes it (0 is the baseline kernel). Documentation/patch-map.md has one row per
/// (patch, symbol); a conformance test checks the two against each other.
/// </summary>
[AttributeUsage(AttributeTargets.Method | AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class | AttributeTargets.Struct | AttributeTargets.Constructor, AllowMultiple = true, Inherited = false)]
public sealed class PortAttribute(string path, string symbol) : Attribute
{
    /// <summary>The kernel source file, e.g. <c>virt/kvm/kvm_main.c</c>.</summary>
    public string Path { get; } = path;

    /// <summary>The C function, variable or struct.</summary>
    public string Symbol { get; } = symbol;

    /// <summary>Patches of the v3 series that change the symbol; 0 is the baseline.</summary>
    public int[] Patches { get; init; } = [0];
}
