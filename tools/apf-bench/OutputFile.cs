namespace KvmApf.Bench;

/// <summary>
/// The output files (<c>--json</c>, <c>--trace</c>, <c>--timeline</c>): checked before the run so that a bad path
/// fails fast, written through a temporary file in the same directory and renamed into place, so that a failure
/// leaves no partial file. <c>option</c> names the option in messages.
/// </summary>
public static class OutputFile
{
    /// <summary>Throws <see cref="BadInputException"/> unless <paramref name="path"/> can be created or replaced.</summary>
    public static void CheckWritable(string path, string option = "--json")
    {
        string full = FullPath(path, option);
        if (Directory.Exists(full))
        {
            throw BadInputException.For(option, $"'{path}' is a directory");
        }
        string directory = Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(directory))
        {
            throw BadInputException.For(option, $"cannot write '{path}': directory '{directory}' does not exist");
        }
        try
        {
            using var probe = new FileStream(TempPath(full), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BadInputException.For(option, $"cannot write in '{directory}': {e.Message}");
        }
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> whole or not at all.</summary>
    public static void WriteAtomically(string path, byte[] bytes, string option = "--json") =>
        WriteAtomically(path, stream => stream.Write(bytes), option);

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, whole or not at all.</summary>
    public static void WriteAtomically(string path, Action<Stream> write, string option = "--json")
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = FullPath(path, option);
        string temp = TempPath(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw BadInputException.For(option, $"cannot write '{path}': {e.Message}");
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>A temporary sibling of <paramref name="path"/> to write into, and then <see cref="Commit"/> or <see cref="TryDelete"/>.</summary>
    public static string Temporary(string path, string option) => TempPath(FullPath(path, option));

    /// <summary>Renames the finished <paramref name="temp"/> file to <paramref name="path"/>.</summary>
    public static void Commit(string temp, string path, string option)
    {
        try
        {
            File.Move(temp, FullPath(path, option), overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw BadInputException.For(option, $"cannot write '{path}': {e.Message}");
        }
    }

    /// <summary>Removes a temporary file, if it is there.</summary>
    public static void TryDelete(string temp)
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

    private static string FullPath(string path, string option)
    {
        try
        {
            return Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw BadInputException.For(option, $"'{path}' is not a file name: {e.Message}");
        }
    }

    /// <summary>A hidden sibling of the target, unique to this process.</summary>
    private static string TempPath(string full) =>
        Path.Combine(Path.GetDirectoryName(full) ?? "", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
}
