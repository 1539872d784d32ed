"""Darknet's layer table (`layer filters size/strd(dil) input -> output BF`), character for character, with
the columns darknet lacks: multiply-adds, parameters and output memory per layer, then totals and a memory
budget for inference and for training (by default at batch 1 and at the cfg's batch/subdivisions; both at a
given `batch` otherwise)."""
import numpy as np

MIB = 1024.0 * 1024.0
HEADER = "   layer   filters  size/strd(dil)      input                output"
DARKNET_WIDTH = 80   # darknet's conv rows are this wide; extra columns start after it


def darknet_total_bflops(layers):
    """Darknet sums per-layer BFLOPS in a C float; summing in float32 reproduces its printed total."""
    total = np.float32(0)
    for layer in layers:
        if layer.bflops > 0:
            total = np.float32(total + np.float32(layer.bflops))
    return float(total)


def darknet_row(layer):
    """The row exactly as darknet prints it (tabs expanded), without the trailing newline."""
    return f"{layer.index:4d} {layer.row()}".expandtabs()


# Output-sized arrays one layer may hold at once besides its output while it runs (BN's centered and normalized
# copies, activation masks, a backward's dx): with the im2col workspace, the largest of these transients is
# added to the held buffers. tests/test_reliability.py checks the sum against what a forward really allocates.
TEMPORARIES = 4


def scratch_bytes(net, batch, train):
    """The largest transient memory of one layer: what the engine allocates while it runs (layer.engine_memory:
    in training the im2col workspace, one image at a time and twice where col2im needs a second one; in
    inference a slice of the columns per thread, padded copies and the depthwise kernel's planes; Winograd's
    transformed input and products, whose workspace then keeps the largest size), plus TEMPORARIES arrays the size
    of its input or output for the batch."""
    return max((l.engine_memory(net.ops, batch, train)[1] + TEMPORARIES * 4 * batch * max(l.outputs, l.inputs)
                for l in net.layers), default=0)


def cache_bytes(net, batch=1):
    """What the engine keeps from the first inference on besides the weights (Winograd's transformed weights)."""
    return sum(l.engine_memory(net.ops, batch, False)[0] for l in net.layers)


def forward_bytes(net, batch, train):
    """Bytes a forward (and, in training, the backward after it) allocates beyond the weights and the input:
    what the network's memory check compares with the memory available. An inference counts the engine's
    weight caches (built by the first one)."""
    outputs = sum(l.output_floats for l in net.layers) * 4 * batch
    if not train:
        return outputs + cache_bytes(net, batch) + scratch_bytes(net, batch, False)
    buffers = sum(l.train_floats for l in net.layers) * 4 * batch
    weight_gradients = sum(l.params for l in net.layers) * 4
    return 2 * outputs + buffers + weight_gradients + scratch_bytes(net, batch, True)   # outputs and their deltas


def memory_budget(net, batch=None):
    """MiB of float32 buffers darknet_py allocates for inference and for training at mini-batch `batch`; without
    it, inference at batch 1 and training at the cfg's batch/subdivisions."""
    layers = net.layers
    weights = sum(l.weight_floats for l in layers) * 4
    learnable = sum(l.params for l in layers) * 4
    outputs = sum(l.output_floats for l in layers) * 4
    extras = sum(l.train_floats for l in layers) * 4
    inference_batch = batch or 1
    train_batch = batch or max(1, net.options.batch // net.options.subdivisions)
    inference = {"batch": inference_batch, "activations_mib": outputs * inference_batch / MIB,
                 "scratch_mib": scratch_bytes(net, inference_batch, False) / MIB,
                 "weight_cache_mib": cache_bytes(net, inference_batch) / MIB}
    reserved = {label: size / MIB for label, size in net.ops.reserved_memory()}   # held by the engine itself
    inference["total_mib"] = (weights / MIB + inference["weight_cache_mib"] + inference["activations_mib"] +
                              inference["scratch_mib"] + sum(reserved.values()))
    training = {
        "batch": train_batch,
        "activations_mib": outputs * train_batch / MIB,
        "gradients_mib": outputs * train_batch / MIB,          # one delta per output
        "buffers_mib": extras * train_batch / MIB,              # BN x/x_norm, pre-activations, dropout masks
        "weight_gradients_mib": learnable / MIB,
        "scratch_mib": scratch_bytes(net, train_batch, True) / MIB,
    }
    training["total_mib"] = weights / MIB + sum(v for k, v in training.items() if k != "batch") + sum(reserved.values())
    return {"device": net.ops.name, "weights_mib": weights / MIB, "reserved_mib": reserved, "inference": inference,
            "training": training}


def table_dict(net, batch=None):
    """The table as data; `batch` as for memory_budget (the per-layer figures are at batch 1)."""
    layers = []
    for l in net.layers:
        layers.append({
            "index": l.index, "type": l.kind, "input": list(l.input_shape), "output": list(l.output_shape),
            "bflops": round(l.bflops, 6), "fma_g": l.fma / 1e9, "params": l.params,
            "output_mib": l.output_floats * 4 / MIB, "workspace_mib": l.workspace_bytes / MIB,
            "weight_cache_mib": l.engine_memory(net.ops, 1, False)[0] / MIB,
        })
    return {
        "cfg": net.cfg_path,
        "input": [net.width, net.height, net.channels],
        "layers": layers,
        "total_bflops": round(darknet_total_bflops(net.layers), 6),
        "total_fma_g": sum(l.fma for l in net.layers) / 1e9,
        "params": sum(l.params for l in net.layers),
        "memory": memory_budget(net, batch),
    }


def _extra(layer):
    return f" | {layer.fma / 1e9:8.4f} {layer.params:10d} {layer.output_floats * 4 / MIB:8.2f}"


def format_table(net, batch=None):
    lines = [HEADER.ljust(DARKNET_WIDTH) + " |   FMA(G)     params  out MiB"]
    for layer in net.layers:
        lines.append(darknet_row(layer).ljust(DARKNET_WIDTH) + _extra(layer))
        lines.extend(layer.notes())
    info = table_dict(net, batch)
    mem = info["memory"]
    inf, tr = mem["inference"], mem["training"]
    ops = net.ops
    cache = f" + {ops.weight_cache_label} {inf['weight_cache_mib']:.1f}" if ops.weight_cache_label else ""
    reserved = "".join(f" + {label} {mib:.1f}" for label, mib in mem["reserved_mib"].items())
    lines += [
        f"Total BFLOPS {info['total_bflops']:5.3f} ",
        f"Total FMA {info['total_fma_g']:.3f} G (multiply-adds of convolutional and connected layers; "
        f"darknet's BFLOPS count each as 2)",
        f"Parameters {info['params']:,} (weights file {mem['weights_mib']:.2f} MiB)",
        f"Memory, inference at batch {inf['batch']}: {inf['total_mib']:.1f} MiB = weights {mem['weights_mib']:.1f}"
        f"{cache} + outputs {inf['activations_mib']:.1f} + largest layer scratch ({ops.scratch_label}) "
        f"{inf['scratch_mib']:.1f}{reserved}",
        f"Memory, training at batch {tr['batch']}: {tr['total_mib']:.1f} MiB = weights {mem['weights_mib']:.1f} + "
        f"weight gradients {tr['weight_gradients_mib']:.1f} + outputs {tr['activations_mib']:.1f} + "
        f"output gradients {tr['gradients_mib']:.1f} + BN/activation/dropout buffers {tr['buffers_mib']:.1f} + "
        f"scratch {tr['scratch_mib']:.1f}{reserved}",
    ]
    if ops.memory_note:
        lines.append(ops.memory_note)
    return "\n".join(lines)
