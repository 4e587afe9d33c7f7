using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text.Json;
using KvmApf.Tracing;

namespace KvmApf.Bench;

/// <summary>
/// <c>--timeline FILE</c>: Chrome trace-event JSON built from the run's tracepoints as they are
/// written (an in-process <see cref="EventListener"/>), which Perfetto (ui.perfetto.dev) opens. One
/// process per run; in it a track per vCPU (guest, host, stalled, halted, from
/// <see cref="VcpuTimeModel"/>, with instant events for not-present and page-ready) and a track per
/// guest task (running, runnable, asleep, asleep on a token). Times are virtual; ts is in µs.
/// </summary>
public sealed class TimelineRecorder : TracepointListener
{
    /// <summary>Tracks of guest tasks come after the vCPUs': tid = this + pid.</summary>
    public const int TaskTidBase = 100_000;

    private static readonly JsonWriterOptions WriterOptions = new() { Indented = false };

    private readonly Dictionary<long, RunTrack>? _runs;
    private readonly FileStream? _stream;
    private readonly Utf8JsonWriter? _w;
    private readonly string _temp = "";
    private readonly string _path = "";
    private bool _closed;

    public TimelineRecorder(string path, string option = "--timeline")
    {
        ArgumentNullException.ThrowIfNull(path);
        _path = path;
        _temp = OutputFile.Temporary(path, option);
        Option = option;
        _stream = new FileStream(_temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        _w = new Utf8JsonWriter(_stream, WriterOptions);
        _w.WriteStartObject();
        _w.WriteString("displayTimeUnit", "ns");
        _w.WriteStartArray("traceEvents");
        _runs = [];
    }

    private string Option { get; } = "--timeline";

    /// <summary>Trace events written so far.</summary>
    public long Written { get; private set; }

    protected override void OnTracepoint(EventWrittenEventArgs eventData)
    {
        if (_runs is null || _closed)
        {
            return;
        }
        var r = new ListenerRecord(eventData);
        long id = r.RunId;
        if (!_runs.TryGetValue(id, out var run))
        {
            run = new RunTrack(this, id);
            _runs[id] = run;
        }
        run.Apply(r);
    }

    /// <summary>Closes every open stretch at the run's last time and moves the file into place.</summary>
    public void Finish()
    {
        if (_closed)
        {
            return;
        }
        foreach (var run in _runs!.Values)
        {
            run.Finish();
        }
        _closed = true;
        _w!.WriteEndArray();
        _w.WriteEndObject();
        _w.Flush();
        _w.Dispose();
        _stream!.Dispose();
        OutputFile.Commit(_temp, _path, Option);
    }

    public override void Dispose()
    {
        if (!_closed)
        {
            _closed = true;
            _w?.Dispose();
            _stream?.Dispose();
            OutputFile.TryDelete(_temp);
        }
        base.Dispose();
    }

    private void Slice(long pid, long tid, string name, long startNs, long endNs, string? argName = null, string? argValue = null)
    {
        if (endNs <= startNs)
        {
            return;
        }
        var w = _w!;
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("ph", "X");
        w.WriteNumber("pid", pid);
        w.WriteNumber("tid", tid);
        w.WriteNumber("ts", Math.Round(startNs / 1e3, 3));
        w.WriteNumber("dur", Math.Round((endNs - startNs) / 1e3, 3));
        if (argName is not null)
        {
            w.WriteStartObject("args");
            w.WriteString(argName, argValue);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        Written++;
    }

    private void Instant(long pid, long tid, string name, long timeNs, long token, long gva)
    {
        var w = _w!;
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("ph", "i");
        w.WriteString("s", "t");
        w.WriteNumber("pid", pid);
        w.WriteNumber("tid", tid);
        w.WriteNumber("ts", Math.Round(timeNs / 1e3, 3));
        w.WriteStartObject("args");
        w.WriteString("token", Hex(token));
        w.WriteString("gva", Hex(gva));
        w.WriteEndObject();
        w.WriteEndObject();
        Written++;
    }

    private void Metadata(long pid, long? tid, string kind, string name, long? sortIndex = null)
    {
        var w = _w!;
        w.WriteStartObject();
        w.WriteString("name", kind);
        w.WriteString("ph", "M");
        w.WriteNumber("pid", pid);
        if (tid is { } t)
        {
            w.WriteNumber("tid", t);
        }
        w.WriteStartObject("args");
        if (sortIndex is { } index)
        {
            w.WriteNumber("sort_index", index);
        }
        else
        {
            w.WriteString("name", name);
        }
        w.WriteEndObject();
        w.WriteEndObject();
        Written++;
    }

    private static string Hex(long value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>One run: its vCPU models and guest tasks.</summary>
    private sealed class RunTrack(TimelineRecorder owner, long runId)
    {
        private readonly Dictionary<int, VcpuTimeModel> _vcpus = [];
        private readonly Dictionary<int, TaskTrack> _tasks = [];
        private long _entryNs;
        private long _exitNs;
        private long _lastNs;

        public void Apply(TraceRecord r)
        {
            long t = r.TimeNs;
            _lastNs = Math.Max(_lastNs, t);
            switch (r.Provider)
            {
                case TraceProviders.Vmm when r.Name == "vmm_run":
                    _entryNs = r.Long("VmEntryNs");
                    _exitNs = r.Long("VmExitNs");
                    owner.Metadata(runId, null, "process_name", $"run {runId}: {r.Text("Config")}");
                    break;
                case TraceProviders.Kvm when r.VcpuId >= 0:
                    Vcpu(r.VcpuId).Apply(r);
                    if (r.Name is "kvm_async_pf_not_present" or "kvm_async_pf_ready")
                    {
                        owner.Instant(runId, r.VcpuId, r.Name == "kvm_async_pf_ready" ? "page-ready" : "not-present", t, r.Long("Token"), r.Long("Gva"));
                    }
                    break;
                case TraceProviders.Sched:
                    Sched(r, t);
                    break;
                case TraceProviders.KvmGuest when r.Name == "apf_task_sleep":
                    Task(r.Int("Pid"), null, t).Token = r.Long("Token");
                    break;
                case TraceProviders.KvmGuest when r.Name == "apf_task_woken":
                    Task(r.Int("Pid"), null, t).Token = null;
                    break;
            }
        }

        private void Sched(TraceRecord r, long t)
        {
            switch (r.Name)
            {
                case "sched_switch":
                    if (r.Int("PrevPid") is int prev and > 0)
                    {
                        var p = Task(prev, r.Text("PrevComm"), t);
                        Move(p, t, r.Int("PrevState") == 0 ? "runnable" : p.Token is null ? "asleep" : "asleep on token");
                    }
                    if (r.Int("NextPid") is int next and > 0)
                    {
                        Move(Task(next, r.Text("NextComm"), t), t, "running");
                    }
                    break;
                case "sched_wakeup":
                case "sched_wakeup_new":
                    if (r.Int("Pid") is int pid and > 0)
                    {
                        var task = Task(pid, r.Text("Comm"), t);
                        if (task.State != "running")
                        {
                            Move(task, t, "runnable");
                        }
                    }
                    break;
            }
        }

        private void Move(TaskTrack task, long t, string state)
        {
            owner.Slice(runId, TaskTidBase + task.Pid, task.State, task.Since, t,
                task.State == "asleep on token" ? "token" : null, task.SleepToken is { } tok ? Hex(tok) : null);
            task.State = state;
            task.Since = t;
            task.SleepToken = state == "asleep on token" ? task.Token : null;
        }

        private TaskTrack Task(int pid, string? comm, long t)
        {
            if (!_tasks.TryGetValue(pid, out var task))
            {
                task = new TaskTrack(pid) { Since = t };
                _tasks[pid] = task;
                owner.Metadata(runId, TaskTidBase + pid, "thread_name", $"{comm ?? "task"} (pid {pid})");
                owner.Metadata(runId, TaskTidBase + pid, "thread_sort_index", "", TaskTidBase + pid);
            }
            return task;
        }

        private VcpuTimeModel Vcpu(int id)
        {
            if (!_vcpus.TryGetValue(id, out var model))
            {
                model = new VcpuTimeModel(_entryNs, _exitNs, (mode, start, end) => owner.Slice(runId, id, ModeName(mode), start, end));
                _vcpus[id] = model;
                owner.Metadata(runId, id, "thread_name", $"vCPU {id}");
                owner.Metadata(runId, id, "thread_sort_index", "", id);
            }
            return model;
        }

        public void Finish()
        {
            foreach (var model in _vcpus.Values)
            {
                model.Flush(_lastNs);
            }
            foreach (var task in _tasks.Values)
            {
                Move(task, _lastNs, task.State);
            }
        }

        private static string ModeName(VcpuMode mode) => mode switch
        {
            VcpuMode.Guest => "guest",
            VcpuMode.Host => "host",
            VcpuMode.Stall => "stalled",
            _ => "halted",
        };
    }

    /// <summary>A guest task's track: its state since a time, and the token it waits for.</summary>
    private sealed class TaskTrack(int pid)
    {
        public int Pid { get; } = pid;
        public string State { get; set; } = "runnable";
        public long Since { get; set; }

        /// <summary>The token of apf_task_sleep, until apf_task_woken.</summary>
        public long? Token { get; set; }

        /// <summary>The token the current "asleep on token" stretch waits for.</summary>
        public long? SleepToken { get; set; }
    }
}
