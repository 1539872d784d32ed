"""Data-parallel training speed: images/s of a classifier cfg trained by 1 and by 2 (or more) ranks on this host,
and the time of the gradient all-reduce per step.

    python benchmarks/data_parallel.py [--cfg cfg/mixnet_tiny_digits.cfg] [--size S] [--batch 16]
                                       [--iterations 10] [--ranks 1 2] [--device cpu|cuda-emulated]

Each rank trains at mini-batch --batch on synthetic images (no loader: the engine and the sums are measured) and
the ranks of a host split its cores (trainer.share_cores). Per rank count it prints: ms per iteration, images/s
of the whole run (ranks x batch per iteration), the wait for the sums after backward per step (what the overlap
with backward did not hide), and a blocking all-reduce of the whole gradient timed alone.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args):
    sys.path.insert(0, REPO)
    import warnings
    from darknet_py.distributed import world
    from darknet_py.network import Network
    from darknet_py.trainer import start_ranks
    from darknet_py.training import train_iteration
    from darknet_py.weights import init_weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = Network(args.cfg, batch=args.batch, width=args.size, height=args.size, device=args.device)
    net.options.subdivisions = 1
    init_weights(net)
    ranks = world()
    sync, _ = start_ranks(net, ranks, seed=1)
    rng = np.random.default_rng(ranks.rank)
    x = rng.uniform(0, 1, (args.batch, net.channels, net.height, net.width)).astype(np.float32)
    truth = np.eye(net.layers[-1].outputs, dtype=np.float32)[rng.integers(net.layers[-1].outputs, size=args.batch)]
    for _ in range(args.warmup):
        train_iteration(net, lambda: (x, truth), sync)
    waited = sync.wait_seconds if sync else 0.0
    ranks.sum(0, "the start")
    start = time.perf_counter()
    for _ in range(args.iterations):
        train_iteration(net, lambda: (x, truth), sync)
    seconds = (time.perf_counter() - start) / args.iterations
    waited = ((sync.wait_seconds if sync else 0.0) - waited) / args.iterations
    floats = sum(int(np.prod(shape)) for layer in net.layers for name, shape in layer.weight_layout()
                 if name not in ("rolling_mean", "rolling_variance"))
    alone = 0.0
    if ranks.size > 1:
        gradient = np.ones(floats, np.float32)
        for _ in range(3):
            ranks.comm.Allreduce(ranks.MPI.IN_PLACE, gradient, op=ranks.MPI.SUM)
        start = time.perf_counter()
        for _ in range(10):
            ranks.comm.Allreduce(ranks.MPI.IN_PLACE, gradient, op=ranks.MPI.SUM)
        alone = (time.perf_counter() - start) / 10
    if ranks.rank == 0:
        print(json.dumps({"ranks": ranks.size, "ms": seconds * 1000, "images_per_s": ranks.size * args.batch / seconds,
                          "wait_ms": waited * 1000, "allreduce_ms": alone * 1000,
                          "gradient_mib": floats * 4 / 2 ** 20}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=os.path.join(REPO, "cfg", "mixnet_tiny_digits.cfg"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, help="input width and height (default: the cfg's)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda-emulated"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    sys.path.insert(0, REPO)
    from darknet_py.distributed import find_launcher, launcher_flags
    launcher = find_launcher()
    size = ["--size", str(args.size)] if args.size else []
    options = ["--cfg", args.cfg, *size, "--batch", str(args.batch), "--iterations", str(args.iterations),
               "--warmup", str(args.warmup), "--device", args.device, "--worker"]
    at = f" at {args.size}x{args.size}" if args.size else ""
    print(f"{os.path.basename(args.cfg)}{at}, mini-batch {args.batch} per rank, {args.device}, "
          f"{args.iterations} iterations after {args.warmup}")
    print("ranks | ms/iteration | images/s | sum wait after backward, ms/step | all-reduce alone, ms (gradient MiB)")
    for count in args.ranks:
        command = [sys.executable, os.path.abspath(__file__), *options]
        if count > 1:
            command = [launcher, "-np", str(count), *launcher_flags(launcher)] + command
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{result['ranks']} | {result['ms']:.1f} | {result['images_per_s']:.1f} | {result['wait_ms']:.2f} | "
              f"{result['allreduce_ms']:.2f} ({result['gradient_mib']:.2f})")


if __name__ == "__main__":
    main()
