using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hw;

/// <summary>
/// Host physical memory, byte-addressable and sparse: a frame costs memory only once something
/// stores non-derivable content in it (page tables, the async PF area). Data pages that the
/// workloads merely touch stay empty; their residency is the host kernel's metadata, not bytes.
/// Frame numbers are handed out by the host kernel's page allocator; this is only the storage.
/// </summary>
public interface IPhysicalMemory
{
    ulong ReadU64(ulong hpa);

    void WriteU64(ulong hpa, ulong value);

    uint ReadU32(ulong hpa);

    void WriteU32(ulong hpa, uint value);

    /// <summary>Detaches the content of frame <paramref name="pfn"/> (null if it never held any), leaving the frame empty.</summary>
    byte[]? TakeFrame(ulong pfn);

    /// <summary>Installs <paramref name="content"/> (or nothing) as frame <paramref name="pfn"/>'s content.</summary>
    void PutFrame(ulong pfn, byte[]? content);

    /// <summary>Number of frames that hold content.</summary>
    int FramesWithContent { get; }
}

/// <inheritdoc cref="IPhysicalMemory"/>
public sealed class PhysicalMemory : IPhysicalMemory
{
    public const int PageShift = 12;
    public const int PageSize = 1 << PageShift;

    /// <summary>Content by frame number; grows with the highest frame that ever held content.</summary>
    private readonly IndexedArray<byte[]?> _frames = new("frame");

    public int FramesWithContent { get; private set; }

    public ulong ReadU64(ulong hpa) =>
        Existing(hpa >> PageShift) is { } f ? Unsafe.ReadUnaligned<ulong>(ref At(f, Offset(hpa, 8))) : 0;

    public void WriteU64(ulong hpa, ulong value)
    {
        var f = Frame(hpa, value != 0);
        if (f is not null)
        {
            Unsafe.WriteUnaligned(ref At(f, Offset(hpa, 8)), value);
        }
    }

    public uint ReadU32(ulong hpa) =>
        Existing(hpa >> PageShift) is { } f ? Unsafe.ReadUnaligned<uint>(ref At(f, Offset(hpa, 4))) : 0;

    public void WriteU32(ulong hpa, uint value)
    {
        var f = Frame(hpa, value != 0);
        if (f is not null)
        {
            Unsafe.WriteUnaligned(ref At(f, Offset(hpa, 4)), value);
        }
    }

    public byte[]? TakeFrame(ulong pfn)
    {
        var f = Existing(pfn);
        if (f is not null)
        {
            _frames[pfn] = null;
            FramesWithContent--;
        }
        return f;
    }

    public void PutFrame(ulong pfn, byte[]? content)
    {
        if (content is not null && content.Length != PageSize)
        {
            // Every frame is a whole page: the reads and writes index it without a check of their own.
            throw new ArgumentException($"frame {pfn:x}: content of {content.Length} bytes, not a page", nameof(content));
        }
        TakeFrame(pfn);
        if (content is not null)
        {
            Slot(pfn) = content;
            FramesWithContent++;
        }
    }

    private byte[]? Existing(ulong pfn) => _frames[pfn];

    private ref byte[]? Slot(ulong pfn) => ref _frames.At(pfn);

    private byte[]? Frame(ulong hpa, bool create)
    {
        ulong pfn = hpa >> PageShift;
        if (Existing(pfn) is { } f)
        {
            return f;
        }
        if (!create)
        {
            return null;
        }
        f = new byte[PageSize];
        Slot(pfn) = f;
        FramesWithContent++;
        return f;
    }

    /// <summary>The byte at <paramref name="offset"/> of a frame; <see cref="Offset"/> has checked that the access fits in it.</summary>
    private static ref byte At(byte[] frame, int offset) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(frame), offset);

    private static int Offset(ulong address, int size)
    {
        int offset = (int)(address & (PageSize - 1));
        if (offset + size > PageSize || (offset & (size - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(address), $"unaligned {size}-byte access at {address:x}");
        }
        return offset;
    }
}
