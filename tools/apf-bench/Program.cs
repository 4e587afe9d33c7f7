var r = KvmApf.Vmm.BenchRunner.Run(new KvmApf.Vmm.BenchConfig { DurationNs = long.Parse(args.Length > 0 ? args[0] : "60000000000", System.Globalization.CultureInfo.InvariantCulture) });
foreach (var w in r.Workers) Console.WriteLine($"{w.Name}: {w.Counter}");
Console.WriteLine($"total: {r.Total}");
foreach (var v in r.Vcpus) Console.WriteLine(v);
foreach (var f in r.FaultThreads) Console.WriteLine(f);
Console.WriteLine(r.Host); Console.WriteLine(r.Sim); Console.WriteLine(r.Shares);
return 0;
