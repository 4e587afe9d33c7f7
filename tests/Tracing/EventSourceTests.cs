using System.Diagnostics.Tracing;
using System.Reflection;
using System.Text.RegularExpressions;
using KvmApf.Tracing;
using KvmApf.Vmm;
using Linux;

namespace KvmApf.Tests.Tracing;

/// <summary>
/// The rules every tracepoint source follows (DESIGN section 5, STYLE rule 8): a strict manifest,
/// fixed ids, a level and a declared keyword on every event, no name ending in Start or Stop (EventSource
/// would give those activity meaning), the common header (RunId, VmId, VcpuId, TimeNs ... Kernel), and a
/// Message whose placeholders name real fields. Checked by reflection over each source.
/// </summary>
[TestFixture, Category("tracing"), Description("Tracepoint EventSources: strict manifests, ids, keywords, header, messages")]
public sealed partial class EventSourceTests
{
    private static readonly TestCaseData[] Sources =
    [
        new TestCaseData(typeof(KvmTrace), KvmTrace.ProviderName, TraceProviders.Kvm).SetArgDisplayNames("Linux-KVM"),
        new TestCaseData(typeof(KvmGuestTrace), KvmGuestTrace.ProviderName, TraceProviders.KvmGuest).SetArgDisplayNames("Linux-KVM-Guest"),
        new TestCaseData(typeof(SchedTrace), SchedTrace.ProviderName, TraceProviders.Sched).SetArgDisplayNames("Linux-Sched"),
        new TestCaseData(typeof(VmmTrace), VmmTrace.ProviderName, TraceProviders.Vmm).SetArgDisplayNames("KvmApf-Vmm"),
    ];

    private static IEnumerable<(MethodInfo Method, EventAttribute Event)> Events(Type source) =>
        source.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Select(m => (m, m.GetCustomAttribute<EventAttribute>()))
            .Where(x => x.Item2 is not null)
            .Select(x => (x.m, x.Item2!));

    [TestCaseSource(nameof(Sources))]
    public void GenerateManifest_Strict_DoesNotThrow(Type source, string providerName, string toolsName)
    {
        string? manifest = null;
        Assert.That(() => manifest = EventSource.GenerateManifest(source, null, EventManifestOptions.Strict), Throws.Nothing);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(manifest, Does.Contain($"name=\"{providerName}\""));
            Assert.That(EventSource.GetName(source), Is.EqualTo(providerName));
            Assert.That(toolsName, Is.EqualTo(providerName), "tools/trace-model names the provider as the source does");
        }
    }

    [TestCaseSource(nameof(Sources))]
    public void Events_IdsLevelsKeywords_FixedAndDeclared(Type source, string providerName, string toolsName)
    {
        var events = Events(source).ToList();
        var declared = source.GetNestedType("Keywords")!.GetFields().Select(f => (long)(EventKeywords)f.GetValue(null)!).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(events, Is.Not.Empty);
            Assert.That(events.Select(e => e.Event.EventId), Is.Unique);
            Assert.That(events.Select(e => e.Event.EventId), Is.All.GreaterThan(0));
            Assert.That(events.Select(e => e.Event.Level), Is.All.AnyOf(EventLevel.Informational, EventLevel.Verbose));
            Assert.That(events.Select(e => (long)e.Event.Keywords), Is.All.Not.EqualTo(0L), "every event has a keyword");
            Assert.That(events.Select(e => (long)e.Event.Keywords).Distinct(), Is.SubsetOf(declared), "one declared keyword per event");
            Assert.That(events.Select(e => e.Method.Name), Has.None.EndsWith("Start").And.None.EndsWith("Stop"));
        }
    }

    [TestCaseSource(nameof(Sources))]
    public void Events_Payload_HasTheHeaderAndKernelLast(Type source, string providerName, string toolsName)
    {
        foreach (var (method, _) in Events(source))
        {
            var p = method.GetParameters();
            string[] head = [.. p.Take(4).Select(x => $"{x.ParameterType.Name} {x.Name}")];
            using (Assert.EnterMultipleScope())
            {
                Assert.That(head, Is.EqualTo(new[] { "Int64 RunId", "Int32 VmId", "Int32 VcpuId", "Int64 TimeNs" }), method.Name);
                Assert.That($"{p[^1].ParameterType.Name} {p[^1].Name}", Is.EqualTo("String Kernel"), method.Name);
            }
        }
    }

    [TestCaseSource(nameof(Sources))]
    public void Events_Message_PlaceholdersNameFields(Type source, string providerName, string toolsName)
    {
        foreach (var (method, attribute) in Events(source))
        {
            int fields = method.GetParameters().Length;
            var used = Placeholder().Matches(attribute.Message ?? "").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            using (Assert.EnterMultipleScope())
            {
                Assert.That(attribute.Message, Is.Not.Null.And.Not.Empty, method.Name);
                Assert.That(used, Is.All.LessThan(fields), method.Name);
            }
        }
    }

    [Test]
    public void KvmTrace_SeedEvents_KeepTheirIdsAndFields()
    {
        var events = Events(typeof(KvmTrace)).ToDictionary(e => e.Method.Name, e => (e.Event.EventId, Fields: e.Method.GetParameters()[4..^1].Select(p => p.Name).ToArray()));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(events["kvm_try_async_get_page"], Is.EqualTo((1, new[] { "Pfn", "Async" })));
            Assert.That(events["kvm_async_pf_not_present"], Is.EqualTo((2, new[] { "Token", "Gva" })));
            Assert.That(events["kvm_async_pf_ready"], Is.EqualTo((3, new[] { "Token", "Gva" })));
            Assert.That(events["kvm_async_pf_completed"], Is.EqualTo((4, new[] { "Address", "Gva" })));
            Assert.That(events["kvm_async_pf_sync_fallback"], Is.EqualTo((5, new[] { "Gva", "Reason" })));
            Assert.That(events["kvm_async_pf_doublefault"], Is.EqualTo((6, new[] { "Gva", "Gfn" })));
        }
    }

    [TestCaseSource(nameof(Sources))]
    public void Source_ConstructedWithoutError(Type source, string providerName, string toolsName)
    {
        var log = (EventSource)source.GetField("Log", BindingFlags.Public | BindingFlags.Static)!.GetValue(null)!;
        Assert.That(log.ConstructionException, Is.Null);
    }

    [GeneratedRegex(@"\{(\d+)\}")]
    private static partial Regex Placeholder();
}
