using Hw;

namespace Linux;

/// <summary>The figures of the run's <c>apf</c> object, kept beside the tracepoints that carry the same events.</summary>
public sealed class AsyncPfCounters
{
    public long NotPresent { get; set; }
    public long PageReady { get; set; }
    public long WakeAll { get; set; }
    public long SyncFallbacks { get; set; }
    public long MaxOutstanding { get; set; }
}

// virt/kvm/AsyncPf.cs: the generic async page fault code. v3 keeps these hunks in
// virt/kvm/kvm_main.c under #ifdef CONFIG_KVM_ASYNC_PF (patch 8); seeds/004 asks for a file of
// their own with an init/exit pair, which later trees call virt/kvm/async_pf.c. The swap-in runs
// on the system workqueue (v5's slow_work is not modelled).
//
// Lock order: vcpu->async_pf_lock is innermost; nothing sleeps under it.
public sealed partial class Kernel
{
    private bool _asyncPfCacheReady;

    /// <summary>ASYNC_PF_PER_VCPU: outstanding async faults one vCPU may have (64, as upstream settled; seeds/000 and 004).</summary>
    public int AsyncPfPerVcpu { get; set; } = 64;

    /// <summary>
    /// Fault injection for the GFP_NOWAIT allocation of a work item: when it returns true the
    /// allocation fails and the fault is handled synchronously (seeds/004).
    /// </summary>
    public Func<KvmVcpu, bool>? AsyncPfAllocFails { get; set; }

    /// <summary>The async PF figures of this host.</summary>
    public AsyncPfCounters ApfCounters { get; } = new();

    /// <summary>Identifies this run in tracepoints.</summary>
    public long TraceRunId { get; set; }

    /// <summary>kvm_async_pf_init(): creates the work-item cache (module init).</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_async_pf_init", Patches = [8])]
    public int KvmAsyncPfInit()
    {
        _asyncPfCacheReady = Config.CONFIG_KVM_ASYNC_PF;
        return _asyncPfCacheReady ? 0 : -Errno.ENOMEM;
    }

    /// <summary>kvm_async_pf_deinit(): destroys the cache (module exit).</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_async_pf_deinit", Patches = [8])]
    public void KvmAsyncPfDeinit() => _asyncPfCacheReady = false;

    /// <summary>kvm_async_pf_vcpu_init(): the vCPU's lists and lock.</summary>
    [Port("virt/kvm/kvm_main.c", "kvm_async_pf_vcpu_init", Patches = [8])]
    private void KvmAsyncPfVcpuInit(KvmVcpu vcpu) => vcpu.AsyncPfLock = new Spinlock(this, $"vcpu{vcpu.VcpuId}->async_pf_lock");

    /// <summary>
    /// async_pf_execute(): the worker. Faults the page in with get_user_pages on the VMM's mm
    /// (sleeping on the swap-in), puts the item on the vCPU's done list, and wakes the vCPU if it
    /// is blocked; a running vCPU sees the completion at its next exit.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "async_pf_execute", Patches = [8])]
    private async SimTask AsyncPfExecute(WorkStruct w)
    {
        MightSleep();
        var work = (KvmAsyncPf)w.Data!;
        var vcpu = work.Vcpu;
        var page = await GetUserPages(Current, vcpu.Kvm.Mm, work.Addr, write: true);
        if (work.Cancelled)
        {
            return; // the queue was cleared meanwhile: nobody waits for this item
        }
        vcpu.AsyncPfLock!.Lock();
        work.Done = true;
        work.Pfn = page?.Pfn ?? BadPfn;
        vcpu.AsyncPfDone.Add(work);
        vcpu.AsyncPfLock.Unlock();
        KvmTrace.Log.kvm_async_pf_completed(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, (long)work.Addr, (long)work.Gva, Name);
        if (vcpu.Wq.Active)
        {
            __WakeUp(vcpu.Wq, nrExclusive: 0);
        }
    }

    /// <summary>
    /// kvm_clear_async_pf_completion_queue(): drops every outstanding item (guest disabled async
    /// PF, reset, vCPU destroy). Unlike Linux it cannot wait for a worker that is mid-swap-in
    /// (the MSR write that calls it runs inline): such an item is marked cancelled and its worker
    /// frees it when it finishes.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "kvm_clear_async_pf_completion_queue", Patches = [8])]
    public void KvmClearAsyncPfCompletionQueue(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        foreach (var work in vcpu.AsyncPfQueue)
        {
            work.Cancelled = true;
        }
        vcpu.AsyncPfQueue.Clear();
        vcpu.AsyncPfLock?.Lock();
        vcpu.AsyncPfDone.Clear();
        vcpu.AsyncPfLock?.Unlock();
        vcpu.AsyncPfQueued = 0;
        KvmTrace.Log.kvm_async_pf_queued(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, 0, "clear", Name);
    }

    /// <summary>
    /// kvm_check_async_pf_completion(): presents one completed item to the guest, if the guest
    /// can take it now: the page is mapped first (patch 9), then the page-ready is injected.
    /// Called once per pass of the vCPU run loop.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "kvm_check_async_pf_completion", Patches = [8, 9])]
    public async SimTask KvmCheckAsyncPfCompletion(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        MightSleep();
        if (vcpu.AsyncPfDone.Count == 0 || !KvmArchCanInjectAsyncPagePresent(vcpu))
        {
            return;
        }
        vcpu.AsyncPfLock!.Lock();
        var work = vcpu.AsyncPfDone[0];
        vcpu.AsyncPfDone.RemoveAt(0);
        vcpu.AsyncPfLock.Unlock();
        vcpu.AsyncPfQueue.Remove(work);
        vcpu.AsyncPfQueued--;
        KvmTrace.Log.kvm_async_pf_queued(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, vcpu.AsyncPfQueued, "done", Name);
        if (!work.WakeupAll)
        {
            await KvmArchAsyncPageReady(vcpu, work);
        }
        await KvmArchInjectAsyncPagePresent(vcpu, work);
    }

    /// <summary>
    /// kvm_setup_async_pf(): starts an async fault. Refuses (the caller then faults synchronously)
    /// when the vCPU is at its cap, when the GFP_NOWAIT allocation fails, or when the gfn has no hva.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "kvm_setup_async_pf", Patches = [8])]
    public async SimTask<(bool Ok, string? Refusal)> KvmSetupAsyncPf(KvmVcpu vcpu, ulong gva, ulong gfn, uint token, ulong cr3, bool halt = false)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        MightSleep();
        if (vcpu.AsyncPfQueued >= AsyncPfPerVcpu)
        {
            return (false, "cap");
        }
        if (!_asyncPfCacheReady || (AsyncPfAllocFails?.Invoke(vcpu) ?? false))
        {
            return (false, "allocation");
        }
        ulong addr = GfnToHva(vcpu.Kvm, gfn);
        if (addr == BadHva)
        {
            return (false, "bad hva");
        }
        var work = new KvmAsyncPf(vcpu) { Gva = gva, Gfn = gfn, Addr = addr, Token = token, Cr3 = cr3, CreatedNs = Now, Halt = halt };
        QueueWork(new WorkStruct(AsyncPfExecute, work));
        vcpu.AsyncPfQueue.Add(work);
        vcpu.AsyncPfQueued++;
        ApfCounters.MaxOutstanding = Math.Max(ApfCounters.MaxOutstanding, vcpu.AsyncPfQueued);
        KvmTrace.Log.kvm_async_pf_queued(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, vcpu.AsyncPfQueued, "setup", Name);
        await KvmArchInjectAsyncPageNotPresent(vcpu, work);
        return (true, null);
    }

    /// <summary>
    /// kvm_async_pf_wakeup_all(): queues a page-ready with token ~0 that wakes every task the
    /// guest has waiting on this vCPU (after migration, or when the guest enables async PF).
    /// Skipped when completions are already queued.
    /// </summary>
    [Port("virt/kvm/kvm_main.c", "kvm_async_pf_wakeup_all", Patches = [8])]
    public int KvmAsyncPfWakeupAll(KvmVcpu vcpu)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (vcpu.AsyncPfDone.Count > 0)
        {
            return 0;
        }
        var work = new KvmAsyncPf(vcpu) { WakeupAll = true, Done = true, Token = ApfAbi.WakeAllToken, CreatedNs = Now };
        vcpu.AsyncPfLock!.Lock();
        vcpu.AsyncPfDone.Add(work);
        vcpu.AsyncPfLock.Unlock();
        vcpu.AsyncPfQueue.Add(work);
        vcpu.AsyncPfQueued++;
        KvmTrace.Log.kvm_async_pf_queued(TraceRunId, vcpu.Kvm.Id, vcpu.VcpuId, Now, vcpu.AsyncPfQueued, "wakeup_all", Name);
        return 0;
    }
}
