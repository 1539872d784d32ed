"""The Python overhead per layer of CPU inference at batch 1 (issue 20): efficientnet_b0 and cfg/mixnet_m.cfg at
32x32 (where the kernels have almost nothing to do) and 224x224, 2 kernel threads.

    python benchmarks/layer_overhead.py [--repeat N] [--sizes 32,224] [--nets efficientnet_b0,mixnet_m] [--threads N]

Per net and size it prints the median ms per forward and us per layer, then the split between time inside the
calls of the C++ kernels (darknet_py._C, each function wrapped with a timer for a second run of forwards) and
outside them (Python: the layers, the ops' argument preparation, network.forward's loop), per forward and per
layer. The timers add about a microsecond per kernel call to the second run, which is why the first run, without
them, gives the ms per forward. Last, "Python": the median forward whose kernel calls return the results recorded
in one real forward (KernelReplay), the Python work alone, which neither the kernels' threads nor other processes
competing with them for the cores disturb (BLAS, outside _C, still runs). Inputs above 64x64 run a quarter of
--repeat forwards. Random well-scaled weights (tests/reference_nets.py)."""
import argparse
import functools
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def forward_times(net, x, repeat):
    """Seconds of each of `repeat` forwards, after 3 warm-up forwards."""
    for _ in range(3):
        net.forward(x)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        net.forward(x)
        times.append(time.perf_counter() - start)
    return times


def kernel_functions(module):
    """{name: function} of the module's public functions (the kernels and their helpers)."""
    return {name: fn for name, fn in vars(module).items()
            if callable(fn) and not isinstance(fn, type) and not name.startswith("_")}


class KernelTimer:
    """Wraps every function of the _C module with a timer while active; `seconds` sums the time inside them."""

    def __init__(self, module):
        self.module = module
        self.seconds = 0.0
        self.originals = kernel_functions(module)

    def _timed(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def __enter__(self):
        for name, fn in self.originals.items():
            setattr(self.module, name, self._timed(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(self.module, name, fn)


class KernelReplay:
    """Replaces every function of the _C module, while active, by one returning what the real call returned at the
    same position of a recorded forward: a forward then costs only its Python work, undisturbed by the kernels'
    threads and by other processes competing with them for the cores."""

    def __init__(self, module, record):
        self.module = module
        self.originals = kernel_functions(module)
        self.results = []
        self.record = record

    def _recorded(self, fn):
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            result = fn(*args, **kwargs)
            self.results.append(result)
            return result
        return recorded

    def _replayed(self, fn):
        @functools.wraps(fn)
        def replayed(*args, **kwargs):
            self.position += 1
            return self.results[self.position - 1]
        return replayed

    def start_forward(self):
        self.position = 0

    def __enter__(self):
        wrap = self._recorded if self.record else self._replayed
        for name, fn in self.originals.items():
            setattr(self.module, name, wrap(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(self.module, name, fn)


def python_time(net, x, repeat):
    """Median seconds of a forward whose kernel calls return their recorded results (KernelReplay)."""
    from darknet_py._ext import _C
    with KernelReplay(_C, record=True) as recording:
        net.forward(x)
    times = []
    with KernelReplay(_C, record=False) as replay:
        replay.results = recording.results
        for _ in range(repeat):
            replay.start_forward()
            start = time.perf_counter()
            net.forward(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(cfg, size, repeat):
    """(layers, median seconds per forward, inside _C, outside _C, Python alone) of cfg at size x size, batch 1."""
    from conftest import load_quiet
    from reference_nets import well_scaled_weights
    from darknet_py._ext import _C
    net = well_scaled_weights(load_quiet(cfg, width=size, height=size))
    x = np.random.default_rng(0).random((1, net.channels, size, size), dtype=np.float32)
    total = float(np.median(forward_times(net, x, repeat)))
    inside, outside = [], []
    with KernelTimer(_C) as timer:
        for _ in range(3):
            net.forward(x)
        for _ in range(repeat):
            timer.seconds = 0.0
            start = time.perf_counter()
            net.forward(x)
            elapsed = time.perf_counter() - start
            inside.append(timer.seconds)
            outside.append(elapsed - timer.seconds)
    return len(net.layers), total, float(np.median(inside)), float(np.median(outside)), python_time(net, x, repeat)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--nets", default="efficientnet_b0,mixnet_m")
    parser.add_argument("--threads", type=int, default=2, help="threads of the C++ kernels and of BLAS")
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "darknet"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from threadpoolctl import threadpool_limits
    from darknet_py._ext import _C
    threadpool_limits(args.threads)
    _C.set_num_threads(args.threads)
    print(f"{args.threads} kernel threads, medians of {args.repeat} forwards ({args.repeat // 4} above 64x64); "
          f"inside/outside _C from a second run with timed kernel calls; Python: kernel calls replayed")
    print(f"{'network':<18}{'size':>5}{'layers':>7}{'ms/fwd':>9}{'us/layer':>10}{'_C ms':>8}{'other ms':>10}"
          f"{'other us/layer':>16}{'Python ms':>11}{'us/layer':>11}")
    for name in args.nets.split(","):
        cfg = HERE.parent / "cfg" / f"{name}.cfg"
        if not cfg.exists():
            cfg = Path(args.shared) / "cfg" / f"{name}.cfg"
        for size in (int(s) for s in args.sizes.split(",")):
            layers, total, inside, outside, python = measure(cfg, size, args.repeat if size <= 64 else args.repeat // 4)
            print(f"{name:<18}{size:>5}{layers:>7}{1000 * total:>9.2f}{1e6 * total / layers:>10.1f}"
                  f"{1000 * inside:>8.2f}{1000 * outside:>10.2f}{1e6 * outside / layers:>16.1f}"
                  f"{1000 * python:>11.2f}{1e6 * python / layers:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
