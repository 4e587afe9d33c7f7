using System.Globalization;

namespace KvmApf.Bench;

/// <summary>
/// Progress of one simulation on standard error, redrawn in place when the whole percentage changes.
/// Reports arrive synchronously from the runner (not through <see cref="Progress{T}"/>, which posts them
/// later), so the line is gone before the results are printed.
/// </summary>
public sealed class ConsoleProgress(TextWriter error, string label) : IProgress<double>
{
    private int _shown = -1;
    private int _width;

    public void Report(double value)
    {
        int percent = (int)Math.Clamp(value * 100, 0, 100);
        if (percent == _shown)
        {
            return;
        }
        _shown = percent;
        string line = $"apf-bench: {label} {percent.ToString(CultureInfo.InvariantCulture),3}%";
        _width = line.Length;
        error.Write("\r" + line);
        error.Flush();
    }

    /// <summary>Erases the line, if one was drawn.</summary>
    public void Clear()
    {
        if (_shown >= 0)
        {
            error.Write("\r" + new string(' ', _width) + "\r");
            error.Flush();
            _shown = -1;
        }
    }
}
