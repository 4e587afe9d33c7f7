namespace KvmApf.Bench;

/// <summary>
/// The published results of the slides' benchmark (reference/bm.md): <c>./bm -f 4 -w 4 -t 60</c> in a
/// guest of 4 vCPUs and 2 GiB, in a 512 MiB memory cgroup. Source: "[PATCH v4 00/12] KVM: Add host swap
/// event notifications for PV guest", Gleb Natapov, 2010-07-06,
/// &lt;1278433500-29884-1-git-send-email-gleb@redhat.com&gt;. Totals 258846142585 and 129752639953.
/// </summary>
public static class Slides
{
    public const string Setup = "./bm -f 4 -w 4 -t 60, 4 vCPUs, 2G guest, 512M cgroup; v4 cover letter";

    /// <summary>bm's <c>worker N:</c> lines with async PF.</summary>
    public static readonly IReadOnlyList<long> WithApf = [63972141051, 65149033299, 66301967246, 63423000989];

    /// <summary>bm's <c>worker N:</c> lines without async PF.</summary>
    public static readonly IReadOnlyList<long> WithoutApf = [30619912622, 33951339266, 31577780093, 33603607972];
}
