"""What the train verbs share (classifier.train_classifier, detector_train.train_detector, as darknet's
train_classifier and train_detector share it): building the network to train, the backup files
`<cfgbase>_<tag>.weights`, the per-iteration bookkeeping (TrainLoop: darknet's running averages, the
`Loaded:` line, a progress bar) and chart.png. Each verb keeps its own schedule of saves and evaluations and
its own iteration line, which differ in darknet."""
import argparse
import math
import sys
import time
from pathlib import Path

from .atomic import write_atomic
from .errors import DarknetError
from .training import current_iteration, train_iteration

MAX_THREADS = 64   # image loading workers: darknet's detector loader runs 64 threads


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


def gpus_device(args):
    """The device of `-gpus`: the first index (darknet_py runs on one GPU: a warning names the others); the
    CPU, with a warning, when no CUDA engine can use that GPU."""
    if args.gpus is None:
        return "cpu"
    from .backend import get_ops
    device = f"cuda:{args.gpus[0]}"
    flag = f"-gpus {','.join(map(str, args.gpus))}"
    if len(args.gpus) > 1:
        print(f"warning: {flag}: darknet_py runs on one GPU; using {device} only", file=sys.stderr)
    try:
        get_ops(device)
    except DarknetError as e:
        print(f"warning: {flag}: {e}; running on the CPU", file=sys.stderr)
        return "cpu"
    return device


def add_training_options(train):
    """The options both `train` verbs take besides DATA CFG [WEIGHTS] and their own evaluation flag."""
    from .cli import POSITIVE, Number
    add_gpus_option(train)
    train.add_argument("-dont_show", action="store_true", help="no progress bar (darknet: no chart window)")
    train.add_argument("-clear", action="store_true", help="start the iteration count from 0")
    train.add_argument("-chart", default="chart.png", help="where to write the chart (default: chart.png)")
    train.add_argument("--batch", type=POSITIVE, help="mini-batch (overrides the cfg's batch/subdivisions)")
    train.add_argument("--subdivisions", type=POSITIVE, help="mini-batches per iteration (overrides the cfg)")
    train.add_argument("--max_batches", type=POSITIVE, help="iterations to train to (overrides the cfg)")
    train.add_argument("--threads", type=Number(int, 1, MAX_THREADS), default=2,
                       help=f"image loading workers (default: 2, at most {MAX_THREADS})")


def add_gpus_option(parser):
    parser.add_argument("-gpus", type=gpu_indexes,
                        help="GPU indexes, darknet's 0,1,...: the first is used; the CPU when no CUDA engine can "
                             "use it (with a warning)")


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
    """

    def __init__(self, net, chart, out, bar_file, progress):
        from tqdm import tqdm
        self.chart, self.out = chart, out
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
            return x, truth

        self.loss = train_iteration(net, next_batch)
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
