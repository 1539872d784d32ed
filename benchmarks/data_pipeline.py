"""Does ClassifierBatches keep the engine fed? Trains cfg/mixnet_tiny.cfg on the digits dataset for N
iterations with the loader in worker processes and in threads, and reports the time the training loop spent
waiting for data (after the first batch) against the time per iteration.

    python benchmarks/data_pipeline.py [--iterations 30] [--batch 64] [--threads 2] [--repeat 2]
        [--images ../shared/darknet/data [--size 224]]
"""
import argparse
import tempfile
import time

import darknet_py
from darknet_py.data import ClassifierBatches, read_list
from darknet_py.datafile import read_data_file
from darknet_py.datasets import make_digits
from darknet_py.training import train_iteration
from darknet_py.weights import init_weights


def engine_only(data, iterations, batch):
    """The same training with one batch prepared in advance: the time per iteration with no loader running."""
    net = darknet_py.load("cfg/mixnet_tiny.cfg", batch=batch, quiet=True)
    init_weights(net, seed=1)
    with ClassifierBatches(read_list(data.train), data.labels, net.options, batch, augment=True, threads=1,
                           seed=1, workers="thread") as loader:
        x, truth = loader.next()
    train_iteration(net, lambda: (x, truth))
    start = time.perf_counter()
    for _ in range(iterations):
        train_iteration(net, lambda: (x, truth))
    elapsed = time.perf_counter() - start
    print(f"no loader        batch={batch}: {iterations} iterations in {elapsed:.2f} s "
          f"({elapsed / iterations * 1000:.0f} ms each)")


def run(data, workers, iterations, batch, threads):
    net = darknet_py.load("cfg/mixnet_tiny.cfg", batch=batch, quiet=True)
    init_weights(net, seed=1)
    waits = []
    with ClassifierBatches(read_list(data.train), data.labels, net.options, batch, augment=True,
                           threads=threads, seed=1, workers=workers) as loader:
        def next_batch():
            x, truth = loader.next()
            waits.append(loader.wait_seconds)
            return x, truth
        train_iteration(net, next_batch)        # the first batch waits for the workers to start
        start = time.perf_counter()
        for _ in range(iterations):
            train_iteration(net, next_batch)
        elapsed = time.perf_counter() - start
    waited = sum(waits[1:])
    print(f"{workers:8s} threads={threads} batch={batch}: first batch {waits[0]:.2f} s; then {iterations} "
          f"iterations in {elapsed:.2f} s ({elapsed / iterations * 1000:.0f} ms each), waited {waited:.3f} s "
          f"({100 * waited / elapsed:.1f}%)")


def loader_only(image_dir, size, batch, threads):
    """Images per second of the loader alone on real photos (every *.jpg of image_dir, its own class each) at a
    size x size network with darknet's usual classifier jitter."""
    import glob
    import os

    from darknet_py.cfg import parse_cfg_text
    from darknet_py.netcfg import NetOptions
    paths = sorted(glob.glob(os.path.join(image_dir, "*.jpg")))
    labels = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    options = NetOptions(parse_cfg_text(f"[net]\nwidth={size}\nheight={size}\nchannels=3\nangle=7\naspect=.75\n"
                                        "hue=.1\nsaturation=.75\nexposure=.75\n")[0])
    for workers in ("process", "thread"):
        with ClassifierBatches(paths, labels, options, batch, augment=True, threads=threads, seed=1,
                               workers=workers) as loader:
            loader.next()
            start = time.perf_counter()
            for _ in range(6):
                loader.next()
            elapsed = time.perf_counter() - start
        print(f"loader only {workers:8s} threads={threads} {size}x{size} from {len(paths)} photos: "
              f"{6 * batch / elapsed:.0f} images/s ({elapsed / (6 * batch) * 1000:.1f} ms per image)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the three runs (the machine may be busy)")
    parser.add_argument("--images", help="also time the loader alone on the *.jpg photos of this directory "
                                         "(e.g. ../shared/darknet/data)")
    parser.add_argument("--size", type=int, default=224, help="network size for --images (default 224)")
    args = parser.parse_args()
    if args.images:
        loader_only(args.images, args.size, 16, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = read_data_file(make_digits(tmp))
        for _ in range(args.repeat):
            engine_only(data, args.iterations, args.batch)
            for workers in ("process", "thread"):
                run(data, workers, args.iterations, args.batch, args.threads)


if __name__ == "__main__":
    main()
