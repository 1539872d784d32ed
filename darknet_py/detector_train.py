"""`darknet-py detector train DATA CFG [WEIGHTS] [-map] [-dont_show] [-clear]`: darknet's train_detector
(src/detector.c).

Builds the cfg's network (random weights, or WEIGHTS to start from or resume: their `seen` gives the
iteration; -clear resets it), then until iteration max_batches: one iteration = `subdivisions` mini-batches
from detector_data.DetectionBatches (jitter/resize crop, letterbox, flip, HSV, as [net] and the last detection
layer say), forward with truth (the heads' darknet losses), backward, one update (training.py: burn_in, policy,
momentum, decay). Multi-scale (`random` of the last detection layer): every 10 iterations a new size
rand_scale(1.4, or random= when it is not 1) times the cfg's, rounded as darknet to multiples of [net]
resize_step (32): roundl(s*size/step + 1)*step (float32, halves up), not above the cfg's size when s < 1, the
largest size for the first resize and in the last 100 iterations; the network is rebuilt at that size sharing
its weights.
Per iteration it prints the heads' `v3 (...)` loss lines of the last mini-batch on stderr and darknet's
    Loaded: <seconds the loader made the engine wait> seconds
    <iteration>: <loss>, <avg loss> avg loss, <rate> rate, <seconds> seconds, <images> images, <h> hours left
on stdout. Files in the .data `backup` folder, darknet's names: `<cfgbase>_<iteration>.weights` every
`saveweights` (.data, default 1000) iterations, `<cfgbase>_last.weights` every `savelast` (default 100),
`<cfgbase>_best.weights` when -map finds a new best mAP, `<cfgbase>_final.weights` at the end. With -map:
mAP@0.5 on the `valid` list (detector.validate_map, at the cfg's size) every max(100, 4 epochs) iterations
from burn_in on, and at the end; chart.png shows avg loss and mAP.
"""
import math
import sys

import numpy as np

from .distributed import DEFAULT_TIMEOUT, Discard, world
from .errors import DarknetError
from .trainer import (Backups, Chart, TrainLoop, add_training_options, cfg_base, header, network_to_train,
                      print_skipped, run_train, check_memory_and_print_table, rank_warnings, start_ranks, stream_shard)
from .training import current_iteration, images_per_iteration, network_rate

MAP_EPOCHS = 4          # darknet's default -mAP_epochs
RESIZE_EVERY = 10       # darknet: a new random size every 10 iterations


def _step_multiple(scale, size, step):
    """darknet's roundl(scale*size/step + 1)*step, in its float32 arithmetic; roundl takes halves away from
    zero (Python's round would take 2.5 to 2)."""
    value = np.float32(np.float32(scale) * np.float32(size)) / np.float32(step) + np.float32(1)
    return int(math.floor(float(value) + 0.5)) * int(step)


def random_size(rng, init_w, init_h, coef, step, largest):
    """train_detector's multi-scale size for the next 10 iterations (see the module docstring)."""
    scale = rng.uniform(1, coef)
    scale = scale if rng.integers(2) else 1 / scale
    w, h = _step_multiple(scale, init_w, step), _step_multiple(scale, init_h, step)
    if scale < 1 and (w > init_w or h > init_h):
        w, h = init_w, init_h
    if largest:
        w, h = _step_multiple(coef, init_w, step), _step_multiple(coef, init_h, step)
    return max(w, int(step)), max(h, int(step))


def resized_network(net, width, height, batch=None):
    """A network of the same cfg at width x height sharing `net`'s weights, gradients, optimizer state and
    seen (darknet's resize_network)."""
    from .network import Network
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the cfg's unused-field warnings were shown when it was first built
        other = Network(net.cfg_path, batch=batch or net.options.mini_batch, width=width, height=height,
                        device=getattr(net.ops, "device", "cpu"))
    other.options.subdivisions = net.options.subdivisions
    other.options.max_batches = net.options.max_batches
    for mine, theirs in zip(other.layers, net.layers):
        mine.weights, mine.grads = theirs.weights, theirs.grads
    other.ops = net.ops
    other.optimizer_state = net.optimizer_state
    other.seen, other.version, other.ranks = net.seen, net.version, net.ranks
    return other


def train_detector(data_path, cfg_path, weights=None, clear=False, calc_map=False, chart="chart.png",
                   device="cpu", batch=None, subdivisions=None, max_batches=None, threads=2, seed=None,
                   progress=True, out=None, err=None, workers="process", quiet=True, rank_timeout=DEFAULT_TIMEOUT):
    """Darknet's train_detector. batch/subdivisions/max_batches override the cfg's (batch is the mini-batch).
    Returns a dict: iteration, seen, loss, avg_loss, maps (list of (iteration, mAP)), best_map, final (path).
    Started by an MPI launcher, each process is a rank of one data-parallel run (distributed.py): rank 0 reads
    WEIGHTS, prints, writes the chart and the backups; -map splits the valid list among the ranks."""
    ranks = world(rank_timeout)
    with ranks.together():
        return _train_detector(ranks, data_path, cfg_path, weights, clear, calc_map, chart, device, batch,
                               subdivisions, max_batches, threads, seed, progress, out, err, workers, quiet)


def _train_detector(ranks, data_path, cfg_path, weights, clear, calc_map, chart, device, batch, subdivisions,
                    max_batches, threads, seed, progress, out, err, workers, quiet):
    from .data import read_list
    from .datafile import read_data_file
    from .detector import validate_map
    from .detector_data import DetectionAugmentation, DetectionBatches, last_detection_layer

    root = ranks.rank == 0
    out, err = (out or sys.stdout, err or sys.stderr) if root else (Discard(), Discard())
    with ranks.all_succeed("reading the inputs"), rank_warnings(ranks):
        data = read_data_file(data_path)
        net = network_to_train(cfg_path, weights if root else None, batch, subdivisions, device, max_batches, clear)
        head = last_detection_layer(net)
        if data.classes != head.classes:
            raise DarknetError(f"{data.where('classes')}: classes={data.classes}, but the detection layers of "
                               f"{cfg_path} have classes={head.classes}")
        o = net.options
        if o.mini_batch * o.subdivisions == 1 and batch is None:
            raise DarknetError(f"{cfg_path}: batch=1: darknet refuses to train with one image per iteration "
                               f"(set e.g. batch=64 subdivisions=16)")
        for key in ("badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "equidistant_point"):
            if getattr(o, key):
                raise DarknetError(f"{cfg_path}: [net] {key}: not supported by detector training yet; remove it")
        backups = Backups(data.backup, cfg_path) if root else None
        save_every = data.get_int("saveweights", 1000 if o.max_batches < 10000 else 10000, minimum=1)
        last_every = data.get_int("savelast", 100, minimum=1)
        paths = read_list(data.train)
        valid_paths = read_list(data.valid) if calc_map else []
        chart = Chart(chart if root else None, o.max_batches, "mAP@0.5")
        check_memory_and_print_table(net, quiet or not root, o.mini_batch, train=True)
    sync, seed = start_ranks(net, ranks, seed)
    map_net = resized_network(net, o.width, o.height, batch=1) if calc_map else None
    init_w, init_h = o.width, o.height
    rng = np.random.default_rng(seed)     # multi-scale sizes: the same on every rank
    print(f"{header(cfg_base(cfg_path), o)}\nWeights are saved after: {save_every} iterations. Last weights "
          f"(*_last.weight) are stored every {last_every} iterations.\n{len(paths)} training images", file=out)

    reported, skipped_draws = set(), 0

    stream_seed = seed if seed is not None else int(np.random.SeedSequence().entropy)

    def loader_for(network):
        """The loader of `network`'s size, continuing the run's image stream where the iteration count is."""
        aug = DetectionAugmentation.from_network(network, network.width, network.height)
        batches = DetectionBatches(paths, aug, network.options.mini_batch, threads=threads, seed=stream_seed,
                                   workers=workers, shard=stream_shard(network, ranks))
        batches.reported = reported     # one warning per unreadable image over the whole run, across resizes
        return batches

    iteration = current_iteration(net)
    iter_save = iter_save_last = iter_map = iteration
    maps, best_map = [], -1.0
    per_iteration = images_per_iteration(net)
    resize_count = 0
    loop = TrainLoop(net, chart, out, err, progress and root, sync, seed)
    loader = None
    try:
        loader = loader_for(net)
        while iteration < o.max_batches:
            if head.random and resize_count % RESIZE_EVERY == 0:
                coef = 1.4 if head.random == 1 else head.random
                largest = loop.avg_loss < 0 or iteration > o.max_batches - 100
                w, h = random_size(rng, init_w, init_h, coef, o.resize_step, largest)
                print(f"Resizing, random_coef = {coef:.2f} \n\n {w} x {h} ", file=out)
                loader.close()
                skipped_draws += loader.skipped
                net = resized_network(net, w, h)
                head = last_detection_layer(net)
                loader = loader_for(net)
            resize_count += 1
            loss = loop.step(net, loader)
            iteration = loop.iteration
            for layer in net.layers:     # the heads' loss lines of the last mini-batch
                if getattr(layer, "loss_line", ""):
                    loop.write(layer.loss_line, file=err)
            loop.report(f"\n {iteration}: {loss:f}, {loop.avg_loss:f} avg loss, {network_rate(net):f} rate, "
                        f"{loop.seconds:f} seconds, {iteration * per_iteration} images, {loop.avg_hours:f} hours "
                        f"left", loss=f"{loop.avg_loss:.3f}", map=f"{maps[-1][1]:.3f}" if maps else "-")
            if calc_map:
                due = max(iter_map + max(MAP_EPOCHS * len(paths) // per_iteration, 100), o.burn_in)
                if iteration >= due or iteration == o.max_batches:
                    iter_map = iteration
                    result = validate_map(map_net, valid_paths, head.classes, ranks=ranks)
                    maps.append((iteration, result.map))
                    chart.add_accuracy(iteration, result.map)
                    loop.write(f"\n mean_average_precision (mAP@0.50) = {result.map:f} ")
                    if result.map >= best_map:
                        best_map = result.map
                        loop.write("New best mAP!")
                        if root:
                            backups.save(net, "best")
                    chart.save()
            if iteration >= iter_save + save_every or iteration % save_every == 0:
                iter_save = iteration
                if root:
                    backups.save(net, iteration)
            if save_every > last_every and (iteration >= iter_save_last + last_every or
                                            (iteration % last_every == 0 and iteration > 1)):
                iter_save_last = iteration
                if root:
                    backups.save(net, "last")
                chart.save()
    finally:
        if loader is not None:
            loader.close()
        loop.close()
    skipped_draws, skipped_images = ranks.sum([skipped_draws + loader.skipped, len(reported)],
                                              "the counts of unreadable images").astype(int)
    final = backups.save(net, "final") if root else None
    chart.save()
    print_skipped(skipped_draws, skipped_images, out)
    print(f"Saved {final}\nIf you want to train from the beginning, then use flag in the end of training "
          f"command: -clear ", file=out)
    return {"iteration": iteration, "seen": net.seen, "loss": loop.loss, "avg_loss": loop.avg_loss, "maps": maps,
            "best_map": best_map, "final": str(final), "skipped": int(skipped_images), "net": net}


# -- CLI ----------------------------------------------------------------------------------------------
def cmd_train(args):
    return run_train(args, lambda device: train_detector(
        args.data, args.cfg, args.weights, clear=args.clear, calc_map=args.map, chart=args.chart, device=device,
        batch=args.batch, subdivisions=args.subdivisions, max_batches=args.max_batches, threads=args.threads,
        seed=args.seed, progress=not args.dont_show, quiet=False, rank_timeout=args.rank_timeout))


def add_train_verb(verbs):
    """Adds `train` to the `detector` sub-verb group (detector.register_cli returns it)."""
    train = verbs.add_parser("train", help="train a detector from a .data file and a cfg (darknet detector train)")
    train.add_argument("data", help="the .data file (classes=, train=, valid=, names=, backup=)")
    train.add_argument("cfg")
    train.add_argument("weights", nargs="?", help="weights to start from (resumes their iteration count)")
    train.add_argument("-map", action="store_true", help="mAP@0.5 on the valid list every 4 epochs (chart)")
    add_training_options(train)
    train.set_defaults(run=cmd_train)
    return train
