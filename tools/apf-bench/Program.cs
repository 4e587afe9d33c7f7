return KvmApf.Vmm.BenchRunner.Run(new KvmApf.Vmm.BenchConfig()).Total > 0 ? 0 : 1;
