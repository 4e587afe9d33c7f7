using System.Runtime.CompilerServices;
using Hw;
using KvmApf.EngineBench;

namespace KvmApf.Tests.Hw;

/// <summary>
/// A coroutine for the allocation test, equivalent to
/// <code>
/// async SimTask Run() { while (true) Iterations += await Outer(); }
/// async SimTask&lt;long&gt; Outer() => await Inner() > 0 ? 1 : 0;
/// async SimTask&lt;long&gt; Inner() { long ns = 1 + rng.NextBelow(MaxDelayNs); await sleeper.Delay(ns); return ns; }
/// </code>
/// with the state machines written out as the compiler emits them in an optimized build
/// (structs, boxed by the builder on first suspension). The test project builds in Debug,
/// where the compiler emits state machines as classes and allocates one per call; written
/// out, the test measures only what hw/ controls: the builder, its pools and the loop.
/// </summary>
internal sealed class WarmCoroutine(EventLoop loop, Rng rng)
{
    public const int MaxDelayNs = 100;

    private readonly Sleeper _sleeper = new(loop);

    public long Iterations { get; private set; }

    public SimTask Run()
    {
        var machine = new RunMachine { Builder = SimTaskMethodBuilder.Create(), This = this, State = -1 };
        machine.Builder.Start(ref machine);
        return machine.Builder.Task;
    }

    private SimTask<long> Outer()
    {
        var machine = new OuterMachine { Builder = SimTaskMethodBuilder<long>.Create(), State = -1, This = this };
        machine.Builder.Start(ref machine);
        return machine.Builder.Task;
    }

    private SimTask<long> Inner()
    {
        var machine = new InnerMachine { Builder = SimTaskMethodBuilder<long>.Create(), State = -1, This = this };
        machine.Builder.Start(ref machine);
        return machine.Builder.Task;
    }

    private struct RunMachine : IAsyncStateMachine
    {
        public int State;
        public SimTaskMethodBuilder Builder;
        public WarmCoroutine This;
        private SimTask<long>.Awaiter _awaiter;

        public void MoveNext()
        {
            try
            {
                while (true)
                {
                    SimTask<long>.Awaiter awaiter;
                    if (State != 0)
                    {
                        awaiter = This.Outer().GetAwaiter();
                        if (!awaiter.IsCompleted)
                        {
                            State = 0;
                            _awaiter = awaiter;
                            Builder.AwaitUnsafeOnCompleted(ref awaiter, ref this);
                            return;
                        }
                    }
                    else
                    {
                        awaiter = _awaiter;
                        _awaiter = default;
                        State = -1;
                    }
                    This.Iterations += awaiter.GetResult();
                }
            }
            catch (Exception e)
            {
                State = -2;
                Builder.SetException(e);
            }
        }

        public readonly void SetStateMachine(IAsyncStateMachine stateMachine) => Builder.SetStateMachine(stateMachine);
    }

    private struct OuterMachine : IAsyncStateMachine
    {
        public int State;
        public SimTaskMethodBuilder<long> Builder;
        public WarmCoroutine This;
        private SimTask<long>.Awaiter _awaiter;

        public void MoveNext()
        {
            long result;
            try
            {
                SimTask<long>.Awaiter awaiter;
                if (State != 0)
                {
                    awaiter = This.Inner().GetAwaiter();
                    if (!awaiter.IsCompleted)
                    {
                        State = 0;
                        _awaiter = awaiter;
                        Builder.AwaitUnsafeOnCompleted(ref awaiter, ref this);
                        return;
                    }
                }
                else
                {
                    awaiter = _awaiter;
                    _awaiter = default;
                    State = -1;
                }
                result = awaiter.GetResult() > 0 ? 1 : 0;
            }
            catch (Exception e)
            {
                State = -2;
                Builder.SetException(e);
                return;
            }
            State = -2;
            Builder.SetResult(result);
        }

        public readonly void SetStateMachine(IAsyncStateMachine stateMachine) => Builder.SetStateMachine(stateMachine);
    }

    private struct InnerMachine : IAsyncStateMachine
    {
        public int State;
        public SimTaskMethodBuilder<long> Builder;
        public WarmCoroutine This;
        private long _ns;
        private SimTask.Awaiter _awaiter;

        public void MoveNext()
        {
            long result;
            try
            {
                SimTask.Awaiter awaiter;
                if (State != 0)
                {
                    _ns = 1 + (long)This.NextDelay();
                    awaiter = This._sleeper.Delay(_ns).GetAwaiter();
                    if (!awaiter.IsCompleted)
                    {
                        State = 0;
                        _awaiter = awaiter;
                        Builder.AwaitUnsafeOnCompleted(ref awaiter, ref this);
                        return;
                    }
                }
                else
                {
                    awaiter = _awaiter;
                    _awaiter = default;
                    State = -1;
                }
                awaiter.GetResult();
                result = _ns;
            }
            catch (Exception e)
            {
                State = -2;
                Builder.SetException(e);
                return;
            }
            State = -2;
            Builder.SetResult(result);
        }

        public readonly void SetStateMachine(IAsyncStateMachine stateMachine) => Builder.SetStateMachine(stateMachine);
    }

    private ulong NextDelay() => rng.NextBelow(MaxDelayNs);
}
