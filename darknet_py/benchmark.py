"""`darknet-py benchmark CFG`: how fast a network runs on a device. Prints ms per iteration (an inference forward,
or with --train a training iteration: forward, backward and the weight update), images/s and the peak memory; with
--layers the time of every layer beside its BFLOPS and the GFLOP/s and GB/s it reached. GB/s counts each layer's
input, output and weights once: a depthwise convolution does little arithmetic per byte it must move, which is why
its BFLOPS say little about its time."""
import json
import statistics
import time

import numpy as np

MIB = 1024.0 * 1024.0


def _layer_bytes(layer):
    """Bytes a layer's forward must move at least, per image: its input and output once, its weights once."""
    return 4 * (layer.inputs + layer.outputs + layer.weight_floats)


def benchmark(net, iterations=20, warmup=3, train=False, layers=False, seed=0):
    """Time `iterations` iterations of `net` (after `warmup` untimed ones) at its mini-batch on its device, random
    input (and, with train, a random output gradient in place of a loss). Returns a dict: ms (per iteration, the
    median), ms_min, ms_max, images_per_s, peak_bytes and, with `layers`, per-layer median times."""
    ops = net.ops
    batch = net.batch
    rng = np.random.default_rng(seed)
    x = ops.asarray(rng.uniform(0, 1, (batch, net.channels, net.height, net.width)).astype(np.float32))
    delta = None
    times = {}

    def record(layer, phase, seconds):
        times.setdefault((layer.index, phase), []).append(seconds)

    def step():
        nonlocal delta
        out = net.forward(x, train=train)
        if train:
            if delta is None:
                delta = ops.asarray(rng.normal(0, 1e-3, out.shape).astype(np.float32))
            net.backward(delta)
            net.seen += batch * net.options.subdivisions
            net.update()

    ops.track_peak()
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(iterations):
        ops.synchronize()
        start = time.perf_counter()
        step()
        ops.synchronize()
        seconds.append(time.perf_counter() - start)
    result = {"cfg": net.cfg_path, "device": ops.name, "mode": "training" if train else "inference",
              "batch": batch, "width": net.width, "height": net.height, "iterations": iterations,
              "ms": 1000 * statistics.median(seconds), "ms_min": 1000 * min(seconds), "ms_max": 1000 * max(seconds)}
    result["images_per_s"] = batch * 1000 / result["ms"]
    result.update(ops.memory_stats())
    if layers:   # separate timed runs: synchronizing after every layer slows the whole
        net.layer_timer = record
        try:
            for _ in range(max(1, min(iterations, 10))):
                step()
        finally:
            net.layer_timer = None
        result["layers"] = []
        for layer in net.layers:
            forward = 1000 * statistics.median(times[layer.index, "forward"])
            entry = {"index": layer.index, "type": layer.kind, "bflops": layer.bflops * batch, "forward_ms": forward,
                     "gflop_s": layer.bflops * batch / forward * 1000 if forward else 0.0,
                     "gb_s": _layer_bytes(layer) * batch / forward / 1e6 if forward else 0.0}
            if (layer.index, "backward") in times:
                entry["backward_ms"] = 1000 * statistics.median(times[layer.index, "backward"])
            result["layers"].append(entry)
    return result


def _describe(layer):
    text = layer.kind
    if layer.kind == "convolutional":
        text = f"conv {layer.size}x{layer.size}/{layer.stride_x}" + (" dw" if layer.is_depthwise else
                                                                       f" g{layer.groups}" if layer.groups > 1 else "")
    return text


def format_result(result, net):
    peak = result.get("peak_bytes")
    lines = [f"{result['cfg']} on {result['device']}, {result['mode']}, batch {result['batch']}, "
             f"{result['width']}x{result['height']}: {result['ms']:.3f} ms/iteration (median of {result['iterations']}; "
             f"min {result['ms_min']:.3f}, max {result['ms_max']:.3f}), {result['images_per_s']:.1f} images/s, "
             f"peak memory {'unknown' if peak is None else f'{peak / MIB:.1f} MiB'}"]
    if "layers" in result:
        lines.append(" layer  type               BFLOPS   forward ms  backward ms   GFLOP/s      GB/s")
        for entry, layer in zip(result["layers"], net.layers):
            backward = entry.get("backward_ms")
            lines.append(f"{entry['index']:6d}  {_describe(layer):16s} {entry['bflops']:8.3f} {entry['forward_ms']:12.4f} "
                         f"{'' if backward is None else f'{backward:12.4f}':>12s} {entry['gflop_s']:9.1f} "
                         f"{entry['gb_s']:9.2f}")
    return "\n".join(lines)


def cmd_benchmark(args):
    from . import load
    from .trainer import gpus_device
    from .weights import init_weights, load_weights
    device = args.device or gpus_device(args)
    net = load(args.cfg, batch=args.batch, width=args.width, height=args.height, quiet=True, device=device)
    if args.weights:
        load_weights(net, args.weights)
    init_weights(net)
    if not args.train:
        net.freeze_weights()   # inference, as deployed: no per-forward check of the cached Winograd weights
    result = benchmark(net, args.iterations, args.warmup, args.train, args.layers)
    print(json.dumps(result, indent=1) if args.format == "json" else format_result(result, net))


def register_cli(sub):
    from .cli import COUNT, POSITIVE
    from .trainer import add_gpus_option
    bench = sub.add_parser("benchmark", help="time a network on a device: ms/iteration, images/s, peak memory")
    bench.add_argument("cfg")
    bench.add_argument("--weights", help="a .weights file (default: darknet's random initial weights)")
    bench.add_argument("--train", action="store_true", help="time training iterations (forward, backward, update)")
    bench.add_argument("--batch", type=POSITIVE, default=1, help="mini-batch (default 1)")
    bench.add_argument("--width", type=POSITIVE)
    bench.add_argument("--height", type=POSITIVE)
    bench.add_argument("--iterations", type=POSITIVE, default=20, help="timed iterations (default 20)")
    bench.add_argument("--warmup", type=COUNT, default=3, help="untimed iterations first (default 3)")
    bench.add_argument("--layers", action="store_true", help="also time every layer (GFLOP/s, GB/s)")
    add_gpus_option(bench)
    bench.add_argument("--device", choices=("cpu", "cuda-emulated"),
                       help="the engine instead of -gpus: the CPU, or the CUDA engine emulated on the CPU (slow)")
    bench.add_argument("--format", choices=("table", "json"), default="table")
    bench.set_defaults(run=cmd_benchmark)
