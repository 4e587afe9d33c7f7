using System.Runtime.InteropServices;

namespace KvmApf.Tracing;

/// <summary>
/// The output files of the tools (apf-bench's <c>--json</c>, <c>--trace</c>, <c>--timeline</c>, kvm-stat's <c>--json</c>): checked before the run so that a bad path
/// fails fast, written through a temporary file in the same directory and renamed into place, so that a failure
/// leaves no partial file. <c>option</c> names the option in messages. A symbolic link is followed: the file it
/// points to is replaced, not the link. A device, FIFO or socket (<c>/dev/null</c>, <c>/dev/stdout</c>, a named
/// pipe) is written in place once the content is complete: renaming onto it would replace the device node.
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
        if (IsSpecial(full))
        {
            // Opening a FIFO would wait for its reader: the write itself reports a device that refuses.
            return;
        }
        full = FinalTarget(full);
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
        string temp = Temporary(path, option);
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
            }
            Commit(temp, path, option);
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

    /// <summary>A temporary sibling of <paramref name="path"/> (of the file a link points to; in the temporary
    /// folder for a device or FIFO) to write into, and then <see cref="Commit"/> or <see cref="TryDelete"/>.</summary>
    public static string Temporary(string path, string option)
    {
        string full = FullPath(path, option);
        // Two options may both name /dev/null: their temporary files differ by the option.
        return IsSpecial(full) ? TempPath(Path.Combine(Path.GetTempPath(), Path.GetFileName(full) + option)) : TempPath(FinalTarget(full));
    }

    /// <summary>Renames the finished <paramref name="temp"/> file to <paramref name="path"/>, or copies it into a device or FIFO.</summary>
    public static void Commit(string temp, string path, string option)
    {
        try
        {
            string full = FullPath(path, option);
            if (IsSpecial(full))
            {
                using (var source = new FileStream(temp, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16))
                using (var target = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 0))
                {
                    source.CopyTo(target);
                }
                TryDelete(temp);
                return;
            }
            File.Move(temp, FinalTarget(full), overwrite: true);
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

    /// <summary>True if <paramref name="path"/> and <paramref name="other"/> name the same regular file (or would create it).</summary>
    public static bool SameFile(string path, string other, string option)
    {
        string a = FullPath(path, option);
        string b = FullPath(other, option);
        return !IsSpecial(a) && string.Equals(FinalTarget(a), FinalTarget(b), StringComparison.Ordinal);
    }

    /// <summary>Where a path's symbolic links lead, or the path itself.</summary>
    private static string FinalTarget(string full)
    {
        try
        {
            return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            // A loop of links, or one that cannot be read: the write reports it.
            return full;
        }
    }

    /// <summary>True if <paramref name="full"/> exists and is neither a regular file nor a directory (a device, FIFO or
    /// socket), following links: statx(2)'s file type, which .NET does not expose.</summary>
    private static bool IsSpecial(string full)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        var buffer = new byte[StatxSize];
        try
        {
            if (Statx(AtFdcwd, full, 0, StatxType, buffer) != 0)
            {
                return false;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // A libc without statx (glibc before 2.28): treat every path as a file, as before.
            return false;
        }
        int type = BitConverter.ToUInt16(buffer, StatxModeOffset) & SIfmt;
        return type is not (SIfreg or SIfdir);
    }

    private const int AtFdcwd = -100;
    private const uint StatxType = 0x1;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int SIfmt = 0xf000;
    private const int SIfreg = 0x8000;
    private const int SIfdir = 0x4000;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    /// <summary>A hidden sibling of the target, unique to this process.</summary>
    private static string TempPath(string full) =>
        Path.Combine(Path.GetDirectoryName(full) ?? "", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
}
