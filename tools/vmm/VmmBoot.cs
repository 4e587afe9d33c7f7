using Hw;
using Linux;

namespace KvmApf.Vmm;

/// <summary>
/// What QEMU does to start a guest, as the VMM process: map guest RAM anonymously, create the VM
/// (KVM_CREATE_VM) with one memory slot over that RAM, power the guest on with an init program,
/// and start one thread per vCPU calling KVM_RUN. Shared by <see cref="Machine"/> and the test rigs.
/// </summary>
public static class VmmBoot
{
    /// <summary>Where the VMM maps guest RAM in its address space.</summary>
    public const ulong GuestRamHva = 0x7f10_0000_0000UL;

    /// <summary>
    /// Runs in the VMM's main thread. Returns the VM and its vCPUs (each vCPU thread creates its
    /// vCPU before its first KVM_RUN, which happens before this returns). <paramref name="beforeMemslot"/>
    /// lets a caller register its own MMU notifier (or anything else) between KVM_CREATE_VM and the slot.
    /// </summary>
    public static (Kvm Vm, KvmVcpu[] Vcpus) Launch(Kernel host, Kernel guest, MmStruct vmmMm, IReadOnlyList<X86Cpu> cpus,
        ulong ramBytes, bool tdp, SerialPort console, Func<TaskStruct, SimTask> init, Action<Kvm>? beforeMemslot = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(guest);
        ArgumentNullException.ThrowIfNull(cpus);
        Kernel.DoMmapPgoff(vmmMm, GuestRamHva, ramBytes, write: true);
        var vm = host.KvmCreateVm(vmmMm, tdp);
        guest.TraceVmId = vm.Id; // for the guest's tracepoints: a guest cannot know its VM
        beforeMemslot?.Invoke(vm);
        if (host.__KvmSetMemoryRegion(vm, 0, ramBytes, GuestRamHva) != 0)
        {
            throw new InvalidOperationException("KVM_SET_USER_MEMORY_REGION failed");
        }
        var vcpus = new KvmVcpu[cpus.Count];
        guest.PowerOn(console, ramBytes, init);
        for (int i = 0; i < cpus.Count; i++)
        {
            int id = i;
            host.DoFork($"qemu-vcpu{i}", vmmMm, t => VcpuThread(host, vm, cpus[id], t, id, vcpus));
        }
        return (vm, vcpus);
    }

    private static async SimTask VcpuThread(Kernel host, Kvm vm, X86Cpu cpu, TaskStruct self, int id, KvmVcpu[] vcpus)
    {
        var vcpu = host.KvmVcpuInit(vm, id, cpu, self);
        vcpus[id] = vcpu;
        int r = await host.__VcpuRun(vcpu);
        if (r < 0)
        {
            throw new InvalidOperationException($"KVM_RUN on vcpu {id} failed with {r}");
        }
    }
}
