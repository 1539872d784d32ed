"""Two builds of the C++ kernels (darknet_py._C) side by side in one process, timed in alternating rounds: the way
the 2026-12-06 changes to issue 20's kernels were measured on a shared host whose speed drifts by tens of percent
within minutes (docs/benchmarks.md, "2026-12-06, later").

    python benchmarks/paired_builds.py OLD.so NEW.so [--threads N] [--rounds R] [--what gemm|depthwise|im2col|winograd|nets]

OLD.so and NEW.so are copies of _C.cpython-*.so from two builds (e.g. cmake --build of two commits, each copied
aside). Each round times every case with both builds, in turn (the order swapped every round), as the median of
15 calls (5 forwards for `nets`) after 3 warm-ups; printed are each build's best round and the median of the
rounds' new/old ratios with their range. `nets` swaps the module that darknet_py's NumPy backend calls
(darknet_py.backend._C) between yolov4-tiny 416, efficientnet_b0 224 and cfg/mixnet_m.cfg 224 forwards with frozen,
random well-scaled weights (tests/reference_nets.py); the Python side is the checkout's own."""
import argparse
import importlib.machinery
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def load_build(path, tag):
    """The extension module in file `path`, imported under its own name so that two builds can coexist."""
    loader = importlib.machinery.ExtensionFileLoader(f"{tag}._C", str(path))
    spec = importlib.util.spec_from_file_location(f"{tag}._C", str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def kernel_cases(what, rng):
    """(name, fn(module)) for the kernel shapes of the three nets."""
    cases = []
    if what == "gemm":
        for k, m, n in [(960, 192, 49), (320, 1280, 49), (576, 112, 196), (384, 80, 784), (80, 384, 784),
                        (16, 96, 12544), (288, 64, 10816), (512, 512, 64)]:
            a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
            scale, shift = np.ones(m, np.float32), np.zeros(m, np.float32)
            cases.append((f"gemm {m}x{k} by {n}", lambda mod, a=a, b=b, s=scale, t=shift: mod.gemm(a, b, s, t, "swish")))
    elif what == "depthwise":
        for c, h, size, stride in [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (384, 28, 5, 2), (480, 14, 3, 1),
                                   (576, 14, 5, 1), (960, 7, 5, 1), (1200, 7, 9, 1)]:
            x, w = rng.random((1, c, h, h), np.float32), rng.random((c, 1, size, size), np.float32)
            out = (h + 2 * (size // 2) - size) // stride + 1
            scale, shift = np.ones(c, np.float32), np.zeros(c, np.float32)
            cases.append((f"depthwise {c}x{h}x{h} {size}x{size}/{stride}",
                          lambda mod, x=x, w=w, k=size, st=stride, o=out, s=scale, t=shift:
                          mod.depthwise_conv2d(x, w, st, st, k // 2, 1, o, o, s, t, "swish")))
    elif what == "im2col":
        for c, h, f, size, stride in [(3, 416, 32, 3, 2), (32, 208, 64, 3, 2), (64, 104, 128, 3, 2), (16, 112, 32, 5, 1)]:
            x, w = rng.random((1, c, h, h), np.float32), rng.random((f, c, size, size), np.float32)
            scale, shift = np.ones(f, np.float32), np.zeros(f, np.float32)
            cases.append((f"im2col {c}x{h}x{h} {size}x{size}/{stride} -> {f}",
                          lambda mod, x=x, w=w, k=size, st=stride, s=scale, t=shift:
                          mod.im2col_gemm(x, w, st, st, k // 2, 1, s, t, "leaky", 1)))
    elif what == "winograd":
        for c, h, f, tile in [(64, 104, 64, 4), (128, 52, 128, 4), (256, 26, 256, 2), (512, 13, 512, 2)]:
            x, w = rng.random((1, c, h, h), np.float32), rng.random((f, c, 3, 3), np.float32)
            scale, shift = np.ones(f, np.float32), np.zeros(f, np.float32)
            packed = {}   # per build, transformed once: the forward's cache keeps them too

            def conv(mod, x=x, w=w, f=f, tile=tile, s=scale, t=shift, packed=packed):
                if mod not in packed:
                    packed[mod] = mod.winograd_weights(w, tile)
                return mod.winograd_conv(x, packed[mod], f, 1, tile, s, t, "leaky")
            cases.append((f"winograd F({tile}x{tile}) {c}x{h}x{h} -> {f}", conv))
    return cases


def net_cases():
    """(name, fn(module)) forwards of the three nets, the backend calling `module`."""
    import darknet_py.backend as backend
    from reference_nets import image_blob, reference_net
    shared = HERE.parent.parent / "shared" / "darknet"
    cases = []
    for name in ("yolov4-tiny", "efficientnet_b0", "mixnet_m"):
        cfg = HERE.parent / "cfg" / f"{name}.cfg"
        if not cfg.exists():
            cfg = shared / "cfg" / f"{name}.cfg"
        net = reference_net(cfg, Path(tempfile.mkdtemp()) / "w.weights")
        net.freeze_weights()
        x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)

        def forward(module, net=net, x=x):
            backend._C = module
            net.forward(x)
        cases.append((name, forward))
    return cases


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--what", choices=("gemm", "depthwise", "im2col", "winograd", "nets"), default="gemm")
    args = parser.parse_args()
    builds = {"old": load_build(args.old, "old"), "new": load_build(args.new, "new")}
    for module in builds.values():
        module.set_num_threads(args.threads)
    cases = net_cases() if args.what == "nets" else kernel_cases(args.what, np.random.default_rng(0))
    calls = 5 if args.what == "nets" else 15
    medians = {tag: [[] for _ in cases] for tag in builds}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for i, (_, fn) in enumerate(cases):
            for tag in order:
                module = builds[tag]
                for _ in range(3):
                    fn(module)
                times = []
                for _ in range(calls):
                    start = time.perf_counter()
                    fn(module)
                    times.append(time.perf_counter() - start)
                medians[tag][i].append(float(np.median(times)))
    print(f"{args.threads} thread(s), {args.rounds} rounds; ms, best round of each build; new/old: median of the "
          f"rounds' ratios (range)")
    for i, (name, _) in enumerate(cases):
        old, new = np.array(medians["old"][i]), np.array(medians["new"][i])
        ratios = new / old
        print(f"{name:<40} old {1000 * old.min():8.3f}  new {1000 * new.min():8.3f}  new/old "
              f"{np.median(ratios):.3f} ({ratios.min():.2f}-{ratios.max():.2f})")


if __name__ == "__main__":
    main()
