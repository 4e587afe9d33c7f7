using System.Reflection;
using Linux;

namespace KvmApf.Tests.Conformance;

/// <summary>
/// DESIGN section 3: each kernel function keeps its name, PascalCased as a whole
/// (kvm_setup_async_pf → KvmSetupAsyncPf, __direct_map → __DirectMap). Checked for every member
/// of the kernel image that carries a [Port] attribute; members of other types implement an
/// interface or an object's method (a spinlock's Lock) and keep .NET names.
/// </summary>
[TestFixture]
public sealed class PortNamingTests
{
    /// <summary>The PascalCase of a C symbol: leading underscores kept, each word capitalised, the rest as written.</summary>
    public static string PascalCase(string symbol)
    {
        ArgumentNullException.ThrowIfNull(symbol);
        string lead = new([.. symbol.TakeWhile(c => c == '_')]);
        var words = symbol[lead.Length..].Split('_', StringSplitOptions.RemoveEmptyEntries);
        return lead + string.Concat(words.Select(w => char.ToUpperInvariant(w[0]) + w[1..]));
    }

    [TestCase("kvm_setup_async_pf", "KvmSetupAsyncPf")]
    [TestCase("__direct_map", "__DirectMap")]
    [TestCase("setup_APIC_timer", "SetupAPICTimer")]
    [TestCase("do_IRQ", "DoIRQ")]
    public void PascalCase_KernelSymbol_IsTheDesignsSpelling(string symbol, string expected) =>
        Assert.That(PascalCase(symbol), Is.EqualTo(expected));

    [Test]
    public void PortedKernelMembers_Named_ArePascalCasedSymbols()
    {
        const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        var wrong = typeof(Kernel).GetMembers(All)
            .SelectMany(m => m.GetCustomAttributes<PortAttribute>().Select(p => (Member: m, Port: p)))
            .Where(x => !x.Port.Symbol.Contains('.', StringComparison.Ordinal) && x.Member.Name != PascalCase(x.Port.Symbol))
            .Select(x => $"{x.Port.Path}:{x.Port.Symbol} is Kernel.{x.Member.Name}, expected {PascalCase(x.Port.Symbol)}")
            .ToList();
        Assert.That(wrong, Is.Empty, string.Join("\n", wrong));
    }
}
