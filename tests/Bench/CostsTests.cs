using System.Reflection;
using Hw;
using KvmApf.Bench;

namespace KvmApf.Tests.Bench;

[Category("bench")]
[Description("apf-bench: every value of the cost model can be set with --cost and is written to the JSON")]
public sealed class CostsTests
{
    private static IEnumerable<TestCaseData> Entries() => Costs.All.Select(e => new TestCaseData(e.Name));

    [Test]
    public void All_ComparedWithCostModelProperties_ListsEveryOneOnce()
    {
        IEnumerable<string> properties = LongProperties(typeof(CostModel), "")
            .Concat(LongProperties(typeof(DiskGeometry), Costs.DiskPrefix));
        Assert.That(Costs.All.Select(e => e.Name), Is.EquivalentTo(properties).And.Unique);
    }

    [Test]
    public void CostModel_Properties_AreLongsOrTheDisk()
    {
        IEnumerable<Type> types = typeof(CostModel).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.Name != "EqualityContract").Select(p => p.PropertyType).Distinct();
        Assert.That(types, Is.EquivalentTo(new[] { typeof(long), typeof(DiskGeometry) }), "a cost of another type needs a new entry kind in Costs");
    }

    [TestCaseSource(nameof(Entries))]
    public void Apply_OneName_SetsThatValueOnly(string name)
    {
        var defaults = new CostModel();
        CostModel changed = Costs.Apply(defaults, $"{name}=123456789");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(Value(changed, name), Is.EqualTo(123_456_789L));
            Assert.That(Costs.Changed(changed), Is.EqualTo(new[] { $"{name}=123456789" }));
        }
    }

    [Test]
    public void Apply_NameInOtherCase_FindsIt() =>
        Assert.That(Costs.Apply(new CostModel(), "guesttickns=7").GuestTickNs, Is.EqualTo(7));

    /// <summary>The value by reflection, independently of the table's getters.</summary>
    private static long Value(CostModel costs, string name) => name.StartsWith(Costs.DiskPrefix, StringComparison.Ordinal)
        ? (long)typeof(DiskGeometry).GetProperty(name[Costs.DiskPrefix.Length..])!.GetValue(costs.Disk)!
        : (long)typeof(CostModel).GetProperty(name)!.GetValue(costs)!;

    private static IEnumerable<string> LongProperties(Type type, string prefix) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.PropertyType == typeof(long)).Select(p => prefix + p.Name);
}
