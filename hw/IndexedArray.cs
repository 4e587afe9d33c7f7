using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hw;

/// <summary>
/// An array indexed by a frame, gfn or slot number, which grows as higher numbers come into use.
/// It is kept in chunks of <see cref="ChunkEntries"/> entries, allocated when an entry in them is
/// first set: growing copies nothing, and no chunk is large enough for the runtime's large-object
/// heap, where every growth of one flat array (mem_map, the sptes, RAM) would count towards a
/// full collection of the heap. An entry never set reads as the default. Indices go up to
/// <see cref="Array.MaxLength"/>, as those of one flat array would.
/// </summary>
public sealed class IndexedArray<T>(string what)
{
    /// <summary>Entries per chunk: 32 KiB of 8-byte entries.</summary>
    public const int ChunkEntries = 1 << ChunkShift;

    private const int ChunkShift = 12;
    private const int ChunkMask = ChunkEntries - 1;

    private T[]?[] _chunks = new T[]?[16];

    /// <summary>
    /// One more than the highest index whose chunk exists: every entry at or above it is the
    /// default, and an enumeration of the set entries stops there.
    /// </summary>
    public ulong Bound { get; private set; }

    /// <summary>The entry at <paramref name="index"/>, the default if it was never set.</summary>
    public T this[ulong index]
    {
        get
        {
            // The hottest read of the model (a guest page-table walk reads RAM and the sptes at
            // every level): bounds are checked here, once, not again by the array accesses.
            var chunks = _chunks;
            ulong c = index >> ChunkShift;
            if (c >= (ulong)chunks.Length)
            {
                return default!;
            }
            var chunk = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(chunks), (nint)c);
            return chunk is null ? default! : Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(chunk), (nint)(index & ChunkMask));
        }
        set => At(index) = value;
    }

    /// <summary>The entry at <paramref name="index"/>, to set in place; makes room for it.</summary>
    public ref T At(ulong index)
    {
        if (index >= (ulong)Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"{what} {index:x} is beyond what the simulation can index");
        }
        ulong c = index >> ChunkShift;
        if (c >= (ulong)_chunks.Length)
        {
            Grow(c);
        }
        var chunk = _chunks[c] ??= new T[ChunkEntries];
        Bound = Math.Max(Bound, (c + 1) << ChunkShift);
        return ref chunk[(int)index & ChunkMask];
    }

    /// <summary>Every entry back to the default.</summary>
    public void Clear()
    {
        Array.Clear(_chunks);
        Bound = 0;
    }

    private void Grow(ulong chunk) => Array.Resize(ref _chunks, Math.Max((int)chunk + 1, _chunks.Length * 2));
}
