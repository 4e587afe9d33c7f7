using Hw;

namespace Linux;

/// <summary>
/// The kernel image. Every ported C file is a part of this class: its functions are methods,
/// its global and static variables are fields declared in the file that defines them in C.
/// Host and guest are two instances with their own <see cref="Kconfig"/>; an instance never
/// holds a reference to another one, and reaches the other side only through the hardware.
/// </summary>
public sealed partial class Kernel
{
}
