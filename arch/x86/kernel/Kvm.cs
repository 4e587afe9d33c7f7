using Hw;

namespace Linux;

/// <summary>arch/x86/kernel/kvm.c: struct kvm_task_sleep_node, a task (or a dummy) waiting for a token.</summary>
public sealed class KvmTaskSleepNode(uint token, int cpu)
{
    public uint Token { get; } = token;

    public int Cpu { get; } = cpu;

    /// <summary>The waiter's mm (Linux takes a reference on active_mm; the idle task's may be null here).</summary>
    public MmStruct? Mm { get; init; }

    /// <summary>The waiter; null marks a dummy entry (the page-ready came before the not-present).</summary>
    public TaskStruct? Task { get; init; }

    /// <summary>The waiter could not sleep and halts its CPU instead (patch 10).</summary>
    public bool Halted { get; init; }

    public WaitQueueHead Wq { get; } = new();

    /// <summary>On its hash bucket (hlist_unhashed() is false).</summary>
    public bool Hashed { get; set; }
}

/// <summary>arch/x86/kernel/kvm.c: struct kvm_task_sleep_head, one hash bucket.</summary>
public sealed class KvmTaskSleepHead(Kernel kernel, int index)
{
    public Spinlock Lock { get; } = new(kernel, $"async_pf_sleepers[{index}].lock");

    public List<KvmTaskSleepNode> List { get; } = [];
}

// arch/x86/kernel/kvm.c: the paravirtual guest's side of async PF (patches 1, 3, 4, 10, 11).
// Lock order: one sleeper bucket lock at a time; nothing sleeps under it.
public sealed partial class Kernel
{
    /// <summary>KVM_TASK_SLEEP_HASHBITS: 256 buckets, as upstream.</summary>
    public const int KVM_TASK_SLEEP_HASHBITS = 8;

    /// <summary>Offset of the per-CPU struct kvm_vcpu_pv_apf_data in the CPU's per-CPU page (64-byte aligned).</summary>
    public const ulong ApfReasonOffset = 64;

    private KvmTaskSleepHead[]? _asyncPfSleepers;
    private bool[] _apfEnabled = [];
    private bool _kvmGuestInitDone;

    /// <summary>Every sleeper bucket (for tests and invariants).</summary>
    public IReadOnlyList<KvmTaskSleepHead> AsyncPfSleepers => _asyncPfSleepers ?? [];

    /// <summary>apf_reason.enabled of each CPU: the host was told where the area is.</summary>
    public IReadOnlyList<bool> ApfReasonEnabled => _apfEnabled;

    /// <summary>Guest-physical address of CPU <paramref name="cpu"/>'s apf_reason.</summary>
    public static ulong ApfReasonGpa(int cpu) => ((GuestLayout.PerCpuBase + (ulong)cpu) << Pgtable.PAGE_SHIFT) + ApfReasonOffset;

    /// <summary>hash_32() with 2.6.32's GOLDEN_RATIO_PRIME_32.</summary>
    public static int Hash32(uint value, int bits) => (int)(unchecked(value * 0x9e370001u) >> (32 - bits));

    /// <summary>
    /// kvm_guest_init(): with the async PF feature, hooks the #PF path (patch 4), sets up the
    /// sleeper hash, and takes over the boot CPU's preparation (patch 1 moves that hook here).
    /// </summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_guest_init", Patches = [0, 1, 3, 4])]
    internal void KvmGuestInit(X86Cpu cpu)
    {
        if (!Config.CONFIG_KVM_GUEST || !KvmParaAvailable(cpu))
        {
            return;
        }
        _kvmGuestInitDone = true;
        _apfEnabled = new bool[HwCpus.Count];
        _smpPrepareBootCpu = KvmSmpPrepareBootCpu;
        if (KvmParaHasFeature(cpu, Config.Abi.KVM_FEATURE_ASYNC_PF))
        {
            PvCpuOps.HandlePf = KvmHandlePf;
            _asyncPfSleepers = new KvmTaskSleepHead[1 << KVM_TASK_SLEEP_HASHBITS];
            for (int i = 0; i < _asyncPfSleepers.Length; i++)
            {
                _asyncPfSleepers[i] = new KvmTaskSleepHead(this, i);
            }
        }
    }

    /// <summary>kvm_smp_prepare_boot_cpu() (moved here from kvmclock.c by patch 1): the boot CPU's clock, then its async PF.</summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_smp_prepare_boot_cpu", Patches = [1, 3])]
    private void KvmSmpPrepareBootCpu(X86Cpu cpu)
    {
        if (_kvmclockEnabled)
        {
            KvmRegisterClock(cpu);
        }
        KvmGuestCpuInit(cpu);
    }

    /// <summary>
    /// kvm_guest_cpu_init() (patch 3): tells the host where this CPU's reason word is, if the host
    /// offers async PF; a preemptible kernel also sets send-always (patch 11).
    /// </summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_guest_cpu_init", Patches = [3, 11])]
    internal void KvmGuestCpuInit(X86Cpu cpu)
    {
        if (!_kvmGuestInitDone || !KvmParaHasFeature(cpu, Config.Abi.KVM_FEATURE_ASYNC_PF))
        {
            return;
        }
        ulong pa = ApfReasonGpa(cpu.Id) | ApfAbi.KVM_ASYNC_PF_ENABLED;
        if (Config.CONFIG_PREEMPT)
        {
            pa |= ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS;
        }
        cpu.WriteGuestU32(ApfReasonGpa(cpu.Id), 0);
        if (cpu.Wrmsr(Config.Abi.MSR_KVM_ASYNC_PF_EN, pa))
        {
            _apfEnabled[cpu.Id] = true;
        }
    }

    /// <summary>kvm_pv_disable_apf() (patch 3): this CPU stops taking async PF.</summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_pv_disable_apf", Patches = [3])]
    internal void KvmPvDisableApf(X86Cpu cpu)
    {
        if (_apfEnabled.Length == 0 || !_apfEnabled[cpu.Id])
        {
            return;
        }
        cpu.Wrmsr(Config.Abi.MSR_KVM_ASYNC_PF_EN, 0);
        _apfEnabled[cpu.Id] = false;
    }

    /// <summary>kvm_pv_reboot_notify() (patch 3): on restart every CPU disables async PF.</summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_pv_reboot_notify", Patches = [3])]
    public void KvmPvRebootNotify()
    {
        foreach (var cpu in HwCpus)
        {
            KvmPvDisableApf(cpu);
        }
    }

    /// <summary>kvm_cpu_notify() (patch 3): a CPU coming online enables async PF, one going down disables it.</summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_cpu_notify", Patches = [3])]
    public void KvmCpuNotify(X86Cpu cpu, bool online)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (online)
        {
            KvmGuestCpuInit(cpu);
        }
        else
        {
            KvmPvDisableApf(cpu);
        }
    }

    /// <summary>
    /// kvm_handle_pf() (patch 4): reads and clears this CPU's reason word first (before anything
    /// can take another #PF). 0: an ordinary fault. 1: the current task waits for the token in CR2.
    /// 2: the waiter of that token is woken.
    /// </summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_handle_pf", Patches = [4])]
    private async SimTask<bool> KvmHandlePf(X86Cpu cpu, uint errorCode)
    {
        uint reason = 0;
        if (_apfEnabled[cpu.Id])
        {
            ulong gpa = ApfReasonGpa(cpu.Id);
            reason = cpu.ReadGuestU32(gpa);
            cpu.WriteGuestU32(gpa, 0);
        }
        switch (reason)
        {
            case ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT:
                await KvmAsyncPfTaskWait((uint)cpu.Cr2);
                return true;
            case ApfAbi.KVM_PV_REASON_PAGE_READY:
                KvmAsyncPfTaskWake((uint)cpu.Cr2);
                return true;
            default:
                return false;
        }
    }

    /// <summary>_find_apf_task().</summary>
    [Port("arch/x86/kernel/kvm.c", "_find_apf_task", Patches = [4])]
    private static KvmTaskSleepNode? _FindApfTask(KvmTaskSleepHead b, uint token) => b.List.Find(n => n.Token == token);

    /// <summary>
    /// kvm_async_pf_task_wait() (patches 4 and 10): the current task waits until the page behind
    /// <paramref name="token"/> is ready. A dummy entry means the wake came first: consume it and
    /// return. A task that can sleep schedules away; one that cannot (the idle task, or preemption
    /// disabled) halts the CPU with interrupts on until its entry is gone.
    /// </summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_async_pf_task_wait", Patches = [4, 10])]
    public async SimTask KvmAsyncPfTaskWait(uint token)
    {
        var me = Current;
        var b = _asyncPfSleepers![Hash32(token, KVM_TASK_SLEEP_HASHBITS)];
        b.Lock.Lock();
        bool cannotSleep = me.IsIdle || PreemptCount > 1;
        var e = _FindApfTask(b, token);
        if (e is not null)
        {
            b.List.Remove(e);
            e.Hashed = false;
            b.Lock.Unlock();
            KvmGuestTrace.Log.apf_dummy_consumed(TraceRunId, TraceVmId, me.Cpu, Now, token, Name);
            return;
        }
        var n = new KvmTaskSleepNode(token, me.Cpu) { Mm = me.Mm ?? _activeMm.GetValueOrDefault(me.Cpu), Task = me, Halted = cannotSleep, Hashed = true };
        b.List.Add(n);
        b.Lock.Unlock();
        await me.Context!.KernelCompute(Costs.GuestPageFaultNs / 3);
        if (n.Halted)
        {
            KvmGuestTrace.Log.apf_cpu_halted(TraceRunId, TraceVmId, me.Cpu, Now, token, Name);
        }
        else
        {
            KvmGuestTrace.Log.apf_task_sleep(TraceRunId, TraceVmId, me.Cpu, Now, me.Pid, token, Name);
        }
        var wait = new WaitQueue(me);
        while (true)
        {
            if (!n.Halted)
            {
                PrepareToWait(n.Wq, wait, TaskStates.TASK_UNINTERRUPTIBLE);
            }
            if (!n.Hashed)
            {
                break;
            }
            if (!n.Halted)
            {
                await Schedule();
            }
            else
            {
                // native_safe_halt(): STI; HLT. Interrupts, the page-ready among them, end it.
                me.Context.Cpu!.InterruptsEnabled = true;
                await me.Context.Halt();
            }
        }
        if (!n.Halted)
        {
            FinishWait(n.Wq, wait);
            KvmGuestTrace.Log.apf_task_woken(TraceRunId, TraceVmId, me.Cpu, Now, me.Pid, token, Name);
        }
        else
        {
            KvmGuestTrace.Log.apf_cpu_resumed(TraceRunId, TraceVmId, me.Cpu, Now, token, Name);
        }
    }

    /// <summary>apf_task_wake_one(): unhashes the entry and wakes its waiter (a halted waiter by a reschedule IPI).</summary>
    [Port("arch/x86/kernel/kvm.c", "apf_task_wake_one", Patches = [4, 10])]
    private void ApfTaskWakeOne(KvmTaskSleepHead b, KvmTaskSleepNode n)
    {
        b.List.Remove(n);
        n.Hashed = false;
        if (n.Task is null)
        {
            return; // a dummy: nobody to wake
        }
        if (n.Halted)
        {
            NativeSmpSendReschedule(SmpProcessorId, n.Cpu);
        }
        else if (n.Wq.Active)
        {
            __WakeUp(n.Wq);
        }
    }

    /// <summary>apf_task_wake_all(): every entry of this CPU, in every bucket (the wake-all token).</summary>
    [Port("arch/x86/kernel/kvm.c", "apf_task_wake_all", Patches = [4])]
    private void ApfTaskWakeAll()
    {
        int cpu = SmpProcessorId;
        int woken = 0;
        foreach (var b in _asyncPfSleepers!)
        {
            b.Lock.Lock();
            foreach (var n in b.List.Where(n => n.Cpu == cpu).ToList())
            {
                ApfTaskWakeOne(b, n);
                woken++;
            }
            b.Lock.Unlock();
        }
        KvmGuestTrace.Log.apf_wake_all(TraceRunId, TraceVmId, cpu, Now, woken, Name);
    }

    /// <summary>
    /// kvm_async_pf_task_wake() (patch 4): wakes the waiter of <paramref name="token"/>; if the
    /// not-present has not been handled yet, leaves a dummy entry that the wait will consume.
    /// </summary>
    [Port("arch/x86/kernel/kvm.c", "kvm_async_pf_task_wake", Patches = [4])]
    public void KvmAsyncPfTaskWake(uint token)
    {
        if (token == ApfAbi.WakeAllToken)
        {
            ApfTaskWakeAll();
            return;
        }
        var b = _asyncPfSleepers![Hash32(token, KVM_TASK_SLEEP_HASHBITS)];
        b.Lock.Lock();
        var n = _FindApfTask(b, token);
        if (n is null)
        {
            b.List.Add(new KvmTaskSleepNode(token, SmpProcessorId) { Hashed = true });
            b.Lock.Unlock();
            KvmGuestTrace.Log.apf_dummy_created(TraceRunId, TraceVmId, SmpProcessorId, Now, token, Name);
            return;
        }
        ApfTaskWakeOne(b, n);
        b.Lock.Unlock();
    }
}
