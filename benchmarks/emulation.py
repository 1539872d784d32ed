"""Speed of the CUDA emulation (device="cuda-emulated"): ns per emulated thread for a grid-stride elementwise kernel,
a shared-memory reduction with 9 barriers per thread, and warp shuffles; then whole networks, emulated CUDA engine
against the CPU engine (same machine, same run).

    python benchmarks/emulation.py [--repeat 3]

Figures go to docs/benchmarks.md with the command, the machine and the commit."""
import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def kernels(repeat):
    from darknet_py.cuda_backend import CudaOps
    ops = CudaOps("cuda-emulated")
    n = 1 << 21
    x = ops.asarray(np.random.default_rng(0).normal(size=n).astype(np.float32))
    out = ops.zeros(n)
    cases = {
        "grid-stride relu (1 element per thread)": (lambda: ops.activate(x, "relu"), n),
        "grid-stride mish": (lambda: ops.activate(x, "mish"), n),
        "block_sum: 256 threads, 9 __syncthreads each": (
            lambda: ops.k.selftest("block_sum", ops._ptr(x), n, ops._ptr(out), n // 256, 256, 0), n),
        "warp_ops: 15 shuffles + 3 votes per thread": (
            lambda: ops.k.selftest("warp_ops", ops._ptr(x), n // 8, ops._ptr(out), n // 8 // 256, 256, 0), n // 8),
    }
    for name, (fn, threads) in cases.items():
        low, median = best(fn, repeat)
        print(f"{name}: {median / threads * 1e9:.1f} ns/thread (best {low / threads * 1e9:.1f})")


def networks(repeat):
    from conftest import REPO, SHARED
    from engines import engine_pair
    import tempfile
    warnings.simplefilter("ignore")
    for cfg, size in ((SHARED / "cfg" / "yolov4-tiny.cfg", 96), (REPO / "cfg" / "mixnet_m.cfg", 128)):
        with tempfile.TemporaryDirectory() as tmp:
            cpu, gpu = engine_pair(Path(tmp), cfg, "cuda-emulated", batch=2, width=size, height=size)
        x = np.random.default_rng(1).uniform(size=(2, 3, size, size)).astype(np.float32)
        for train in (False, True):
            row = []
            for net in (cpu, gpu):
                def step():
                    out = net.forward(x, train=train)
                    if train:
                        net.backward(np.ones(out.shape, np.float32))
                row.append(best(step, repeat)[1])
            mode = "forward+backward" if train else "inference"
            print(f"{cfg.name} {size}x{size} batch 2 {mode}: CPU engine {row[0]:.2f} s, emulated CUDA engine "
                  f"{row[1]:.2f} s ({row[1] / row[0]:.0f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    kernels(args.repeat)
    networks(args.repeat)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
