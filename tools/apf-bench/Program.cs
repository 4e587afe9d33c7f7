using KvmApf.Bench;
using KvmApf.Vmm;

// apf-bench: the slides' benchmark in the simulated machine (bench-contract.md, apf-bench --help).
bool interactive = !Console.IsOutputRedirected && !Console.IsErrorRedirected;
return new App(Console.Out, Console.Error, BenchRunner.Run, interactive, BenchRunner.SupportsApf).Main(args);
