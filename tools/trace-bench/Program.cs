using KvmApf.TraceBench;

// trace-bench: the cost of tracing (Documentation/tracing.md, trace-bench --help).
return TraceBenchApp.Run(args, Console.Out, Console.Error);
