using KvmApf.KvmStat;

// kvm-stat: statistics of a kvm-apf run from its tracepoints (Documentation/tracing.md, kvm-stat --help).
return new KvmStatApp(Console.Out, Console.Error).Main(args);
