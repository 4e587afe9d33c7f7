using System.Reflection;
using System.Text.RegularExpressions;
using Linux;

namespace KvmApf.Tests.Conformance;

/// <summary>
/// Every <c>[Port]</c> attribute of the kernel image against table (c) of
/// <c>Documentation/patch-map.md</c>, both ways, patch 0 included (DESIGN section 3). The map is
/// data a reviewer reads; this fixture keeps it equal to the code.
/// </summary>
[Category("conformance")]
[Description("Documentation/patch-map.md lists exactly the [Port] attributes of the kernel image")]
public sealed partial class PatchMapTests
{
    /// <summary>Patches of the v3 series; 0 is the baseline kernel.</summary>
    private const int LastPatch = 12;

    private const BindingFlags Everything =
        BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>Top-level directories of a Linux source tree, for the plausibility check of a Port path.</summary>
    private static readonly HashSet<string> KernelTopDirs =
    [
        "arch", "block", "crypto", "drivers", "fs", "include", "init", "ipc", "kernel", "lib", "mm", "net", "security", "sound", "virt",
    ];

    /// <summary>One (patch, C function) row: what the map holds and what an attribute expands to.</summary>
    public readonly record struct PortRow(int Patch, string Path, string Symbol, string Member)
    {
        /// <summary>The row as it is written in the map, fixture excluded.</summary>
        public override string ToString() => $"| {Patch} | `{Path}` | `{Symbol}` | `{Member}` |";
    }

    /// <summary>One row of table (c) as written, with its fixture and line number.</summary>
    public readonly record struct MapRow(PortRow Row, string Fixture, int Line);

    private static readonly Lazy<IReadOnlyList<(PortRow Row, PortAttribute Attribute)>> s_attributes = new(CollectAttributes);

    private static readonly Lazy<IReadOnlyList<MapRow>> s_map = new(ReadMap);

    [Test]
    public void PortAttributes_ComparedWithPatchMap_EveryRowIsInTheMap()
    {
        var map = s_map.Value.Select(r => r.Row).ToHashSet();
        var missing = s_attributes.Value.Select(a => a.Row).Distinct().Where(r => !map.Contains(r)).OrderBy(r => r, RowOrder).ToList();
        Assert.That(missing, Is.Empty,
            () => $"{missing.Count} [Port] row(s) missing from table (c) of Documentation/patch-map.md "
                + "(add them with their fixture):\n" + string.Join('\n', missing.Select(r => $"{r} `{FixtureName(r.Patch)}` |")));
    }

    [Test]
    public void PatchMap_ComparedWithPortAttributes_EveryRowHasAnAttribute()
    {
        var attributes = s_attributes.Value.Select(a => a.Row).ToHashSet();
        var extra = s_map.Value.Where(r => !attributes.Contains(r.Row)).ToList();
        Assert.That(extra, Is.Empty,
            () => $"{extra.Count} row(s) of Documentation/patch-map.md table (c) have no [Port] attribute in the kernel image:\n"
                + string.Join('\n', extra.Select(r => $"line {r.Line}: {r.Row}")));
    }

    [Test]
    public void PatchMap_Rows_AreUnique()
    {
        var duplicates = s_map.Value.GroupBy(r => r.Row).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key} on lines {string.Join(", ", g.Select(r => r.Line))}").ToList();
        Assert.That(duplicates, Is.Empty, () => "rows listed more than once:\n" + string.Join('\n', duplicates));
    }

    [Test]
    public void PatchMap_Fixture_NamesThePatchOfItsRow()
    {
        var wrong = s_map.Value.Where(r => !FixtureOf(r.Row.Patch).IsMatch(r.Fixture))
            .Select(r => $"line {r.Line}: patch {r.Row.Patch} names fixture '{r.Fixture}'").ToList();
        Assert.That(wrong, Is.Empty, () => "a fixture must be Patch<NN><Title>Tests for the row's patch NN:\n" + string.Join('\n', wrong));
    }

    [Test]
    public void PatchMap_Fixture_ExistsWithItsPatchCategory()
    {
        var fixtures = typeof(PatchMapTests).Assembly.GetTypes().ToLookup(t => t.Name);
        var problems = new List<string>();
        foreach (var (patch, fixture) in s_map.Value.Select(r => (r.Row.Patch, r.Fixture)).Distinct())
        {
            var type = fixtures[fixture].FirstOrDefault();
            string category = $"patch-{patch:00}";
            if (type is null)
            {
                var others = fixtures.Where(g => FixtureOf(patch).IsMatch(g.Key)).Select(g => g.Key).ToList();
                problems.Add($"{fixture} (patch {patch}): no such fixture in {typeof(PatchMapTests).Assembly.GetName().Name}"
                    + (others.Count > 0 ? $" (the assembly has {string.Join(", ", others)})" : ""));
            }
            else if (!type.GetCustomAttributes<CategoryAttribute>().Any(c => c.Name == category))
            {
                problems.Add($"{fixture} (patch {patch}): no [Category(\"{category}\")]");
            }
        }
        Assert.That(problems, Is.Empty, () => string.Join('\n', problems));
    }

    [Test]
    public void PortAttribute_Path_IsAKernelSourcePath()
    {
        var bad = s_attributes.Value.Select(a => a.Row).Where(r => !IsKernelPath(r.Path)).Distinct()
            .Select(r => $"{r.Member}: \"{r.Path}\"").ToList();
        Assert.That(bad, Is.Empty,
            () => "Port paths must be relative kernel paths under a top-level source directory, ending in .c, .h or .S:\n" + string.Join('\n', bad));
    }

    [Test]
    public void PortAttribute_Symbol_IsACIdentifier()
    {
        var bad = s_attributes.Value.Select(a => a.Row).Where(r => !CIdentifier().IsMatch(r.Symbol)).Distinct()
            .Select(r => $"{r.Member}: \"{r.Symbol}\"").ToList();
        Assert.That(bad, Is.Empty, () => "Port symbols are C identifiers, or struct.member for a function pointer of an ops struct:\n" + string.Join('\n', bad));
    }

    [Test]
    public void PortAttribute_Patches_AreSeriesPatchesListedOnce()
    {
        var bad = s_attributes.Value
            .Where(a => a.Attribute.Patches.Length == 0
                || a.Attribute.Patches.Any(p => p is < 0 or > LastPatch)
                || a.Attribute.Patches.Distinct().Count() != a.Attribute.Patches.Length)
            .Select(a => $"{a.Row.Member} ({a.Row.Path} {a.Row.Symbol}): Patches = [{string.Join(", ", a.Attribute.Patches)}]")
            .Distinct().ToList();
        Assert.That(bad, Is.Empty, () => $"Patches must list each of 0..{LastPatch} at most once, and at least one:\n" + string.Join('\n', bad));
    }

    [Test]
    public void PortAttribute_SymbolPerPatchAndPath_MapsToOneMember()
    {
        var clashes = s_attributes.Value.Select(a => a.Row).Distinct()
            .GroupBy(r => (r.Patch, r.Path, r.Symbol))
            .Where(g => g.Select(r => r.Member).Distinct().Count() > 1)
            .Select(g => $"patch {g.Key.Patch} {g.Key.Path} {g.Key.Symbol}: {string.Join(", ", g.Select(r => r.Member).Distinct())}")
            .ToList();
        Assert.That(clashes, Is.Empty, () => "one C function is ported by several members:\n" + string.Join('\n', clashes));
    }

    [Test]
    public void KernelImage_PortAttributes_AreFound()
    {
        // Guards the reflection walk itself: a known private method, a public one and one outside Kernel.
        var members = s_attributes.Value.Select(a => a.Row.Member).ToHashSet();
        Assert.That(members, Is.SupersetOf(new[] { "Kernel.Schedule", "Kernel.TdpPageFault", "Spinlock.Lock" }));
    }

    /// <summary>Every PortAttribute on every type and member of the kernel image, one row per listed patch.</summary>
    internal static IReadOnlyList<(PortRow Row, PortAttribute Attribute)> CollectAttributes()
    {
        var rows = new List<(PortRow, PortAttribute)>();
        foreach (var type in typeof(Kernel).Assembly.GetTypes())
        {
            Add(type, TypeName(type));
            foreach (var member in type.GetMembers(Everything))
            {
                if (member is not Type)
                {
                    Add(member, $"{TypeName(type)}.{member.Name}");
                }
            }
        }
        return rows;

        void Add(MemberInfo member, string name)
        {
            foreach (var attribute in member.GetCustomAttributes<PortAttribute>(inherit: false))
            {
                foreach (int patch in attribute.Patches)
                {
                    rows.Add((new PortRow(patch, attribute.Path, attribute.Symbol, name), attribute));
                }
            }
        }
    }

    /// <summary>A type's name as the map writes it: nested types joined by '.', generic arity dropped.</summary>
    internal static string TypeName(Type type)
    {
        string name = type.Name;
        int tick = name.IndexOf('`', StringComparison.Ordinal);
        if (tick >= 0)
        {
            name = name[..tick];
        }
        return type.DeclaringType is { } outer ? $"{TypeName(outer)}.{name}" : name;
    }

    /// <summary>Table (c) of Documentation/patch-map.md: the table whose header is patch | C file | C function | C# member | fixture.</summary>
    internal static IReadOnlyList<MapRow> ReadMap()
    {
        string path = Path.Combine(RepositoryRoot(), "Documentation", "patch-map.md");
        Assert.That(File.Exists(path), Is.True, $"{path} does not exist");
        string[] lines = File.ReadAllLines(path);
        int header = Array.FindIndex(lines, l => TableHeader().IsMatch(l));
        Assert.That(header, Is.GreaterThanOrEqualTo(0),
            $"{path} has no table whose header is '| patch | C file | C function | C# member | fixture |'");
        var rows = new List<MapRow>();
        for (int i = header + 2; i < lines.Length && lines[i].TrimStart().StartsWith('|'); i++)
        {
            string[] cells = lines[i].Trim().Trim('|').Split('|').Select(c => c.Trim().Trim('`').Trim()).ToArray();
            int patch = -1;
            bool parsed = cells.Length == 5 && int.TryParse(cells[0], out patch);
            Assert.That(parsed, Is.True, $"{path} line {i + 1}: expected 5 cells, the first a patch number: {lines[i]}");
            rows.Add(new MapRow(new PortRow(patch, cells[1], cells[2], cells[3]), cells[4], i + 1));
        }
        return rows;
    }

    /// <summary>The directory holding kvm-apf.sln, found by walking up from the test's output directory.</summary>
    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "kvm-apf.sln")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException($"no kvm-apf.sln above {TestContext.CurrentContext.TestDirectory}");
    }

    private static bool IsKernelPath(string path)
    {
        if (!KernelPath().IsMatch(path) || path.Split('/').Any(s => s is "" or "." or ".."))
        {
            return false;
        }
        return KernelTopDirs.Contains(path[..path.IndexOf('/', StringComparison.Ordinal)]);
    }

    private static string FixtureName(int patch) => patch == 0 ? "Patch00BaselineTests" : $"Patch{patch:00}...Tests";

    private static Regex FixtureOf(int patch) => new($"^Patch{patch:00}[A-Z][A-Za-z0-9]*Tests$", RegexOptions.CultureInvariant);

    private static readonly Comparer<PortRow> RowOrder = Comparer<PortRow>.Create((a, b) =>
    {
        int c = a.Patch.CompareTo(b.Patch);
        c = c != 0 ? c : string.CompareOrdinal(a.Path, b.Path);
        c = c != 0 ? c : string.CompareOrdinal(a.Symbol, b.Symbol);
        return c != 0 ? c : string.CompareOrdinal(a.Member, b.Member);
    });

    [GeneratedRegex(@"^\s*\|\s*patch\s*\|\s*C file\s*\|\s*C function\s*\|\s*C# member\s*\|\s*fixture\s*\|\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex TableHeader();

    [GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9_./+-]*\.(c|h|S)$", RegexOptions.CultureInvariant)]
    private static partial Regex KernelPath();

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", RegexOptions.CultureInvariant)]
    private static partial Regex CIdentifier();
}
