using System.Text.Json;

namespace KvmApf.Tracing;

/// <summary>
/// How the tools' JSON reads (apf-bench's bench-contract.md documents, kvm-stat's <c>--json</c>):
/// indented, <c>\n</c> line ends, a final newline, and objects of integers keyed in a fixed order.
/// </summary>
public static class ReportJson
{
    private static readonly JsonWriterOptions Options = new() { Indented = true, NewLine = "\n" };

    /// <summary>The document <paramref name="write"/> writes, UTF-8, ending with a newline.</summary>
    public static byte[] Document(Action<Utf8JsonWriter> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            write(w);
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    /// <summary>An object of integers, keys in the order given: the property <paramref name="name"/>, or an array element if it is null.</summary>
    public static void WriteNumbers(Utf8JsonWriter w, string? name, params ReadOnlySpan<(string Key, long Value)> fields)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (name is null)
        {
            w.WriteStartObject();
        }
        else
        {
            w.WriteStartObject(name);
        }
        foreach (var (key, value) in fields)
        {
            w.WriteNumber(key, value);
        }
        w.WriteEndObject();
    }
}
