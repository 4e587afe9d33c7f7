namespace KvmApf.Tests.Rigs;

/// <summary>
/// The units the rigs and fixtures write virtual time and sizes in, imported into every file of
/// the test project (a static global using in Tests.csproj), so that a figure reads <c>5 * Ms</c> or <c>256 * MiB</c>.
/// </summary>
public static class Units
{
    public const long Us = 1_000;
    public const long Ms = 1_000_000;
    public const long MiB = 1024 * 1024;
}
