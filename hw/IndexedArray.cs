namespace Hw;

/// <summary>Arrays indexed by a frame, gfn or slot number that grow as higher numbers come into use.</summary>
public static class IndexedArray
{
    /// <summary>
    /// Makes <paramref name="array"/> long enough to hold <paramref name="index"/>, at least doubling
    /// it when it grows; an index that no array can hold is refused with its number in the message.
    /// </summary>
    public static void EnsureIndex<T>(ref T[] array, ulong index, string what)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (index < (ulong)array.Length)
        {
            return;
        }
        if (index >= (ulong)Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"{what} {index:x} is beyond what the simulation can index");
        }
        Array.Resize(ref array, (int)Math.Min((ulong)Array.MaxLength, Math.Max(index + 1, (ulong)array.Length * 2)));
    }
}
