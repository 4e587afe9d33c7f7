namespace KvmApf.Bench;

/// <summary>
/// The <c>--json FILE</c> output: checked before the run so that a bad path fails fast, written through a
/// temporary file in the same directory and renamed into place, so that a failure leaves no partial file.
/// </summary>
public static class OutputFile
{
    private const string Option = "--json";

    /// <summary>Throws <see cref="BadInputException"/> unless <paramref name="path"/> can be created or replaced.</summary>
    public static void CheckWritable(string path)
    {
        string full = FullPath(path);
        if (Directory.Exists(full))
        {
            throw BadInputException.For(Option, $"'{path}' is a directory");
        }
        string directory = Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(directory))
        {
            throw BadInputException.For(Option, $"cannot write '{path}': directory '{directory}' does not exist");
        }
        try
        {
            using var probe = new FileStream(TempPath(full), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BadInputException.For(Option, $"cannot write in '{directory}': {e.Message}");
        }
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> whole or not at all.</summary>
    public static void WriteAtomically(string path, byte[] bytes)
    {
        string full = FullPath(path);
        string temp = TempPath(full);
        try
        {
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw BadInputException.For(Option, $"cannot write '{path}': {e.Message}");
        }
    }

    private static void TryDelete(string temp)
    {
        try
        {
            File.Delete(temp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The directory itself is gone or closed: nothing was left in it.
        }
    }

    private static string FullPath(string path)
    {
        try
        {
            return Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw BadInputException.For(Option, $"'{path}' is not a file name: {e.Message}");
        }
    }

    /// <summary>A hidden sibling of the target, unique to this process.</summary>
    private static string TempPath(string full) =>
        Path.Combine(Path.GetDirectoryName(full) ?? "", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
}
