"""`darknet-py classifier train | valid | predict`: darknet's classifier verbs (src/classifier.c).

train (train_classifier): builds the cfg's network (random weights, or WEIGHTS to start from or resume; -clear
resets `seen`), then loops until iteration max_batches: one iteration = `subdivisions` mini-batches loaded in
the background (darknet_py.data.ClassifierBatches, augmented as the [net] options say), forward with truth,
backward, one update (training.py). Per iteration it prints darknet's lines
    Loaded: <seconds the loader made the engine wait> seconds
    <iteration>, <epoch>: <loss>, <avg loss> avg, <rate> rate, <seconds> seconds, <seen> images, <h> hours left
with a progress bar on stderr; avg loss = .9 avg + .1 loss. It saves, in the .data `backup` folder,
`<cfgbase>_<iteration>.weights` every 1000 iterations, `<cfgbase>_last.weights` every 100 and
`<cfgbase>_final.weights` at the end (darknet's names and periods; .data `saveweights=` / `savelast=`, as for
the detector, or the Python API change the periods). Saves are atomic (weights.save_weights): a run killed at
any moment loses at most the iterations since the last `_last` save.
Unreadable or corrupt images in the train list are reported once each on stderr, replaced by other random
draws and counted on the `Skipped ...` line at the end; a list with no readable image is an error.
With -topk, top-1/top-k on the `valid` list run about every 2 epochs (darknet: at least every burn_in and 100
iterations) and at the end. chart.png shows the avg loss and top-k over iterations.
A NaN/Inf loss stops training with the iteration and the first layer whose output is not finite; checkpoints
already written stay as they are.
valid (validate_classifier_single): top-1 and top-k (`top` in .data, default 1) over the valid list, each image
prepared as darknet does (darknet_py.data.classify_input); the class of an image is the label its path contains
(darknet_py.data.class_indices).
predict (predict_classifier): the `top` most probable classes (-t, else .data `top`, default 1) as
`NN.NN%: label` lines, labels from `names` (else `labels`).
valid and predict refuse (where darknet prints percentages of whatever the network outputs) a cfg whose output
is not class probabilities (a [softmax], or a layer with activation=logistic, optionally followed by [cost]),
one whose output size is not the .data `classes`, -t above `classes`, and outputs that are NaN/Inf (naming the
first layer that produced one). They print the layer table after these checks.
"""
import sys
import time

import numpy as np

from .detection import HEAD_KINDS
from .errors import DarknetError
from .distributed import DEFAULT_TIMEOUT, Discard, world
from .trainer import (Backups, Chart, TrainLoop, add_training_options, build_network, cfg_base, header,
                      network_to_train, print_skipped, run_train, check_memory_and_print_table, rank_warnings,
                      start_ranks, stream_shard)
from .training import current_iteration, images_per_iteration, network_rate

SAVE_EVERY = 1000       # darknet: <cfgbase>_<iteration>.weights
LAST_EVERY = 100        # darknet: <cfgbase>_last.weights
VALID_CHUNK = 64        # images per inference forward in validation


def output_layer(net):
    """The layer whose output a classifier reads: the last one, or the one before a final [cost] (which passes
    its input on); refused unless it gives class probabilities ([softmax], or activation=logistic)."""
    layers = net.layers
    head = layers[-2] if layers[-1].kind == "cost" and len(layers) > 1 else layers[-1]
    if head.kind != "softmax" and getattr(head, "activation", None) != "logistic":
        raise DarknetError(f"{net.cfg_path}: the output layer is {head.label}, not a classifier's: expected a "
                           f"[softmax] (or activation=logistic) giving class probabilities"
                           + (" — a detector? use detector test" if head.kind in HEAD_KINDS else ""))
    return head


def _check_classes(net, data):
    """The output layer (output_layer) must give one probability per class of the .data file."""
    head = output_layer(net)
    if head.outputs != data.classes:
        raise DarknetError(f"{data.where('classes')}: classes={data.classes}, but the output layer of "
                           f"{net.cfg_path}, {head.label}, gives {head.outputs} values (the [connected]/"
                           f"[convolutional] before [softmax] needs {data.classes} outputs)")
    return head


def _top_k(probabilities, k):
    """Indexes of the k largest values per row, largest first (ties: lower index first, as darknet's top_k)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    return order[:, :k]


# -- valid --------------------------------------------------------------------------------------------
def class_probabilities(net, x):
    """An inference forward of `x`: (images, classes) probabilities, refused when not finite."""
    head = output_layer(net)
    net.forward_checked(x, [head])
    return net.ops.to_numpy(head.output).reshape(len(x), -1)


def evaluate(net, data, paths, topk, progress=None, ranks=None):
    """(top-1, top-k) accuracy of `net` on image `paths`, classes from the paths and data.labels.
    `progress(i, top1_so_far, topk_so_far)` is called after each image of this process. With `ranks` (a
    data-parallel run), each rank runs its part of the list and the hits are summed."""
    from .data import class_indices, classify_input
    if not paths:
        raise DarknetError(f"{data.path}: the valid list {data.valid} has no images")
    mine = paths if ranks is None else ranks.part(paths)
    classes = class_indices(mine, data.labels, source=str(data.valid))
    topk = max(1, min(topk, data.classes))
    hits = np.zeros(2)
    for start in range(0, len(mine), VALID_CHUNK):
        chunk = mine[start:start + VALID_CHUNK]
        x = np.concatenate([classify_input(p, net.options) for p in chunk])
        best = _top_k(class_probabilities(net, x), topk)
        for i, (truth, row) in enumerate(zip(classes[start:start + VALID_CHUNK], best)):
            hits += (row[0] == truth, truth in row)
            if progress is not None:
                done = start + i + 1
                progress(done - 1, hits[0] / done, hits[1] / done)
    if ranks is not None:
        hits = ranks.sum(hits, "the top-k hits")
    return hits[0] / len(paths), hits[1] / len(paths)


def validate_classifier(data_path, cfg_path, weights, out=None, quiet=True):
    out = out or sys.stdout
    from .data import read_list
    from .datafile import read_data_file
    data = read_data_file(data_path)
    net = build_network(cfg_path, weights, batch=1)
    net.freeze_weights()   # inference only
    _check_classes(net, data)
    topk = min(data.top, data.classes)
    paths = read_list(data.valid)
    check_memory_and_print_table(net, quiet)

    def report(i, top1, topn):
        print(f"{i}: top 1: {top1:f}, top {topk}: {topn:f}", file=out)
    top1, topn = evaluate(net, data, paths, topk, progress=report)
    print(f"{len(paths)} images: top 1: {top1:f}, top {topk}: {topn:f}", file=out)
    return top1, topn


# -- predict ------------------------------------------------------------------------------------------
def predict_classifier(data_path, cfg_path, weights, image, top=0, out=None, quiet=True):
    """Print and return [(probability, label)] of the `top` most probable classes of `image` (0: the .data
    `top`, at most `classes`; above `classes` is an error)."""
    out = out or sys.stdout
    from .data import classify_input
    from .datafile import read_data_file
    data = read_data_file(data_path)
    net = build_network(cfg_path, weights, batch=1)
    net.freeze_weights()   # inference only
    _check_classes(net, data)
    names = data.names
    if not 0 <= top <= data.classes:
        raise DarknetError(f"-t {top}: expected 0 (the .data top) up to the {data.classes} classes of "
                           f"{data.where('classes')}")
    top = top or min(data.top, data.classes)
    x = classify_input(image, net.options)
    check_memory_and_print_table(net, quiet)
    start = time.perf_counter()
    probabilities = class_probabilities(net, x)
    print(f"{image}: Predicted in {(time.perf_counter() - start) * 1000:f} milli-seconds.", file=out)
    result = []
    for index in _top_k(probabilities, top)[0]:
        result.append((float(probabilities[0, index]), names[index]))
        print(f"{probabilities[0, index] * 100:5.2f}%: {names[index]}", file=out)
    return result


# -- train --------------------------------------------------------------------------------------------
def train_classifier(data_path, cfg_path, weights=None, clear=False, calc_topk=False, chart="chart.png",
                     device="cpu", batch=None, subdivisions=None, max_batches=None, save_every=None,
                     last_every=None, topk_every=None, threads=2, seed=None, progress=True, out=None, quiet=True,
                     rank_timeout=DEFAULT_TIMEOUT):
    """Darknet's train_classifier. batch/subdivisions/max_batches override the cfg's (batch is the
    mini-batch); topk_every overrides darknet's top-k period. Returns a dict: iteration, seen, loss, avg_loss,
    rate, topk (list of (iteration, top-1, top-k)), final (path of the _final weights).
    Started by an MPI launcher, each process is a rank of one data-parallel run (distributed.py): rank 0 reads
    WEIGHTS, prints, writes the chart and the backups; the top-k checks split the valid list among the ranks."""
    ranks = world(rank_timeout)
    with ranks.together():
        return _train_classifier(ranks, data_path, cfg_path, weights, clear, calc_topk, chart, device, batch,
                                 subdivisions, max_batches, save_every, last_every, topk_every, threads, seed,
                                 progress, out, quiet)


def _train_classifier(ranks, data_path, cfg_path, weights, clear, calc_topk, chart, device, batch, subdivisions,
                      max_batches, save_every, last_every, topk_every, threads, seed, progress, out, quiet):
    from .data import ClassifierBatches, read_list
    from .datafile import read_data_file

    root = ranks.rank == 0
    out = (out or sys.stdout) if root else Discard()
    with ranks.all_succeed("reading the inputs"), rank_warnings(ranks):
        data = read_data_file(data_path)
        net = network_to_train(cfg_path, weights if root else None, batch, subdivisions, device, max_batches, clear)
        _check_classes(net, data)
        o = net.options
        backups = Backups(data.backup, cfg_path) if root else None
        if save_every is None:
            save_every = data.get_int("saveweights", SAVE_EVERY, minimum=1)
        if last_every is None:
            last_every = data.get_int("savelast", LAST_EVERY, minimum=1)
        paths = read_list(data.train)
        valid_paths = read_list(data.valid) if calc_topk else []
        topk = min(data.get_int("top", 5, minimum=1), data.classes)
        topk_name = f"top{topk}"
        chart = Chart(chart if root else None, o.max_batches, topk_name)
        check_memory_and_print_table(net, quiet or not root, o.mini_batch, train=True)
    sync, seed = start_ranks(net, ranks, seed)
    print(f"{header(cfg_base(cfg_path), o)}\n{len(paths)} training images", file=out)

    iteration = current_iteration(net)
    iter_save = iter_save_last = iter_topk = iteration
    topk_results = []
    per_iteration = images_per_iteration(net)
    loop = TrainLoop(net, chart, out, sys.stderr, progress and root, sync, seed)
    try:
        with ClassifierBatches(paths, data.labels, o, o.mini_batch, augment=True, threads=threads, seed=seed,
                               shard=stream_shard(net, ranks)) as loader:
            while iteration < o.max_batches:
                loss = loop.step(net, loader)
                iteration = loop.iteration
                loop.report(f"{iteration}, {net.seen / len(paths):.3f}: {loss:f}, {loop.avg_loss:f} avg, "
                            f"{network_rate(net):f} rate, {loop.seconds:f} seconds, {net.seen} images, "
                            f"{loop.avg_hours:f} hours left", loss=f"{loop.avg_loss:.4f}", load=f"{loop.waited:.3f}s")
                if calc_topk:
                    if topk_every is None:
                        due = max(iter_topk + 2 * len(paths) // per_iteration, o.burn_in, 100)
                    else:
                        due = iter_topk + topk_every
                    if iteration >= due or iteration == o.max_batches:
                        iter_topk = iteration
                        top1, topn = evaluate(net, data, valid_paths, topk, ranks=ranks)
                        topk_results.append((iteration, top1, topn))
                        chart.add_accuracy(iteration, topn)
                        loop.write(f"\n accuracy top1 = {top1:f}, {topk_name} = {topn:f} \n")
                        chart.save()
                if iteration >= iter_save + save_every:
                    iter_save = iteration
                    if root:
                        backups.save(net, iteration)
                if iteration >= iter_save_last + last_every:
                    iter_save_last = iteration
                    if root:
                        backups.save(net, "last")
                    chart.save()
            skipped = ranks.sum([loader.skipped, len(loader.reported)], "the counts of unreadable images")
    finally:
        loop.close()
    final = backups.save(net, "final") if root else None
    chart.save()
    print_skipped(*skipped.astype(int), out)
    print(f"Saved {final}", file=out)
    return {"iteration": iteration, "seen": net.seen, "loss": loop.loss, "avg_loss": loop.avg_loss,
            "rate": network_rate(net), "topk": topk_results, "final": str(final), "skipped": int(skipped[1]),
            "net": net}


# -- CLI ----------------------------------------------------------------------------------------------
def cmd_train(args):
    return run_train(args, lambda device: train_classifier(
        args.data, args.cfg, args.weights, clear=args.clear, calc_topk=args.topk, chart=args.chart, device=device,
        batch=args.batch, subdivisions=args.subdivisions, max_batches=args.max_batches, threads=args.threads,
        seed=args.seed, progress=not args.dont_show, quiet=False, rank_timeout=args.rank_timeout))


def cmd_valid(args):
    validate_classifier(args.data, args.cfg, args.weights, quiet=False)


def cmd_predict(args):
    from .cli import UsageError
    from .weights import image_format
    if args.image is None:
        image = image_format(args.weights)
        raise UsageError("classifier predict: expected DATA CFG WEIGHTS IMAGE; " + (
            f"{args.weights} is a {image} image: the weights file is missing" if image else "IMAGE is missing"))
    predict_classifier(args.data, args.cfg, args.weights, args.image, top=args.t, quiet=False)


def register_cli(sub):
    from .cli import COUNT
    classifier = sub.add_parser("classifier", help="train, validate or run a classifier (darknet classifier ...)")
    verbs = classifier.add_subparsers(dest="verb", required=True, parser_class=type(classifier))

    train = verbs.add_parser("train", help="train a classifier from a .data file and a cfg")
    train.add_argument("data")
    train.add_argument("cfg")
    train.add_argument("weights", nargs="?", help="weights to start from (resumes their iteration count)")
    train.add_argument("-topk", action="store_true", help="top-1/top-k on the valid list about every 2 epochs")
    add_training_options(train)
    train.set_defaults(run=cmd_train)

    valid = verbs.add_parser("valid", help="top-1/top-k accuracy on the .data valid list")
    valid.add_argument("data")
    valid.add_argument("cfg")
    valid.add_argument("weights")
    valid.set_defaults(run=cmd_valid)

    predict = verbs.add_parser("predict", help="the most probable classes of one image")
    predict.add_argument("data")
    predict.add_argument("cfg")
    predict.add_argument("weights")
    predict.add_argument("image", nargs="?")   # optional only to say which argument is missing
    predict.add_argument("-t", type=COUNT, default=0,
                         help="how many classes to print, at most classes (default 0: .data top, or 1)")
    predict.set_defaults(run=cmd_predict)
