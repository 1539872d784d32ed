"""Training core against darknet's formulas written out by hand (src/network.c get_current_rate,
update_convolutional_layer, adam_update_gpu, softmax_x_ent_cpu, l2_cpu), NumPy, and finite differences."""
import math

import numpy as np
import pytest

import darknet_py
from darknet_py.backend import NumpyOps
from darknet_py.training import (TrainingDiverged, current_iteration, current_rate, train_iteration,
                                 update_network)
from darknet_py.weights import init_weights
from gradcheck import float64_net


def net_from(tmp_path, text, name="t.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return darknet_py.Network(path)        # the cfg's mini-batch (load() defaults to batch 1)


def options(tmp_path, net_lines):
    text = "[net]\nwidth=4\nheight=4\nchannels=1\n" + net_lines + "\n[connected]\noutput=2\n"
    return net_from(tmp_path, text).options


# -- learning-rate policies ---------------------------------------------------------------------------
def test_burn_in_then_constant(tmp_path):
    o = options(tmp_path, "learning_rate=0.01\nburn_in=100\npower=4\npolicy=constant")
    assert current_rate(o, 0) == 0
    assert current_rate(o, 50) == pytest.approx(0.01 * 0.5 ** 4)
    assert current_rate(o, 99) == pytest.approx(0.01 * 0.99 ** 4)
    assert current_rate(o, 100) == pytest.approx(0.01)
    assert current_rate(o, 5000) == pytest.approx(0.01)


def test_burn_in_power_default_is_4_and_custom(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\nburn_in=10\npolicy=constant\npower=2")
    assert current_rate(o, 5) == pytest.approx(0.1 * 0.25)


def test_step_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=step\nstep=100\nscale=0.5")
    assert current_rate(o, 99) == pytest.approx(0.1)
    assert current_rate(o, 100) == pytest.approx(0.05)
    assert current_rate(o, 250) == pytest.approx(0.025)


def test_steps_policy_with_burn_in(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\nburn_in=10\npolicy=steps\nsteps=100,200\nscales=.1,.5")
    assert current_rate(o, 5) == pytest.approx(0.1 * 0.5 ** 4)
    assert current_rate(o, 10) == pytest.approx(0.1)
    assert current_rate(o, 99) == pytest.approx(0.1)
    assert current_rate(o, 100) == pytest.approx(0.01)      # steps[i] > batch_num is false at the step itself
    assert current_rate(o, 199) == pytest.approx(0.01)
    assert current_rate(o, 200) == pytest.approx(0.005)


def test_exp_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=exp\ngamma=0.99")
    assert current_rate(o, 10) == pytest.approx(0.1 * 0.99 ** 10)


def test_poly_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=poly\npower=2\nmax_batches=1000")
    assert current_rate(o, 250) == pytest.approx(0.1 * 0.75 ** 2)
    assert current_rate(o, 1000) == 0


def test_sigmoid_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=sigmoid\ngamma=0.1\nstep=100")
    assert current_rate(o, 150) == pytest.approx(0.1 / (1 + math.exp(5)))
    assert current_rate(o, 100) == pytest.approx(0.05)


def test_random_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=random\npower=2")
    u = np.random.default_rng(7).uniform(0, 1)
    assert current_rate(o, 5, rng=np.random.default_rng(7)) == pytest.approx(0.1 * u * u)


def test_sgdr_policy(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\nlearning_rate_min=0.001\npolicy=sgdr\nsgdr_cycle=100\n"
                          "sgdr_mult=2\nmax_batches=10000")
    lo, hi = 0.001, 0.1

    def cosine(done, cycle):
        return lo + 0.5 * (hi - lo) * (1 + math.cos(done * 3.14159265 / cycle))
    assert current_rate(o, 0) == pytest.approx(hi)
    assert current_rate(o, 50) == pytest.approx(cosine(50, 100))
    assert current_rate(o, 100) == pytest.approx(lo, abs=1e-9)   # the cycle ends at its last iteration
    assert current_rate(o, 150) == pytest.approx(cosine(50, 200))
    assert current_rate(o, 350) == pytest.approx(cosine(50, 400))


def test_sgdr_cycle_defaults_to_max_batches(tmp_path):
    o = options(tmp_path, "learning_rate=0.1\npolicy=sgdr\nmax_batches=400")
    assert current_rate(o, 200) == pytest.approx(0.00001 + 0.5 * (0.1 - 0.00001))


# -- update rule --------------------------------------------------------------------------------------
SMALL = """[net]
batch={batch}
subdivisions={subdivisions}
width=5
height=5
channels=2
momentum=0.9
decay=0.01
learning_rate=0.1
{extra}

[convolutional]
filters=3
size=3
pad=1
activation=leaky
{conv}

[connected]
output=4
activation=linear
learning_rate=0.5

[softmax]
"""


def small_net(tmp_path, batch=4, subdivisions=1, extra="", conv="", name="s.cfg"):
    net = net_from(tmp_path, SMALL.format(batch=batch, subdivisions=subdivisions, extra=extra, conv=conv), name)
    init_weights(net, seed=3)
    return net


def batch_data(n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 5, 5)).astype(np.float32)
    truth = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
    return x, truth


def gradients(net, x, truth):
    """Per-array gradients of one forward/backward, summed over the images, without updating."""
    net.forward(x, train=True, truth=truth)
    net.backward()
    grads = {(layer.index, k): v.copy() for layer in net.layers for k, v in layer.grads.items()}
    for layer in net.layers:
        layer.grads = {}
    return grads


def weights_of(net):
    return {(layer.index, k): v.copy() for layer in net.layers for k, v in layer.weights.items()}


def test_sgd_momentum_decay_two_steps(tmp_path):
    """Darknet's rule with B images per update: U -= decay*B*w (weights only); w += lr*scale/B * U;
    U *= momentum; written with the gradient's sign in NumPy."""
    net = small_net(tmp_path)
    x, truth = batch_data()
    B, lr, decay, momentum = 4, 0.1, 0.01, 0.9
    scale = {0: 1.0, 1: 0.5}                      # [connected] learning_rate=0.5
    velocity = {}
    for step in range(2):
        before = weights_of(net)
        grads = gradients(net, x, truth)
        expected = {}
        for key, g in grads.items():
            v = velocity.get(key, 0) + g.astype(np.float64)
            if key[1] == "weights":
                v = v + decay * B * before[key]
            expected[key] = before[key] - lr * scale[key[0]] / B * v
            velocity[key] = momentum * v
        # recompute the gradients inside a real iteration: seen moves to this iteration first
        net.seen += B
        net.forward(x, train=True, truth=truth)
        net.backward()
        update_network(net)
        after = weights_of(net)
        for key, value in expected.items():
            np.testing.assert_allclose(after[key], value, rtol=1e-5, atol=1e-7, err_msg=f"step {step} {key}")
    assert set(grads) == {(0, "weights"), (0, "biases"), (1, "weights"), (1, "biases")}


def test_batchnorm_scales_not_decayed_rolling_not_updated(tmp_path):
    net = small_net(tmp_path, conv="batch_normalize=1")
    x, truth = batch_data()
    net.forward(x, train=True, truth=truth)       # the rolling statistics move in training forwards only
    before = weights_of(net)
    net.backward()
    grads = {k: v.copy() for k, v in net.layers[0].grads.items()}
    rolling = {k: net.layers[0].weights[k].copy() for k in ("rolling_mean", "rolling_variance")}
    net.seen += 4
    update_network(net)
    for name in ("scales", "biases"):
        np.testing.assert_allclose(net.layers[0].weights[name], before[(0, name)] - 0.1 / 4 * grads[name],
                                   rtol=1e-6, atol=1e-8)
    for name, value in rolling.items():
        np.testing.assert_array_equal(net.layers[0].weights[name], value)
    assert net.layers[0].grads == {}


def test_subdivisions_accumulate_like_one_batch(tmp_path):
    x, truth = batch_data(4, seed=5)
    one = small_net(tmp_path, batch=4, subdivisions=1, name="one.cfg")
    two = small_net(tmp_path, batch=4, subdivisions=2, name="two.cfg")
    assert two.batch == 2
    halves = iter([(x[:2], truth[:2]), (x[2:], truth[2:])])
    loss_two = train_iteration(two, lambda: next(halves))
    loss_one = train_iteration(one, lambda: (x, truth))
    assert one.seen == two.seen == 4
    assert current_iteration(one) == current_iteration(two) == 1
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    for key, value in weights_of(one).items():
        np.testing.assert_allclose(weights_of(two)[key], value, rtol=1e-5, atol=1e-7, err_msg=str(key))


def test_reported_loss_is_mean_cross_entropy(tmp_path):
    net = small_net(tmp_path)
    x, truth = batch_data()
    out = net.forward(x, train=False)
    p = out[truth.astype(bool)]
    loss = train_iteration(net, lambda: (x, truth))
    assert loss == pytest.approx(float(-np.log(p).sum() / 4), rel=1e-5)


def test_adam_two_steps(tmp_path):
    """adam=1: [convolutional] arrays follow darknet's adam_update_gpu (decay on every array, rate not divided
    by the batch, t = iteration); [connected] keeps SGD with momentum."""
    net = small_net(tmp_path, extra="adam=1\nB1=0.8\nB2=0.95\neps=0.001")
    x, truth = batch_data()
    B, lr, decay = 4, 0.1, 0.01
    m, v, velocity = {}, {}, {}
    for t in (1, 2):
        before = weights_of(net)
        grads = gradients(net, x, truth)
        expected = {}
        for key, g in grads.items():
            if key[0] == 0:
                d = g + decay * B * before[key]
                m[key] = 0.8 * m.get(key, 0) + 0.2 * d
                v[key] = 0.95 * v.get(key, 0) + 0.05 * d * d
                mhat, vhat = m[key] / (1 - 0.8 ** t), v[key] / (1 - 0.95 ** t)
                expected[key] = before[key] - lr * mhat / (np.sqrt(vhat) + 0.001)
            else:
                u = velocity.get(key, 0) + g + (decay * B * before[key] if key[1] == "weights" else 0)
                expected[key] = before[key] - lr * 0.5 / B * u
                velocity[key] = 0.9 * u
        net.seen += B
        net.forward(x, train=True, truth=truth)
        net.backward()
        update_network(net)
        for key, value in expected.items():
            np.testing.assert_allclose(weights_of(net)[key], value, rtol=1e-5, atol=1e-7, err_msg=f"t={t} {key}")


def test_dont_update_and_stopbackward(tmp_path):
    net = small_net(tmp_path, conv="dont_update=5")
    x, truth = batch_data()
    before = weights_of(net)
    train_iteration(net, lambda: (x, truth))
    np.testing.assert_array_equal(net.layers[0].weights["weights"], before[(0, "weights")])
    assert not np.array_equal(net.layers[1].weights["weights"], before[(1, "weights")])


def test_burn_in_rate_is_that_of_the_iteration_just_done(tmp_path):
    """The first update uses iteration 1 (seen is counted before the update): lr * (1/burn_in)^power."""
    net = small_net(tmp_path, extra="burn_in=10\npower=2")
    x, truth = batch_data()
    before = weights_of(net)
    grads = gradients(net, x, truth)
    train_iteration(net, lambda: (x, truth))
    rate = 0.1 * (1 / 10) ** 2
    expected = before[(1, "biases")] - rate * 0.5 / 4 * grads[(1, "biases")]
    np.testing.assert_allclose(net.layers[1].weights["biases"], expected, rtol=1e-5)


# -- losses -------------------------------------------------------------------------------------------
HEAD = """[net]
batch=3
width=3
height=3
channels=2

[convolutional]
filters=2
size=3
pad=1
batch_normalize=1
activation=leaky

[connected]
output=5
activation=linear

[softmax]
{cost}
"""


def test_softmax_loss_and_delta_vs_numpy(tmp_path):
    net = net_from(tmp_path, HEAD.format(cost=""))
    init_weights(net, seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    truth = np.eye(5, dtype=np.float32)[[0, 3, 4]]
    p = net.forward(x, train=True, truth=truth)
    logits = net.layers[1].output.astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    q = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, q, rtol=1e-5)
    assert net.cost == pytest.approx(-np.log(q[truth.astype(bool)]).sum(), rel=1e-5)
    net.backward()
    np.testing.assert_allclose(net.layers[1].delta, q - truth, rtol=1e-5, atol=1e-6)


def test_label_smoothed_truth_counts_every_class(tmp_path):
    """softmax_x_ent_cpu: error = t ? -log(p) : 0, not weighted by t."""
    net = net_from(tmp_path, HEAD.format(cost=""))
    init_weights(net, seed=1)
    x = np.random.default_rng(3).normal(size=(3, 2, 3, 3)).astype(np.float32)
    truth = np.full((3, 5), 0.02, np.float32)
    truth[[0, 1, 2], [1, 2, 3]] = 0.92
    p = net.forward(x, train=True, truth=truth).astype(np.float64)
    assert net.cost == pytest.approx(-np.log(p).sum(), rel=1e-5)


@pytest.mark.parametrize("cost_type", ["sse", "smooth", "masked"])
def test_softmax_plus_cost(tmp_path, cost_type):
    """Darknet sums the cost layer's delta (scale * (t - p)) into the softmax's (t - p) and passes it to the
    logits unchanged; get_network_cost averages the two layers' costs."""
    net = net_from(tmp_path, HEAD.format(cost=f"\n[cost]\ntype={cost_type}\nscale=0.5"))
    init_weights(net, seed=1)
    x = np.random.default_rng(4).normal(size=(3, 2, 3, 3)).astype(np.float32)
    truth = np.eye(5, dtype=np.float32)[[2, 2, 0]] * 3 - 1     # |t - p| >= 1 somewhere: both smooth branches
    if cost_type == "masked":
        truth[0, 1] = -1234
    p = net.forward(x, train=True, truth=truth).astype(np.float64)
    t = truth.astype(np.float64)
    diff = t - p
    if cost_type == "masked":
        diff[0, 1] = 0
    error = diff ** 2
    delta = diff.copy()
    if cost_type == "smooth":
        large = np.abs(diff) >= 1
        error[large] = 2 * np.abs(diff[large]) - 1
        delta[large] = np.sign(diff[large])
    xent = -np.log(np.where(t != 0, p, 1)).sum()
    assert net.layers[2].cost == pytest.approx(xent, rel=1e-5)
    assert net.layers[3].cost == pytest.approx(error.sum(), rel=1e-5)
    assert net.cost == pytest.approx((xent + error.sum()) / 2, rel=1e-5)
    net.backward()
    np.testing.assert_allclose(net.layers[1].delta, (p - t) - 0.5 * delta, rtol=1e-5, atol=1e-6)


def test_softmax_loss_gradient_is_exact(tmp_path):
    """With one-hot truth, darknet's softmax delta is the true gradient of its reported cost: backward vs
    central differences of net.cost in float64, for the input and every weight."""
    net = float64_net(tmp_path, HEAD.format(cost=""))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 2, 3, 3))
    truth = np.eye(5)[[1, 0, 4]]
    net.forward(x, train=True, truth=truth)
    dx = net.backward()

    def cost():
        net.forward(x, train=True, truth=truth)
        return net.cost

    def check(array, grad):
        flat, g = array.reshape(-1), grad.reshape(-1)
        for i in rng.choice(flat.size, size=min(12, flat.size), replace=False):
            saved = flat[i]
            flat[i] = saved + 1e-6
            plus = cost()
            flat[i] = saved - 1e-6
            minus = cost()
            flat[i] = saved
            assert (plus - minus) / 2e-6 == pytest.approx(g[i], rel=1e-5, abs=1e-7)
    check(x, dx)
    for layer in net.layers:
        for key, array in layer.weights.items():
            if key not in ("rolling_mean", "rolling_variance"):
                check(array, layer.grads[key])


def test_truth_of_wrong_size_is_an_error(tmp_path):
    net = net_from(tmp_path, HEAD.format(cost=""))
    init_weights(net)
    with pytest.raises(darknet_py.DarknetError, match="truth of 12 values"):
        net.forward(np.zeros((3, 2, 3, 3), np.float32), train=True, truth=np.zeros((3, 4), np.float32))


def test_nan_stops_training_naming_the_layer(tmp_path):
    net = small_net(tmp_path)
    net.layers[1].weights["weights"][0, 0] = np.nan
    x, truth = batch_data()
    with pytest.raises(TrainingDiverged, match=r"iteration 1: loss is nan; first non-finite output: layer 1 "
                                               r"\[connected\]"):
        train_iteration(net, lambda: (x, truth))


def test_float64_ops_train(tmp_path):
    net = small_net(tmp_path)
    net.ops = NumpyOps(np.float64)
    x, truth = batch_data()
    assert math.isfinite(train_iteration(net, lambda: (x, truth)))
