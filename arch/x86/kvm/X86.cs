using Hw;

namespace Linux;

/// <summary>The exits a vCPU's VMX CPU hands to KVM without leaving the guest's flow of time (MSR, CPUID).</summary>
public sealed class KvmInlineExits(Kernel kernel, KvmVcpu vcpu) : IInlineExitHandler
{
    public bool WriteMsr(int cpuId, uint index, ulong value) => kernel.KvmSetMsrCommon(vcpu, index, value) == 0;

    public bool ReadMsr(int cpuId, uint index, out ulong value) => kernel.KvmGetMsrCommon(vcpu, index, out value) == 0;

    public uint Cpuid(int cpuId, uint leaf) => kernel.KvmEmulateCpuid(vcpu, leaf);
}

// arch/x86/kvm/x86.c (patch 0): the vCPU run loop, event injection, MSRs and CPUID.
public sealed partial class Kernel
{
    /// <summary>kvm_arch_vcpu_init(): local APIC and MMU.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_vcpu_init")]
    private void KvmArchVcpuInit(KvmVcpu vcpu)
    {
        KvmAsyncPfVcpuInit(vcpu);
        KvmCreateLapic(vcpu);
        KvmMmuSetup(vcpu);
        vcpu.Cpu.InlineExits = new KvmInlineExits(this, vcpu);
        vcpu.EnterGuest = new EnterGuestFrame(this, vcpu);
    }

    /// <summary>
    /// KVM_RUN → kvm_arch_vcpu_ioctl_run() → __vcpu_run(): enters the guest again and again,
    /// blocking while the vCPU is halted, until something must go to userspace.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "__vcpu_run")]
    public async SimTask<int> __VcpuRun(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        MightSleep();
        int r = 1;
        while (r > 0 && !vcpu.StopRequested)
        {
            if (vcpu.Arch.MpState == KvmAbi.KVM_MP_STATE_RUNNABLE && !vcpu.Arch.ApfHalted)
            {
                r = await VcpuEnterGuest(vcpu);
            }
            else
            {
                await KvmVcpuBlock(vcpu);
                if (KvmArchVcpuRunnable(vcpu))
                {
                    vcpu.Arch.MpState = KvmAbi.KVM_MP_STATE_RUNNABLE;
                    vcpu.Arch.ApfHalted = false; // the guest retries the access (or first takes the interrupt)
                }
            }
            if (Config.CONFIG_KVM_ASYNC_PF)
            {
                await KvmCheckAsyncPfCompletion(vcpu);
            }
        }
        return r;
    }

    /// <summary>vcpu_enter_guest(): injects what is pending, runs the guest until it exits, handles the exit.</summary>
    /// <remarks>
    /// Not an async method: what follows the VM entry is the vCPU's <see cref="EnterGuestFrame"/>,
    /// the same object at every entry (Documentation/deviations.md, S6).
    /// </remarks>
    [Port("arch/x86/kvm/x86.c", "vcpu_enter_guest")]
    private SimTask<int> VcpuEnterGuest(KvmVcpu vcpu)
    {
        MightSleep();
        KvmInjectApicTimerIrqs(vcpu);
        var injection = InjectPendingEvent(vcpu);
        return vcpu.EnterGuest.AfterEntry(VmxVcpuRun(vcpu, injection));
    }

    /// <summary>
    /// vcpu_enter_guest() of one vCPU from its VM entry on: waits for the exit, then does what the
    /// function does with it, in the function's order, and completes with vmx_handle_exit()'s
    /// result. It is the rest of <see cref="VcpuEnterGuest"/>, written as the continuation of the
    /// entry instead of the rest of an async method, so that the frame that waits for the exit is
    /// made once per vCPU rather than once per entry; each step resumes where an <c>await</c> of
    /// the async method would.
    /// </summary>
    internal sealed class EnterGuestFrame : SimTaskSource<int>
    {
        private readonly Kernel _kernel;
        private readonly KvmVcpu _vcpu;
        private readonly Action _exited;
        private readonly Action _handled;
        private SimTask<VmExit>.Awaiter _exit;
        private SimTask<int>.Awaiter _handler;

        public EnterGuestFrame(Kernel kernel, KvmVcpu vcpu)
        {
            _kernel = kernel;
            _vcpu = vcpu;
            _exited = Exited;
            _handled = Handled;
        }

        /// <summary>The rest of vcpu_enter_guest() after <paramref name="entry"/>, the task of the VM entry.</summary>
        public SimTask<int> AfterEntry(SimTask<VmExit> entry)
        {
            var task = new SimTask<int>(this, Version);
            _exit = entry.GetAwaiter();
            if (_exit.IsCompleted)
            {
                Exited();
            }
            else
            {
                _exit.UnsafeOnCompleted(_exited);
            }
            return task;
        }

        /// <summary>The guest has exited: the exit is counted and handled.</summary>
        private void Exited()
        {
            try
            {
                var exit = _exit.GetResult();
                _exit = default;
                _kernel.Current = _vcpu.Thread;
                _vcpu.Arch.Exits++;
                VmxCompleteInterrupts(_vcpu, exit);
                // Whatever time passes inside the handler is the vCPU thread asleep (its non-sleeping
                // work is paid before the next entry), so it counts as stalled.
                _vcpu.Cpu.Residency.Mark(VcpuState.Stall);
                _handler = _kernel.VmxHandleExit(_vcpu, exit).GetAwaiter();
                if (!_handler.IsCompleted)
                {
                    _handler.UnsafeOnCompleted(_handled);
                    return;
                }
            }
            catch (Exception e)
            {
                SetExceptionCore(e);
                return;
            }
            Handled();
        }

        /// <summary>The exit handler has returned (perhaps after sleeping): back in the vCPU thread, done.</summary>
        private void Handled()
        {
            int r;
            try
            {
                r = _handler.GetResult();
                _handler = default;
            }
            catch (Exception e)
            {
                SetExceptionCore(e);
                return;
            }
            _kernel.Current = _vcpu.Thread;
            _vcpu.Cpu.Residency.Mark(VcpuState.Host);
            SetResultCore(r);
        }

        /// <summary>The vCPU thread resumes inline, as a parent resumes after its child method.</summary>
        protected override void Continue(Action continuation) => continuation();
    }

    /// <summary>
    /// inject_pending_event(): an exception first, then a re-injected interrupt, then the
    /// local APIC's highest deliverable interrupt if the guest can take it (else ask for an
    /// interrupt window).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "inject_pending_event")]
    private static EventInjection? InjectPendingEvent(KvmVcpu vcpu)
    {
        ref var exception = ref vcpu.Arch.Exception;
        if (exception.Pending)
        {
            exception.Pending = false;
            return new EventInjection(exception.Nr, IsException: true, exception.ErrorCode, exception.HasErrorCode, exception.Address);
        }
        ref var interrupt = ref vcpu.Arch.Interrupt;
        if (interrupt.Pending)
        {
            interrupt.Pending = false;
            return new EventInjection(interrupt.Nr, IsException: false);
        }
        if (KvmCpuHasInterrupt(vcpu))
        {
            if (VmxInterruptAllowed(vcpu))
            {
                return new EventInjection((byte)KvmGetApicInterrupt(vcpu), IsException: false);
            }
            EnableIrqWindow(vcpu);
        }
        return null;
    }

    /// <summary>kvm_cpu_has_interrupt().</summary>
    [Port("arch/x86/kvm/irq.c", "kvm_cpu_has_interrupt")]
    private static bool KvmCpuHasInterrupt(KvmVcpu vcpu) => KvmApicHasInterrupt(vcpu) >= 0;

    /// <summary>kvm_inject_page_fault(): queues a #PF for the guest.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_inject_page_fault")]
    public static void KvmInjectPageFault(KvmVcpu vcpu, ulong addr, uint errorCode)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.Arch.Exception = new KvmQueuedException
        {
            Pending = true, Nr = Vectors.PageFault, HasErrorCode = true, ErrorCode = errorCode, Address = addr,
        };
    }

    /// <summary>
    /// kvm_vcpu_ioctl_x86_get_vcpu_events() (KVM_GET_VCPU_EVENTS): the exception and interrupt
    /// the vCPU has queued for injection, a re-injection included, for the VMM to save.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_vcpu_ioctl_x86_get_vcpu_events")]
    public static KvmVcpuEvents KvmVcpuIoctlX86GetVcpuEvents(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        ref readonly var exception = ref vcpu.Arch.Exception;
        bool payload = exception.Pending && exception.Nr == Vectors.PageFault;
        return new KvmVcpuEvents
        {
            ExceptionInjected = exception.Pending,
            ExceptionNr = exception.Nr,
            ExceptionHasErrorCode = exception.HasErrorCode,
            ExceptionErrorCode = exception.ErrorCode,
            ExceptionHasPayload = payload,
            ExceptionPayload = payload ? exception.Address : 0,
            InterruptInjected = vcpu.Arch.Interrupt.Pending,
            InterruptNr = vcpu.Arch.Interrupt.Nr,
        };
    }

    /// <summary>
    /// kvm_vcpu_ioctl_x86_set_vcpu_events() (KVM_SET_VCPU_EVENTS): queues the events the VMM
    /// saved, so the next entry injects them as the vCPU it was saved from would have.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_vcpu_ioctl_x86_set_vcpu_events")]
    public static int KvmVcpuIoctlX86SetVcpuEvents(KvmVcpu vcpu, in KvmVcpuEvents events)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.Arch.Exception = new KvmQueuedException
        {
            Pending = events.ExceptionInjected,
            Nr = events.ExceptionNr,
            HasErrorCode = events.ExceptionHasErrorCode,
            ErrorCode = events.ExceptionErrorCode,
            Address = events.ExceptionHasPayload ? events.ExceptionPayload : 0,
        };
        vcpu.Arch.Interrupt = new KvmQueuedInterrupt { Pending = events.InterruptInjected, Nr = events.InterruptNr };
        return 0;
    }

    /// <summary>kvm_arch_vcpu_runnable(): a halted vCPU wakes for an interrupt.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_vcpu_runnable")]
    public static bool KvmArchVcpuRunnable(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return (vcpu.Arch.MpState == KvmAbi.KVM_MP_STATE_RUNNABLE && !vcpu.Arch.ApfHalted)
            || vcpu.AsyncPfDone.Count > 0
            || vcpu.Arch.Apic.Pending > 0
            || KvmCpuHasInterrupt(vcpu)
            || vcpu.Arch.Interrupt.Pending
            || vcpu.Arch.Exception.Pending;
    }

    /// <summary>kvm_vcpu_kick(): wakes a blocked vCPU thread, or makes a running vCPU exit.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_vcpu_kick")]
    public void KvmVcpuKick(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (vcpu.Wq.Active)
        {
            __WakeUp(vcpu.Wq, nrExclusive: 0);
        }
        else
        {
            vcpu.Cpu.Kick();
        }
    }

    /// <summary>kvm_set_msr_common() (and the x2APIC range of kvm_x2apic_msr_write). Non-zero means #GP.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_set_msr_common")]
    public int KvmSetMsrCommon(KvmVcpu vcpu, uint msr, ulong data)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (msr is >= 0x800 and <= 0x8ff)
        {
            return ApicRegWrite(vcpu, msr, data) ? 0 : 1;
        }
        if (Config.CONFIG_KVM_ASYNC_PF && msr == Config.Abi.MSR_KVM_ASYNC_PF_EN)
        {
            return KvmPvEnableAsyncPf(vcpu, data);
        }
        return msr switch
        {
            KvmPara.MSR_KVM_WALL_CLOCK or KvmPara.MSR_KVM_SYSTEM_TIME => 0,
            _ => 1,
        };
    }

    /// <summary>kvm_get_msr_common(). Non-zero means #GP.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_get_msr_common")]
    public int KvmGetMsrCommon(KvmVcpu vcpu, uint msr, out ulong data)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        data = 0;
        if (Config.CONFIG_KVM_ASYNC_PF && msr == Config.Abi.MSR_KVM_ASYNC_PF_EN)
        {
            data = vcpu.Arch.ApfMsrVal;
            return 0;
        }
        return msr is KvmPara.MSR_KVM_WALL_CLOCK or KvmPara.MSR_KVM_SYSTEM_TIME ? 0 : 1;
    }

    /// <summary>
    /// do_cpuid_ent(): EAX of a KVM leaf as the host offers it (KVM_GET_SUPPORTED_CPUID): the
    /// signature leaf names the last leaf; the features leaf has the paravirtual features, to
    /// which patch 2 adds KVM_FEATURE_ASYNC_PF.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "do_cpuid_ent", Patches = [0, 2])]
    public uint DoCpuidEnt(uint function) => function switch
    {
        KvmPara.KVM_CPUID_SIGNATURE => KvmPara.KVM_CPUID_FEATURES,
        KvmPara.KVM_CPUID_FEATURES => (1u << KvmPara.KVM_FEATURE_CLOCKSOURCE) | (1u << KvmPara.KVM_FEATURE_NOP_IO_DELAY)
            | (Config.CONFIG_KVM_ASYNC_PF ? 1u << Config.Abi.KVM_FEATURE_ASYNC_PF : 0),
        _ => 0,
    };

    /// <summary>kvm_emulate_cpuid(): the guest's CPUID exit, answered from the supported entries.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_emulate_cpuid")]
    public uint KvmEmulateCpuid(KvmVcpu vcpu, uint leaf) => DoCpuidEnt(leaf);
}

// arch/x86/kvm/x86.c, the series' part: the enable MSR (patches 2, 7, 11), injecting the two
// async PF events (patch 8), the prefault before entry (patch 9), reset and the ABI the VMM sees.
public sealed partial class Kernel
{
    /// <summary>True once the guest has enabled async PF on this vCPU.</summary>
    public static bool ApfEnabled(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        return (vcpu.Arch.ApfMsrVal & ApfAbi.KVM_ASYNC_PF_ENABLED) != 0;
    }

    /// <summary>
    /// kvm_pv_enable_async_pf(): a write of MSR_KVM_ASYNC_PF_EN. Reserved bits (bits 2–5 after
    /// patch 11; they include a misaligned area's low bits) are #GP. Disabling drops every
    /// outstanding fault; enabling caches the area's hva (patch 7), records send-always (patch 11)
    /// and queues a wake-all, so nothing the guest had waiting sleeps forever (migration).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_pv_enable_async_pf", Patches = [2, 7, 11])]
    private int KvmPvEnableAsyncPf(KvmVcpu vcpu, ulong data)
    {
        if ((data & ApfAbi.KVM_ASYNC_PF_RESERVED_MASK) != 0)
        {
            return 1;
        }
        vcpu.Arch.ApfMsrVal = data;
        if ((data & ApfAbi.KVM_ASYNC_PF_ENABLED) == 0)
        {
            KvmClearAsyncPfCompletionQueue(vcpu);
            return 0;
        }
        if (KvmGfnToHvaCacheInit(vcpu.Kvm, vcpu.Arch.ApfData, data & ~0x3fUL) != 0)
        {
            vcpu.Arch.ApfMsrVal = 0;
            return 1;
        }
        vcpu.Arch.ApfSendUserOnly = (data & ApfAbi.KVM_ASYNC_PF_SEND_ALWAYS) == 0;
        KvmAsyncPfWakeupAll(vcpu);
        return 0;
    }

    /// <summary>apf_put_user() (patch 8, through patch 7's cache): writes the reason word.</summary>
    [Port("arch/x86/kvm/x86.c", "apf_put_user", Patches = [8])]
    private SimTask<int> ApfPutUser(KvmVcpu vcpu, uint value) => KvmWriteGuestCached(vcpu.Kvm, vcpu.Arch.ApfData, value);

    /// <summary>kvm_event_needs_reinjection(): an exception or interrupt waits to be (re)injected.</summary>
    [Port("arch/x86/kvm/x86.h", "kvm_event_needs_reinjection")]
    private static bool KvmEventNeedsReinjection(KvmVcpu vcpu) => vcpu.Arch.Exception.Pending || vcpu.Arch.Interrupt.Pending;

    /// <summary>
    /// kvm_arch_inject_async_page_not_present() (patch 8): reason 1 in the guest's area, then a #PF
    /// whose CR2 is the token (error code 0).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_inject_async_page_not_present", Patches = [8])]
    private async SimTask KvmArchInjectAsyncPageNotPresent(KvmVcpu vcpu, KvmAsyncPf work)
    {
        MightSleep();
        KvmTrace.Log.kvm_async_pf_not_present(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, work.Token, (long)work.Gva, Name);
        if (work.Halt)
        {
            vcpu.Arch.ApfHalted = true;
            return;
        }
        if (await ApfPutUser(vcpu, ApfAbi.KVM_PV_REASON_PAGE_NOT_PRESENT) == 0)
        {
            ApfCounters.NotPresent++;
            KvmTrace.Log.kvm_async_pf_inject(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, KvmTrace.ReasonNotPresent, work.Token, Name);
            work.NotPresentInjected = true;
            KvmInjectPageFault(vcpu, work.Token, 0);
        }
    }

    /// <summary>
    /// kvm_arch_inject_async_page_present() (patch 8): reason 2 and a #PF with the token (~0 for
    /// a wake-all), if the guest still has async PF enabled and was told of the not-present (a
    /// page-ready for a fault the guest never saw would leave it a dummy entry forever: the
    /// notpresent_injected rule of 5.8, bugzilla 208081).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_inject_async_page_present", Patches = [8])]
    private async SimTask KvmArchInjectAsyncPagePresent(KvmVcpu vcpu, KvmAsyncPf work)
    {
        MightSleep();
        uint token = work.WakeupAll ? ApfAbi.WakeAllToken : work.Token;
        KvmTrace.Log.kvm_async_pf_ready(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, token, (long)work.Gva, Name);
        vcpu.Arch.ApfHalted = false;
        if ((work.WakeupAll || work.NotPresentInjected) && ApfEnabled(vcpu) && await ApfPutUser(vcpu, ApfAbi.KVM_PV_REASON_PAGE_READY) == 0)
        {
            if (work.WakeupAll)
            {
                ApfCounters.WakeAll++;
            }
            else
            {
                ApfCounters.PageReady++;
            }
            KvmTrace.Log.kvm_async_pf_inject(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, KvmTrace.ReasonPageReady, token, Name);
            KvmInjectPageFault(vcpu, token, 0);
        }
    }

    /// <summary>kvm_arch_can_inject_async_page_present() (patch 8): nothing to re-inject and interrupts allowed.</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_can_inject_async_page_present", Patches = [8])]
    private static bool KvmArchCanInjectAsyncPagePresent(KvmVcpu vcpu) =>
        !ApfEnabled(vcpu) || (!KvmEventNeedsReinjection(vcpu) && VmxInterruptAllowed(vcpu));

    /// <summary>
    /// kvm_arch_async_page_ready() (patch 9): maps the page before the guest retries, so the
    /// retried access does not exit. TDP, and shadow paging under the CR3 the fault was taken in.
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_async_page_ready", Patches = [9])]
    private async SimTask KvmArchAsyncPageReady(KvmVcpu vcpu, KvmAsyncPf work)
    {
        MightSleep();
        PrefaultsBeforeEntry++;
        if (vcpu.Kvm.Arch.TdpEnabled)
        {
            await TdpPageFault(vcpu, work.Gva, 0, prefault: true);
        }
        else
        {
            await Paging64PageFault(vcpu, work.Gva, (uint)PfErr.Write | (uint)PfErr.User, work.Cr3, prefault: true);
        }
    }

    /// <summary>Prefaults patch 9 made before a VM entry.</summary>
    public long PrefaultsBeforeEntry { get; private set; }

    /// <summary>
    /// kvm_vcpu_reset() (KVM_SET_REGS to reset state, INIT, or the VMM's reset after a triple
    /// fault): drops queued async work and pending injections and turns async PF off (seeds/000).
    /// </summary>
    [Port("arch/x86/kvm/x86.c", "kvm_arch_vcpu_reset", Patches = [0, 8])]
    public void KvmArchVcpuReset(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        vcpu.Arch.Exception = default;
        vcpu.Arch.Interrupt = default;
        vcpu.Arch.MpState = KvmAbi.KVM_MP_STATE_RUNNABLE;
        vcpu.Arch.ApfHalted = false;
        vcpu.Arch.ApfMsrVal = 0;
        KvmClearAsyncPfCompletionQueue(vcpu);
    }

    /// <summary>kvm_dev_ioctl_check_extension() (patch 2 adds KVM_CAP_ASYNC_PF).</summary>
    [Port("arch/x86/kvm/x86.c", "kvm_dev_ioctl_check_extension", Patches = [0, 2])]
    public int KvmDevIoctlCheckExtension(int ext) =>
        Config.CONFIG_KVM_ASYNC_PF && ext == Config.Abi.KVM_CAP_ASYNC_PF ? 1 : 0;

    /// <summary>msrs_to_save (patch 2 adds the async PF MSR): what the VMM saves and restores with a vCPU.</summary>
    [Port("arch/x86/kvm/x86.c", "msrs_to_save", Patches = [0, 2])]
    public uint[] MsrsToSave => Config.CONFIG_KVM_ASYNC_PF
        ? [KvmPara.MSR_KVM_SYSTEM_TIME, KvmPara.MSR_KVM_WALL_CLOCK, Config.Abi.MSR_KVM_ASYNC_PF_EN]
        : [KvmPara.MSR_KVM_SYSTEM_TIME, KvmPara.MSR_KVM_WALL_CLOCK];
}
