"""CPU inference speed, ours vs OpenCV DNN and onnxruntime in the same run: yolov4-tiny 416, efficientnet_b0 224
and cfg/mixnet_m.cfg 224, batch 1.

    python benchmarks/cpu_infer.py [--repeat N] [--rounds R] [--mode blocks|alternate] [--threads N] [--layers]
                                   [--nets a,b]

Prints the median ms/image of the three engines and the ratios ours/OpenCV and ours/onnxruntime (goal: <= 1.0 for
both), with the lowest, highest and median ratio of the rounds' medians (their spread). onnxruntime runs our own ONNX
export of the same network and weights (intra-op threads = --threads, one inter-op thread, all graph
optimizations); our network's weights are frozen (Network.freeze_weights, as the CLI's inference verbs do). A
net name is looked up in the project's cfg/ first, then in darknet's bundled cfgs. --mode blocks
(default, the like-for-like figure on a quiet machine): each engine runs `repeat` images in a row, in R rounds (3), so
each keeps its thread pool warm as in real use (after a
pause that lets the engine before it go idle). --mode alternate: the engines take turns image by image, so that
load from other processes hits both alike; that costs OpenCV (its pool goes cold between calls: yolov4-tiny 34 ms
in blocks, 63 ms alternating, on the same quiet machine) and flatters us. The load average before and after is
printed.
--threads limits the engines (OpenCV's pool, onnxruntime's intra-op threads, our BLAS and C++ kernel threads) to N
threads; --layers adds our time per layer type and onnxruntime's per operator type (its profiler). Figures go to
docs/benchmarks.md with the command, the machine and the commit."""
import argparse
import collections
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# Before each block: the engine that ran before lets its threads go idle (onnxruntime's and OpenCV's spin for a
# while after each call, and our pool, seeing its worker held up, would run serially for half a second).
SETTLE_SECONDS = 0.6


def in_blocks(fns, repeat, rounds=3):
    """Seconds per call of each function, each called `repeat` times in a row (after a pause of SETTLE_SECONDS and one
    warm-up call), the functions taking turns for `rounds` rounds: (median over all calls, [median of each
    round]) per function."""
    times = [[[] for _ in range(rounds)] for _ in fns]
    for r in range(rounds):
        for fn, record in zip(fns, times):
            time.sleep(SETTLE_SECONDS)
            fn()
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                record[r].append(time.perf_counter() - start)
    return [(float(np.median(sum(t, []))), [float(np.median(part)) for part in t]) for t in times]


def alternate(fns, repeat):
    """Seconds per call of each function, calling them in turn `repeat` times after one warm-up each: (median,
    [that median]) per function, as in_blocks gives them."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [(float(np.median(t)), [float(np.median(t))]) for t in times]


def layer_breakdown(net, x, repeat):
    """Median ms per layer, summed by layer type (kind, kernel, stride, depthwise, activation)."""
    per_layer = collections.defaultdict(list)
    for _ in range(repeat):
        out = net.ops.asarray(x)
        net.input = out
        for layer in net.layers:
            start = time.perf_counter()
            out = layer.output = layer.forward(out, net)
            per_layer[layer.index].append(time.perf_counter() - start)
    totals = collections.Counter()
    for layer in net.layers:
        key = layer.kind
        if layer.kind == "convolutional":
            key += f" {layer.size}x{layer.size}/{layer.stride_x}" + (" depthwise" if layer.is_depthwise else "")
        if getattr(layer, "activation", "linear") != "linear":
            key += f" {layer.activation}"
        totals[key] += 1000 * float(np.median(per_layer[layer.index]))
    return totals


def spread(ours, theirs):
    """The lowest and highest ratio of ours to theirs over the rounds (each round's medians), and their median:
    on a shared host whose speed drifts, the engines of one round ran closest in time."""
    ratios = [a / b for a, b in zip(ours, theirs)]
    return f"{min(ratios):.2f}-{max(ratios):.2f} (median {float(np.median(ratios)):.2f})"


def onnx_session(path, threads, profile_prefix=None):
    """An onnxruntime session of the ONNX file at path on `threads` intra-op threads (None: all), profiling its
    nodes into files starting with profile_prefix if given."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_breakdown(path, x, threads, repeat, profile_prefix):
    """onnxruntime's ms per operator type (its profiler's kernel times, per run) over `repeat` runs of the ONNX
    file at path: after its graph optimizations, so fused operators show under their own names."""
    session = onnx_session(path, threads, profile_prefix)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(repeat):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1000 / repeat
    return totals


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--mode", choices=("blocks", "alternate"), default="blocks")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of blocks (--mode blocks)")
    parser.add_argument("--threads", type=int, default=None, help="threads for both engines (default: all)")
    parser.add_argument("--layers", action="store_true",
                        help="our time per layer type, and onnxruntime's per operator type (its profiler)")
    parser.add_argument("--nets", default="yolov4-tiny,efficientnet_b0,mixnet_m")
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "darknet"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import cv2
    from reference_nets import image_blob, reference_net
    from darknet_py.onnx_export import export_onnx
    limits = None
    if args.threads:
        from threadpoolctl import threadpool_limits
        from darknet_py._ext import _C
        limits = threadpool_limits(args.threads)      # BLAS
        _C.set_num_threads(args.threads)              # our C++ kernels' pool
        cv2.setNumThreads(args.threads)
    shared = Path(args.shared)
    print(f"load average before: {load_average()}")
    print(f"threads: OpenCV {cv2.getNumThreads()}, CPUs {os.cpu_count()}, limit {args.threads or 'none'}; "
          f"mode {args.mode}")
    print(f"{'network':<20}{'ours ms':>10}{'OpenCV ms':>12}{'ORT ms':>10}{'/OpenCV':>9}{'/ORT':>7}")
    breakdowns, ort_breakdowns = {}, {}
    for name in args.nets.split(","):
        cfg = HERE.parent / "cfg" / f"{name}.cfg"
        if not cfg.exists():
            cfg = shared / "cfg" / f"{name}.cfg"
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "w.weights"
            net = reference_net(cfg, weights)
            net.freeze_weights()   # as deployed, and as the other engines hold theirs: constants
            x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
            cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
            onnx_path = Path(tmp) / "net.onnx"
            export_onnx(net, onnx_path, batch=1)
            ort_session = onnx_session(onnx_path, args.threads)
            if args.layers:
                ort_breakdowns[name] = onnxruntime_breakdown(onnx_path, x, args.threads, args.repeat,
                                                             str(Path(tmp) / "profile"))
        outputs = cvnet.getUnconnectedOutLayersNames()
        ort_input = ort_session.get_inputs()[0].name

        def opencv():
            cvnet.setInput(x)
            cvnet.forward(outputs)
        def onnxruntime():
            ort_session.run(None, {ort_input: x})
        fns = [lambda: net.forward(x), opencv, onnxruntime]
        (ours, our_rounds), (cv_time, cv_rounds), (ort_time, ort_rounds) = (
            in_blocks(fns, args.repeat, args.rounds) if args.mode == "blocks" else alternate(fns, args.repeat))
        print(f"{name:<20}{1000 * ours:>10.1f}{1000 * cv_time:>12.1f}{1000 * ort_time:>10.1f}"
              f"{ours / cv_time:>9.2f}{ours / ort_time:>7.2f}   rounds /OpenCV {spread(our_rounds, cv_rounds)}, "
              f"/ORT {spread(our_rounds, ort_rounds)}", flush=True)
        if args.layers:
            breakdowns[name] = layer_breakdown(net, x, args.repeat)
    print(f"load average after: {load_average()}")
    for name, totals in breakdowns.items():
        print(f"\n{name}: our ms per layer type (sum of per-layer medians {sum(totals.values()):.1f})")
        for key, ms in totals.most_common():
            print(f"  {key:<40}{ms:8.2f}")
        ort = ort_breakdowns[name]
        print(f"{name}: onnxruntime's ms per operator type, profiled (sum {sum(ort.values()):.1f})")
        for key, ms in ort.most_common():
            print(f"  {key:<40}{ms:8.2f}")
    if limits is not None:
        limits.restore_original_limits()


if __name__ == "__main__":
    main()
