namespace Hw;

/// <summary>
/// A 16550-style serial port reduced to lines of text: the guest's console. The VMM reads what
/// the guest prints (bm's "start", "worker N:" and "total:" lines) from here.
/// </summary>
public sealed class SerialPort
{
    private readonly List<string> _lines = [];

    /// <summary>Every line written so far.</summary>
    public IReadOnlyList<string> Lines => _lines;

    /// <summary>Called for each line as it is written, at the virtual time of the write.</summary>
    public Action<string>? LineWritten { get; set; }

    public void WriteLine(string line)
    {
        _lines.Add(line);
        LineWritten?.Invoke(line);
    }
}
