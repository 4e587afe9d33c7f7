namespace KvmApf.Vmm;

/// <summary>Runs the slides' benchmark in a freshly built machine.</summary>
public static class BenchRunner
{
    /// <summary>
    /// Builds the machine for <paramref name="config"/>, boots it, runs bm and returns the
    /// figures. <paramref name="progress"/> gets the fraction of simulated time done (0..1).
    /// Throws <see cref="ArgumentException"/> for a configuration that <see cref="BenchConfig.Validate"/> rejects.
    /// </summary>
    public static BenchResult Run(BenchConfig config, IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Validate() is { } problem)
        {
            throw new ArgumentException($"{problem.Option}: {problem.Message}", nameof(config));
        }
        _ = progress;
        throw new NotImplementedException("the machine is being built");
    }
}
