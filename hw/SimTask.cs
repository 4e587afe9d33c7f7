using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Hw;

/// <summary>The result type of a <see cref="SimTask"/> that has none.</summary>
public readonly struct VoidResult;

/// <summary>
/// What a <see cref="SimTask"/> or <see cref="SimTask{T}"/> waits on: a state-machine box of
/// the method builder, or a signal that something outside completes. A source is reusable:
/// consuming the result bumps <see cref="Version"/>, so a task value is awaited once.
/// </summary>
public abstract class SimTaskSource<T>
{
    private short _version;
    private bool _done;
    private T _result = default!;
    private ExceptionDispatchInfo? _error;
    private Action? _continuation;

    /// <summary>
    /// Set by the builder's boxes, whose completion always resumes the awaiter inline: saves
    /// the virtual call to <see cref="Continue"/> at every level of a chain of async calls.
    /// </summary>
    private protected bool ResumesInline { get; init; }

    /// <summary>The token that the next task built on this source carries.</summary>
    public short Version => _version;

    internal bool IsCompleted(short token)
    {
        Check(token);
        return _done;
    }

    internal void OnCompleted(Action continuation, short token)
    {
        Check(token);
        if (_continuation is not null)
        {
            throw new InvalidOperationException("a SimTask is awaited by one awaiter only");
        }
        if (_done)
        {
            Resume(continuation);
            return;
        }
        _continuation = continuation;
    }

    internal T GetResult(short token)
    {
        Check(token);
        if (!_done)
        {
            throw new InvalidOperationException("the SimTask has not completed; await it instead of reading its result");
        }
        T result = _result;
        ExceptionDispatchInfo? error = _error;
        _result = default!;
        _error = null;
        _done = false;
        _version++;
        Recycle();
        error?.Throw();
        return result;
    }

    /// <summary>Completes the source with a result and hands the continuation on.</summary>
    protected void SetResultCore(T result)
    {
        if (_done)
        {
            throw new InvalidOperationException("a SimTask source completed twice");
        }
        _result = result;
        _done = true;
        Action? c = _continuation;
        _continuation = null;
        if (c is not null)
        {
            Resume(c);
        }
    }

    /// <summary>Completes the source with an exception that the awaiter will see.</summary>
    protected void SetExceptionCore(Exception error)
    {
        if (_done)
        {
            throw new InvalidOperationException("a SimTask source completed twice");
        }
        _error = ExceptionDispatchInfo.Capture(error);
        _done = true;
        Action? c = _continuation;
        _continuation = null;
        if (c is not null)
        {
            Resume(c);
        }
    }

    /// <summary>How the awaiter resumes: inline for a child method's box, from the loop for an outside wake.</summary>
    protected abstract void Continue(Action continuation);

    private void Resume(Action continuation)
    {
        if (ResumesInline)
        {
            continuation();
        }
        else
        {
            Continue(continuation);
        }
    }

    /// <summary>Called once the result was consumed; pools return the source here.</summary>
    protected virtual void Recycle()
    {
    }

    private void Check(short token)
    {
        if (token != _version)
        {
            throw new InvalidOperationException("this SimTask was already awaited (its source has moved on)");
        }
    }
}

/// <summary>
/// The awaitable of sleeping kernel code (DESIGN section 2): an <c>await</c> in a port marks a
/// place where the C code may sleep. Default is a completed task.
/// </summary>
[AsyncMethodBuilder(typeof(SimTaskMethodBuilder))]
public readonly struct SimTask
{
    private readonly SimTaskSource<VoidResult>? _source;
    private readonly short _token;

    public SimTask(SimTaskSource<VoidResult> source, short token)
    {
        _source = source;
        _token = token;
    }

    /// <summary>A task that has already completed.</summary>
    public static SimTask CompletedTask => default;

    public bool IsCompleted => _source is null || _source.IsCompleted(_token);

    public Awaiter GetAwaiter() => new(_source, _token);

    /// <summary>
    /// For a top-level coroutine that nobody awaits: makes an exception it ends with propagate out
    /// of the event loop instead of being lost.
    /// </summary>
    public void Forget()
    {
        if (_source is null)
        {
            return;
        }
        var awaiter = GetAwaiter();
        if (awaiter.IsCompleted)
        {
            awaiter.GetResult();
            return;
        }
        awaiter.OnCompleted(() => awaiter.GetResult());
    }

    public readonly struct Awaiter(SimTaskSource<VoidResult>? source, short token) : ICriticalNotifyCompletion
    {
        public bool IsCompleted => source is null || source.IsCompleted(token);

        public void GetResult() => source?.GetResult(token);

        public void OnCompleted(Action continuation) => source!.OnCompleted(continuation, token);

        public void UnsafeOnCompleted(Action continuation) => source!.OnCompleted(continuation, token);
    }
}

/// <summary>A <see cref="SimTask"/> with a result: the shape of a C function that sleeps and returns a value.</summary>
[AsyncMethodBuilder(typeof(SimTaskMethodBuilder<>))]
public readonly struct SimTask<T>
{
    private readonly SimTaskSource<T>? _source;
    private readonly short _token;
    private readonly T _result;

    public SimTask(T result)
    {
        _source = null;
        _token = 0;
        _result = result;
    }

    public SimTask(SimTaskSource<T> source, short token)
    {
        _source = source;
        _token = token;
        _result = default!;
    }

    public bool IsCompleted => _source is null || _source.IsCompleted(_token);

    public Awaiter GetAwaiter() => new(_source, _token, _result);

    public static implicit operator SimTask<T>(T result) => new(result);

    public void Forget()
    {
        if (_source is null)
        {
            return;
        }
        var awaiter = GetAwaiter();
        if (awaiter.IsCompleted)
        {
            awaiter.GetResult();
            return;
        }
        awaiter.OnCompleted(() => awaiter.GetResult());
    }

    public readonly struct Awaiter(SimTaskSource<T>? source, short token, T result) : ICriticalNotifyCompletion
    {
        public bool IsCompleted => source is null || source.IsCompleted(token);

        public T GetResult() => source is null ? result : source.GetResult(token);

        public void OnCompleted(Action continuation) => source!.OnCompleted(continuation, token);

        public void UnsafeOnCompleted(Action continuation) => source!.OnCompleted(continuation, token);
    }
}

/// <summary>
/// A method's state machine, boxed on its first suspension. Boxes are pooled in an unbounded
/// free list per state-machine type and per thread (the only static mutable state of the
/// project), so a warm simulation allocates nothing per suspension.
/// </summary>
internal sealed class StateMachineBox<TStateMachine, TResult> : BuilderBox<TResult>
    where TStateMachine : IAsyncStateMachine
{
    [ThreadStatic]
    private static StateMachineBox<TStateMachine, TResult>? s_free;

    private StateMachineBox<TStateMachine, TResult>? _nextFree;

    public TStateMachine StateMachine = default!;

    private StateMachineBox()
    {
        MoveNextAction = MoveNext;
        ResumesInline = true;
    }

    public static StateMachineBox<TStateMachine, TResult> Rent()
    {
        var box = s_free;
        if (box is null)
        {
            return new StateMachineBox<TStateMachine, TResult>();
        }
        s_free = box._nextFree;
        box._nextFree = null;
        return box;
    }

    private void MoveNext() => StateMachine.MoveNext();

    /// <summary>A child method's completion resumes its parent inline (DESIGN section 2).</summary>
    protected override void Continue(Action continuation) => continuation();

    protected override void Recycle()
    {
        StateMachine = default!;
        _nextFree = s_free;
        s_free = this;
    }
}

/// <summary>
/// The part of a state-machine box that the builder sees. The builder keeps only this
/// reference and a synchronous result, so that the state machine it lives in stays small:
/// the state machine is copied into its box at the first suspension.
/// </summary>
internal abstract class BuilderBox<TResult> : SimTaskSource<TResult>
{
    /// <summary>The box's MoveNext, allocated once per box; null for a <see cref="FaultedSource{TResult}"/>.</summary>
    public Action? MoveNextAction { get; protected init; }

    public void SetResult(TResult result) => SetResultCore(result);

    public void SetException(Exception error) => SetExceptionCore(error);
}

/// <summary>Carries an exception thrown before a method's first suspension.</summary>
internal sealed class FaultedSource<TResult> : BuilderBox<TResult>
{
    public FaultedSource(Exception error) => SetExceptionCore(error);

    protected override void Continue(Action continuation) => continuation();
}

/// <summary>Method builder of <see cref="SimTask"/>.</summary>
public struct SimTaskMethodBuilder
{
    private SimTaskMethodBuilder<VoidResult> _inner;

    public static SimTaskMethodBuilder Create() => default;

    public readonly SimTask Task
    {
        get
        {
            var (source, token) = _inner.SourceAndToken;
            return source is null ? default : new SimTask(source, token);
        }
    }

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => stateMachine.MoveNext();

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
    }

    public void SetResult() => _inner.SetResult(default);

    public void SetException(Exception exception) => _inner.SetException(exception);

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitOnCompleted(ref awaiter, ref stateMachine);

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine => _inner.AwaitUnsafeOnCompleted(ref awaiter, ref stateMachine);
}

/// <summary>Method builder of <see cref="SimTask{T}"/>.</summary>
public struct SimTaskMethodBuilder<T>
{
    // The state-machine box once the method has suspended, or the faulted source of an
    // exception thrown before that; null while the method runs synchronously.
    private BuilderBox<T>? _box;
    private T _result;

    public static SimTaskMethodBuilder<T> Create() => default;

    internal readonly (SimTaskSource<T>? Source, short Token) SourceAndToken =>
        _box is null ? (null, 0) : (_box, _box.Version);

    public readonly SimTask<T> Task => _box is null ? new SimTask<T>(_result) : new SimTask<T>(_box, _box.Version);

    public readonly void Start<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine => stateMachine.MoveNext();

    public readonly void SetStateMachine(IAsyncStateMachine stateMachine)
    {
    }

    public void SetResult(T result)
    {
        if (_box is null)
        {
            _result = result;
            return;
        }
        _box.SetResult(result);
    }

    public void SetException(Exception exception)
    {
        if (_box is null)
        {
            _box = new FaultedSource<T>(exception);
            return;
        }
        _box.SetException(exception);
    }

    public void AwaitOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : INotifyCompletion
        where TStateMachine : IAsyncStateMachine => awaiter.OnCompleted(GetMoveNext(ref stateMachine));

    public void AwaitUnsafeOnCompleted<TAwaiter, TStateMachine>(ref TAwaiter awaiter, ref TStateMachine stateMachine)
        where TAwaiter : ICriticalNotifyCompletion
        where TStateMachine : IAsyncStateMachine => awaiter.UnsafeOnCompleted(GetMoveNext(ref stateMachine));

    private Action GetMoveNext<TStateMachine>(ref TStateMachine stateMachine)
        where TStateMachine : IAsyncStateMachine
    {
        if (_box is not null)
        {
            return _box.MoveNextAction!;
        }
        var box = StateMachineBox<TStateMachine, T>.Rent();
        // Set the builder's field before copying the state machine, so that the boxed copy's
        // builder already points at its box.
        _box = box;
        box.StateMachine = stateMachine;
        return box.MoveNextAction!;
    }
}
