"""greenroom's benchmarks: every figure beside a bare baseline measured in the same run."""
