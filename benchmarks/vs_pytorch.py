"""Our MixNet-M (cfg/mixnet_m.cfg) against timm's `mixnet_m` in PyTorch, in one process on one GPU: a training
iteration at batch 64, 224x224 (ours: forward, backward, darknet's SGD update; PyTorch eager with cuDNN and TF32
allowed: forward, cross-entropy, backward, SGD with momentum), and batch-1 inference. The two take turns in rounds,
so that clocks and load hit both alike; prints the median ms per iteration with the spread over rounds, the ratio
ours/PyTorch, and each one's peak memory (ours: CuPy's pool, tracked; PyTorch: max_memory_allocated).

    python benchmarks/vs_pytorch.py [--batch 64] [--iterations 20] [--rounds 3] [--tf32] [--device cuda]

Needs a GPU with CuPy, torch and timm (the lent machines have them; nothing is downloaded: random weights).
--device cpu runs both on the CPU (a check of the script, not a comparison that matters). Figures go to
docs/benchmarks.md with the command, the device and the commit."""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024.0 * 1024.0


def ours(device, batch, train, tf32):
    """(step, sync, peak) for our engine: one iteration, waiting for the device, the peak bytes so far."""
    import darknet_py
    net = darknet_py.load(ROOT / "cfg" / "mixnet_m.cfg", batch=batch, init=True, quiet=True, device=device)
    if tf32 and device == "cuda":
        net.ops.k.blas_set_tf32(True)
    net.ops.track_peak()
    rng = np.random.default_rng(0)
    x = net.ops.asarray(rng.uniform(0, 1, (batch, 3, net.height, net.width)).astype(np.float32))
    delta = net.ops.asarray(rng.normal(0, 1e-3, (batch, 1000)).astype(np.float32))

    def step():
        net.forward(x, train=train)
        if train:
            net.backward(delta)
            net.seen += batch
            net.update()
    return step, net.ops.synchronize, lambda: net.ops.memory_stats()["peak_bytes"]


def pytorch(device, batch, train, tf32):
    import timm
    import torch
    torch.backends.cuda.matmul.allow_tf32 = tf32 or device == "cuda"
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = timm.create_model("mixnet_m", pretrained=False).to(device)
    model.train(train)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-5)
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        if train:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(x)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def peak():
        return torch.cuda.max_memory_allocated() if device == "cuda" else None
    return step, sync, peak


def timed(step, sync, iterations):
    """ms per iteration of `iterations` iterations in a row."""
    sync()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    return 1000 * (time.perf_counter() - start) / iterations


def compare(device, batch, train, iterations, rounds, tf32):
    engines = {"darknet_py": ours(device, batch, train, tf32), "pytorch": pytorch(device, batch, train, tf32)}
    for step, sync, _ in engines.values():   # warm-up: kernels loaded, cuDNN's algorithm search done
        for _ in range(3):
            step()
        sync()
    times = {name: [] for name in engines}
    for _ in range(rounds):
        for name, (step, sync, _) in engines.items():
            times[name].append(timed(step, sync, iterations))
    result = {"mode": "training" if train else "inference", "batch": batch}
    for name, (_, _, peak) in engines.items():
        bytes_ = peak()
        result[name] = {"ms": statistics.median(times[name]), "ms_min": min(times[name]),
                        "ms_max": max(times[name]), "peak_mib": None if bytes_ is None else bytes_ / MIB}
    result["ratio"] = result["darknet_py"]["ms"] / result["pytorch"]["ms"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tf32", action="store_true", help="TF32 GEMMs for ours too (PyTorch's cuDNN uses TF32)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"commit {commit.strip()}, device {args.device}", flush=True)
    for train, batch in ((True, args.batch), (False, 1)):
        result = compare(args.device, batch, train, args.iterations, args.rounds, args.tf32)
        ours_r, torch_r = result["darknet_py"], result["pytorch"]
        print(f"MixNet-M {result['mode']} batch {batch}: darknet_py {ours_r['ms']:.2f} ms "
              f"({ours_r['ms_min']:.2f}-{ours_r['ms_max']:.2f}), PyTorch {torch_r['ms']:.2f} ms "
              f"({torch_r['ms_min']:.2f}-{torch_r['ms_max']:.2f}), ratio {result['ratio']:.2f}; peak memory "
              f"{ours_r['peak_mib']} vs {torch_r['peak_mib']} MiB", flush=True)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
