"""Training core as darknet runs it: learning-rate policies, the weight update, and one training iteration.

Darknet facts followed (src/network.c, src/convolutional_layer.c, src/convolutional_kernels.cu,
src/connected_layer.c, src/batchnorm_layer.c, src/shortcut_layer.c, src/blas_kernels.cu):
- `seen` counts images; each mini-batch (cfg batch / subdivisions) adds its size before its forward, and the
  weights are updated once per cfg batch (`subdivisions` mini-batches, gradients summed over them);
  iteration = seen / (mini_batch * subdivisions) (get_current_batch). The update uses the rate of the
  iteration just completed, counted from 1.
- get_current_rate: during burn_in, learning_rate * (iteration/burn_in)^power for every policy; then the policy
  (see `current_rate`). Darknet has no separate cosine policy: sgdr is its cosine schedule.
- SGD (update_*_layer): with B = mini_batch * subdivisions and U the accumulated update (darknet's
  weight_updates = -sum of per-image gradients, plus the momentum left from the last step):
  U -= decay*B*w (weights only, not biases or BN scales); w += rate/B * U; U *= momentum. Here U is kept
  with the gradient's sign (velocity = -U), so w -= rate/B * velocity. rate is scaled per layer by the
  layer's `learning_rate=` option (learning_rate_scale), as darknet's GPU update does for every layer.
- adam=1 (update_convolutional_layer_gpu / adam_update_gpu): only [convolutional] layers use Adam, on weights,
  biases and scales, with decay*B added to every array's gradient: m = B1*m + (1-B1)*g, v = B2*v + (1-B2)*g^2,
  w -= rate * m/(1-B1^t) / (sqrt(v/(1-B2^t)) + eps), t = the iteration; the gradient buffer is then cleared
  (no momentum). Other layers keep plain SGD, as in darknet.
- per-layer options: dont_update=N skips a layer's update until the iteration exceeds N; burnin_update=K skips
  it while iteration < K*burn_in; layers before the last stopbackward=1 are frozen; `clip` bounds
  convolution weights to [-clip, clip] after the update.
Darknet differences: its GPU update silently replaces NaN/Inf in weights and updates with zeros
(fix_nan_and_inf); here a non-finite loss or output stops training instead (`check_finite`).
"""
import math

import numpy as np

from .errors import DarknetError


class TrainingDiverged(DarknetError):
    """The loss or a layer output stopped being finite."""


# -- learning rate -------------------------------------------------------------------------------------
def images_per_iteration(net):
    """Darknet's net.batch * net.subdivisions, times the ranks of a data-parallel run: images per weight
    update."""
    return net.options.mini_batch * net.options.subdivisions * net.ranks


def current_iteration(net):
    """get_current_batch: completed weight updates, from the images seen."""
    return int(net.seen) // images_per_iteration(net)


def current_rate(options, iteration, rng=None):
    """get_current_rate for iteration `iteration` (darknet's batch_num). `rng` (a numpy Generator) draws the
    uniform number of policy=random."""
    o = options
    lr = o.learning_rate
    if iteration < o.burn_in:
        return lr * (iteration / o.burn_in) ** o.power
    policy = o.policy
    if policy == "constant":
        return lr
    if policy == "step":
        return lr * o.scale ** (iteration // o.step)
    if policy == "steps":
        rate = lr
        for step, scale in zip(o.steps, o.scales):
            if step > iteration:
                return rate
            rate *= scale
        return rate
    if policy == "exp":
        return lr * o.gamma ** iteration
    if policy == "poly":
        if o.max_batches < 1:
            raise DarknetError("policy=poly needs max_batches >= 1 in [net]")
        return lr * (1 - iteration / o.max_batches) ** o.power
    if policy == "random":
        rng = rng if rng is not None else np.random.default_rng()
        return lr * rng.uniform(0, 1) ** o.power
    if policy == "sigmoid":
        return lr * (1.0 / (1.0 + math.exp(o.gamma * (iteration - o.step))))
    if policy == "sgdr":
        start, cycle = 0, o.sgdr_cycle
        while start + cycle < iteration:
            start += cycle
            cycle *= o.sgdr_mult
        return o.learning_rate_min + 0.5 * (lr - o.learning_rate_min) * (
            1.0 + math.cos((iteration - start) * 3.14159265 / cycle))
    raise DarknetError(f"learning-rate policy '{policy}' is not known")


def network_rate(net):
    """The rate darknet prints and updates with: that of the current iteration."""
    return current_rate(net.options, current_iteration(net))


# -- update --------------------------------------------------------------------------------------------
DECAYED = ("weights",)     # arrays SGD applies weight decay to; biases and BN scales are not decayed


def _frozen_before(net):
    """Darknet freezes every layer before the last one with stopbackward=1."""
    last = -1
    for layer in net.layers:
        if layer.common.get("stopbackward"):
            last = layer.index
    return last


def _updates(layer, iteration, burn_in):
    if layer.common.get("dont_update", 0) >= iteration:
        return False
    burnin_update = layer.common.get("burnin_update", 0)
    return not (burnin_update and burnin_update * burn_in > iteration)


def update_network(net):
    """Darknet's update_network: apply the gradients accumulated in every layer's `grads` (summed over the
    images of one iteration) and clear them. The weights are updated in place in layer.weights (device arrays on a
    device engine) by ops.sgd_update / ops.adam_update, one fused pass per array; the optimizer state (momentum, or
    Adam's m and v: arrays of the engine, zeros at first) lives in net.optimizer_state."""
    o = net.options
    ops = net.ops
    batch = images_per_iteration(net)
    iteration = current_iteration(net)
    rate = current_rate(o, iteration, rng=net.optimizer_state.setdefault("rng", np.random.default_rng()))
    frozen = _frozen_before(net)
    for layer in net.layers:
        if not layer.grads:
            continue
        grads, layer.grads = layer.grads, {}
        if layer.index < frozen or not _updates(layer, iteration, o.burn_in):
            continue
        layer_rate = rate * layer.common.get("learning_rate", 1.0)
        adam = o.adam and layer.kind == "convolutional"
        clip = layer.common.get("clip", 0.0) if layer.kind == "convolutional" else 0.0
        for name, grad in grads.items():
            if ops.weights_on_device:
                layer.weights[name] = ops.asarray(layer.weights[name])   # the same array once it is there
            w = layer.weights[name].reshape(grad.shape)
            key = (layer.index, name)
            array_clip = clip if name == "weights" else 0.0
            if key not in net.optimizer_state:
                net.optimizer_state[key] = tuple(ops.xp.zeros_like(w) for _ in range(2 if adam else 1))
            if adam:
                m, v = net.optimizer_state[key]
                ops.adam_update(w, grad, m, v, layer_rate, o.B1, o.B2, o.eps, iteration, o.decay * batch, array_clip)
            else:
                velocity, = net.optimizer_state[key]
                decay = o.decay * batch if name in DECAYED else 0.0
                ops.sgd_update(w, grad, velocity, layer_rate / batch, o.momentum, decay, array_clip)


# -- one iteration -------------------------------------------------------------------------------------
def check_finite(net, loss, iteration, sync=None):
    """Stop with the iteration and the first layer whose output is not finite when the loss is NaN/Inf (with
    `sync`, a data-parallel run, the first rank's: every rank raises the same error)."""
    if math.isfinite(loss):
        return
    if sync is None:
        first = net.first_non_finite()
        where = first.label if first is not None else "the loss only (every layer output is finite)"
    else:
        where = sync.first_non_finite(net)
    error = TrainingDiverged(f"{net.cfg_path}: training diverged at iteration {iteration}: loss is {loss}; first "
                             f"non-finite output: {where}; lower learning_rate or raise burn_in")
    error.every_rank = sync is not None
    raise error


def train_iteration(net, next_batch, sync=None):
    """Darknet's train_network: `subdivisions` mini-batches from next_batch() -> (x, truth), each forward and
    backward (seen += mini-batch first), then one update. Returns the loss darknet reports: the network cost
    summed over the mini-batches divided by the images of the iteration.
    With `sync` (distributed.GradientSync, a data-parallel run of net.ranks processes), seen counts every
    rank's images, and the loss, the gradients and the BN rolling statistics are summed over the ranks before
    the update; a non-finite loss on any rank is found after the sums, so that every rank stops together."""
    o = net.options
    total = 0.0
    if sync is not None:
        sync.begin(net)
    for sub in range(o.subdivisions):
        x, truth = next_batch()
        if x.shape[0] != o.mini_batch:
            raise DarknetError(f"{net.cfg_path}: a training mini-batch of {x.shape[0]} images; the network "
                               f"runs {o.mini_batch}")
        net.seen += o.mini_batch * net.ranks
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            # non-finite values are reported by check_finite, naming the layer, not by NumPy warnings
            net.forward(x, train=True, truth=truth)
        if net.cost is None:
            raise DarknetError(f"{net.cfg_path}: no layer computes a loss (training needs a [softmax], [cost] "
                               f"or detection layer at the end)")
        loss = float(net.cost)
        total += loss
        if sync is None:
            check_finite(net, loss, -(-net.seen // images_per_iteration(net)))   # the iteration in progress
            net.backward()
            continue
        last = sub == o.subdivisions - 1
        if last:
            sync.forward_done(net, total)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            net.backward(layer_done=sync.layer_done if last else None)
    if sync is not None:
        total = sync.finish(net)
        check_finite(net, total, current_iteration(net), sync)
    update_network(net)
    loss = total / images_per_iteration(net)
    check_finite(net, loss, current_iteration(net))
    return loss
