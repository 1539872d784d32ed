"""What the train verbs share (classifier.train_classifier, detector_train.train_detector, as darknet's
train_classifier and train_detector share it): building the network to train, the backup files
`<cfgbase>_<tag>.weights`, the per-iteration bookkeeping (TrainLoop: darknet's running averages, the
`Loaded:` line, a progress bar) and chart.png, and what a data-parallel run adds (distributed.py): the
device of each rank, starting the ranks for `-gpus 0,1,...` (run_train), rank 0's weights on every rank
(start_ranks). Each verb keeps its own schedule of saves and evaluations and its own iteration line, which
differ in darknet."""
import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import DarknetError
from .training import current_iteration, train_iteration
from .distributed import DEFAULT_TIMEOUT

MAX_THREADS = 64   # image loading workers: darknet's detector loader runs 64 threads
MAX_RANK_TIMEOUT = 7 * 24 * 3600   # a rank waiting longer for the others would not be noticed anyway


def cfg_base(cfg_path):
    """Darknet's basecfg: the cfg file name without folder and extension."""
    return Path(cfg_path).stem


def build_network(cfg_path, weights, batch=None, subdivisions=None, device="cpu"):
    """The cfg's network with `weights` loaded, or darknet's random initialization without them (the cfg's
    warnings shown; the verb prints the layer table, with check_memory_and_print_table). batch=None keeps the
    cfg's."""
    from .network import Network
    from .weights import init_weights, load_weights
    if subdivisions is not None and subdivisions < 1:
        raise DarknetError(f"subdivisions must be >= 1; got {subdivisions}")
    net = Network(cfg_path, batch=batch, device=device)
    if subdivisions is not None:
        net.options.subdivisions = subdivisions
    if weights is None:
        init_weights(net)
    else:
        load_weights(net, weights)
    return net


def check_memory_and_print_table(net, quiet, batch=1, train=False):
    """What a verb does once its inputs are checked, before its first batch: the memory check for `batch`
    images, then darknet's layer table on stderr unless `quiet`. Darknet prints the table as it loads; here it
    comes after the checks that can fail, so that their one-line error is not buried under the table."""
    net.check_memory(batch, train)
    if not quiet:
        print(net.summary(batch=batch if train else None), file=sys.stderr)


def network_to_train(cfg_path, weights, batch, subdivisions, device, max_batches, clear):
    """build_network, then max_batches overridden when given (at least 1 needed) and `seen` reset with clear."""
    net = build_network(cfg_path, weights, batch=batch, subdivisions=subdivisions, device=device)
    o = net.options
    if max_batches is not None:
        o.max_batches = max_batches
    if o.max_batches < 1:
        raise DarknetError(f"{cfg_path}: [net] max_batches={o.max_batches}; training needs max_batches >= 1 "
                           f"(darknet would train forever)")
    if clear:
        net.seen = 0
    return net


def header(base, options):
    """The first lines darknet's train verbs print."""
    o = options
    return f"{base}\nLearning Rate: {o.learning_rate:g}, Momentum: {o.momentum:g}, Decay: {o.decay:g}"


def gpu_indexes(text):
    """The argparse type of -gpus: darknet's comma-separated GPU indexes (0, or 0,1,2), each once."""
    from .cli import INT_MAX
    parts = text.split(",")
    if not all(p.isdigit() and int(p) <= INT_MAX for p in parts) or len(set(map(int, parts))) != len(parts):
        raise argparse.ArgumentTypeError(f"expected GPU indexes such as 0 or 0,1 (each a number >= 0, once); "
                                         f"got '{text}'")
    return [int(p) for p in parts]


def gpus_flag(gpus):
    return f"-gpus {','.join(map(str, gpus))}"


def usable_gpu(device):
    """None when a CUDA engine can run on `device`, else why not."""
    from .backend import get_ops
    try:
        get_ops(device)
    except DarknetError as e:
        return str(e)
    return None


def gpus_device(args):
    """The device of `-gpus` for a verb that runs on one GPU (test, map, benchmark): the first index (a
    warning names the others); the CPU, with a warning, when no CUDA engine can use that GPU."""
    if args.gpus is None:
        return "cpu"
    device = f"cuda:{args.gpus[0]}"
    flag = gpus_flag(args.gpus)
    if len(args.gpus) > 1:
        print(f"warning: {flag}: this verb runs on one GPU; using {device} only", file=sys.stderr)
    reason = usable_gpu(device)
    if reason is not None:
        print(f"warning: {flag}: {reason}; running on the CPU", file=sys.stderr)
        return "cpu"
    return device


def run_train(args, train):
    """A train verb from the command line. With several -gpus indexes and no MPI launcher around this process,
    start one rank per index through the launcher (distributed.launch; each rank runs this command) and return
    its exit status; otherwise train(device) here: this rank's device is its -gpus index (ranks on one host
    take the indexes in order), or the CPU without -gpus — for every rank, with one warning, when a rank's
    GPU cannot run the CUDA engine."""
    from .distributed import launch, launched_by_mpi, world
    gpus = args.gpus
    if gpus is not None and len(gpus) > 1 and not launched_by_mpi():
        return launch(args.argv, len(gpus), gpus_flag(gpus))
    ranks = world(args.rank_timeout)
    device = "cpu"
    with ranks.all_succeed("the devices of the ranks"):
        if gpus is not None and ranks.local_size > len(gpus):
            raise DarknetError(f"{gpus_flag(gpus)}: {ranks.local_size} ranks on this host need a GPU index each; "
                               f"got {len(gpus)}")
    if gpus is not None:
        device = f"cuda:{gpus[ranks.local_rank]}"
        reasons = ranks.allgather(usable_gpu(device), "the devices of the ranks")
        reason = next((r for r in reasons if r is not None), None)
        if reason is not None:
            if ranks.rank == 0:
                runs = "running on the CPU" if ranks.size == 1 else f"the {ranks.size} ranks run on the CPU"
                print(f"warning: {gpus_flag(gpus)}: {reason}; {runs}", file=sys.stderr)
            device = "cpu"
    train(device)


def start_ranks(net, ranks, seed):
    """Every rank of a data-parallel run starts from rank 0's weights and iteration, counts every rank's images
    (net.ranks) and uses rank 0's seed (a random one without `seed`); returns (the GradientSync, or None for
    one process, the seed)."""
    ranks.share_weights(net)
    net.ranks = ranks.size
    if ranks.local_size > 1 and net.ops.name == "cpu":
        share_cores(ranks.local_size)
    if ranks.size > 1 and seed is None:
        seed = int(np.random.SeedSequence().entropy)
    return ranks.gradient_sync(net), ranks.broadcast(seed, "the seed")


@contextlib.contextmanager
def rank_warnings(ranks):
    """Warnings about the inputs (a cfg's unused fields, ...) from rank 0 alone: every rank reads the same files."""
    with warnings.catch_warnings():
        if ranks.rank:
            warnings.simplefilter("ignore")
        yield


def share_cores(processes):
    """CPU-engine ranks on one host split its cores: each runs its kernels and BLAS on its share (by default
    every process would start a thread per core, and their threads would wait on each other)."""
    from threadpoolctl import threadpool_limits
    from .backend import _kernels
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // processes)
    _kernels().set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


def stream_shard(net, ranks):
    """This rank's part of the run's image stream, from where the iteration count says the run is."""
    from .data import Shard
    o = net.options
    return Shard(first=net.seen // o.mini_batch, rank=ranks.rank, ranks=ranks.size, subdivisions=o.subdivisions)


def seed_random_layers(net, seed, batch):
    """Dropout masks and crop offsets of global mini-batch `batch` drawn from (seed, layer, batch): the same
    however the run is split among ranks."""
    for layer in net.layers:
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng([seed, layer.index, batch])


def add_training_options(train):
    """The options both `train` verbs take besides DATA CFG [WEIGHTS] and their own evaluation flag."""
    from .cli import POSITIVE, Number
    add_gpus_option(train, train=True)
    train.add_argument("-dont_show", action="store_true", help="no progress bar (darknet: no chart window)")
    train.add_argument("-clear", action="store_true", help="start the iteration count from 0")
    train.add_argument("-chart", default="chart.png", help="where to write the chart (default: chart.png)")
    train.add_argument("--batch", type=POSITIVE, help="mini-batch (overrides the cfg's batch/subdivisions)")
    train.add_argument("--subdivisions", type=POSITIVE, help="mini-batches per iteration (overrides the cfg)")
    train.add_argument("--max_batches", type=POSITIVE, help="iterations to train to (overrides the cfg)")
    train.add_argument("--threads", type=Number(int, 1, MAX_THREADS), default=2,
                       help=f"image loading workers (default: 2, at most {MAX_THREADS})")
    train.add_argument("--seed", type=Number(int, 0), help="a reproducible run: image order, augmentation, "
                                                          "dropout and multi-scale sizes from this number")
    train.add_argument("--rank_timeout", type=Number(float, 1, MAX_RANK_TIMEOUT), default=DEFAULT_TIMEOUT,
                       help=f"several processes: seconds a rank waits for the others before it names the missing "
                            f"ones and all stop (default {DEFAULT_TIMEOUT:g})")


def add_gpus_option(parser, train=False):
    what = ("one rank per GPU (started through mpirun), each index once; under mpirun the ranks of a host take "
            "them in order" if train else "the first is used")
    parser.add_argument("-gpus", type=gpu_indexes,
                        help=f"GPU indexes, darknet's 0,1,...: {what}; the CPU when no CUDA engine can use them "
                             f"(with a warning)")


class Backups:
    """The .data `backup` folder (created) and darknet's file names in it: <cfgbase>_<tag>.weights."""

    def __init__(self, folder, cfg_path):
        self.folder, self.base = Path(folder), cfg_base(cfg_path)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DarknetError(f"{self.folder}: cannot create the backup folder: {e.strerror or e}") from None

    def save(self, net, tag):
        """Atomically write `net`'s weights as <cfgbase>_<tag>.weights; returns the path."""
        from .weights import save_weights
        path = self.folder / f"{self.base}_{tag}.weights"
        save_weights(net, str(path))
        return path


class TrainLoop:
    """One training iteration at a time with darknet's bookkeeping: the time the loader made the engine wait,
    avg loss = .9 avg + .1 loss (restarted by a non-finite avg), hours left = .99 avg + .01 of this
    iteration's estimate; a tqdm bar on `bar_file` and the chart's loss curve.

        loop = TrainLoop(net, chart, out, sys.stderr, progress=True)
        loop.step(net, loader)                  # loop.loss, .avg_loss, .iteration, .seconds, .avg_hours
        loop.report("<the verb's iteration line>", loss=...)
        loop.close()

    `sync`: the GradientSync of a data-parallel run (None for one process); with `seed`, the random layers of
    each mini-batch draw from it and the mini-batch's place in the run (seed_random_layers).
    """

    def __init__(self, net, chart, out, bar_file, progress, sync=None, seed=None):
        from tqdm import tqdm
        self.chart, self.out, self.sync, self.seed = chart, out, sync, seed
        self.max_batches = net.options.max_batches
        self.iteration = current_iteration(net)
        self.loss, self.avg_loss, self.avg_hours = math.nan, -1.0, -1.0
        self.seconds = self.waited = 0.0
        self.bar = tqdm(total=self.max_batches, initial=min(self.iteration, self.max_batches),
                        disable=not progress, file=bar_file, dynamic_ncols=True, unit="it")

    def step(self, net, loader):
        """One iteration (training.train_iteration) of `net` on batches from `loader` (next(), wait_seconds)."""
        start = time.perf_counter()
        self.waited = 0.0

        def next_batch():
            x, truth = loader.next()
            self.waited += loader.wait_seconds
            if self.seed is not None:
                seed_random_layers(net, self.seed, loader.index)
            return x, truth

        self.loss = train_iteration(net, next_batch, self.sync)
        if self.avg_loss < 0 or not math.isfinite(self.avg_loss):
            self.avg_loss = self.loss
        self.avg_loss = self.avg_loss * .9 + self.loss * .1
        self.iteration = current_iteration(net)
        self.seconds = time.perf_counter() - start
        hours = (self.max_batches - self.iteration) * self.seconds / 3600
        self.avg_hours = hours if self.avg_hours < 0 else .01 * hours + .99 * self.avg_hours
        return self.loss

    def write(self, line, file=None):
        """A line on `file` (default: out) that does not break the progress bar."""
        self.bar.write(line, file=file or self.out)

    def report(self, line, **postfix):
        """darknet's `Loaded:` line and the verb's iteration line, then the bar (with `postfix`) and the chart."""
        self.write(f"Loaded: {self.waited:f} seconds")
        self.write(line)
        self.bar.update(1)
        self.bar.set_postfix(**postfix)
        self.chart.add_loss(self.iteration, self.avg_loss)

    def close(self):
        self.bar.close()


class Chart:
    """chart.png: avg loss and an accuracy (top-k, mAP) against iterations (matplotlib, Agg)."""

    def __init__(self, path, max_batches, accuracy_name):
        self.path, self.max_batches, self.accuracy_name = path, max_batches, accuracy_name
        self.iterations, self.losses, self.accuracy = [], [], []
        # the format from the extension, else png (as savefig(path)); checked now, not at the first save
        self.format = None
        if path is not None:
            self.format = Path(path).suffix[1:].lower() or None
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            supported = FigureCanvasAgg.get_supported_filetypes()
            if (self.format or "png") not in supported:
                raise DarknetError(f"{path}: -chart: expected a file ending in one of "
                                   f"{', '.join('.' + k for k in sorted(supported))}; got .{self.format}")

    def add_loss(self, iteration, avg_loss):
        self.iterations.append(iteration)
        self.losses.append(avg_loss)

    def add_accuracy(self, iteration, value):
        self.accuracy.append((iteration, value))

    def save(self):
        if self.path is None or not self.iterations:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
        ax.plot(self.iterations, self.losses, color="tab:blue", linewidth=1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("avg loss", color="tab:blue")
        ax.set_xlim(0, max(self.max_batches, self.iterations[-1]))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=.3)
        if self.accuracy:
            acc = ax.twinx()
            its, values = zip(*self.accuracy)
            acc.plot(its, [v * 100 for v in values], "o-", color="tab:red")
            acc.set_ylabel(f"{self.accuracy_name} %", color="tab:red")
            acc.set_ylim(0, 100)
        fig.tight_layout()
        try:
            write_atomic(self.path, lambda f: fig.savefig(f, format=self.format), what="the chart",
                         error=DarknetError)
        finally:
            plt.close(fig)


def print_skipped(draws, images, out):
    """The training summary line of unreadable images (each was named on stderr when first met)."""
    if draws:
        print(f"Skipped {images} unreadable images ({draws} random draws replaced by other images)", file=out)
