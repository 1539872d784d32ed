"""Kill-safe training: `python -m darknet_py classifier train` killed with SIGKILL at each step of a checkpoint
save and at random moments, then resumed from `<cfgbase>_last.weights`; and training lists holding missing,
truncated and fake images, end to end through the CLI (classifier and detector train).

The save steps are reached exactly by a fault injector (a sitecustomize.py put on the child's PYTHONPATH) that
wraps tempfile.mkstemp, os.fsync and os.replace, logs each call and parks the process at the chosen one until
the test kills it: temp file created (empty), temp file written (before its fsync), rename, folder fsync.
Expected states follow from darknet's backup schedule (train_classifier: `_<i>` when i >= last numbered save
+ saveweights, `_last` when i >= last _last save + savelast, both counted from the resumed iteration), written
out independently below."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, one_error_line

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or not os.path.isdir("/proc/self/fd"),
                                reason="needs POSIX SIGKILL and /proc/self/fd")

LINE = re.compile(r"^(\d+), [\d.]+: [\d.naif]+, [\d.naif]+ avg, ([\d.]+) rate, [\d.]+ seconds, (\d+) images, ",
                  re.M)
BATCH, LAST_EVERY, SAVE_EVERY = 4, 2, 5
LR, BURN_IN, POWER, STEPS = 0.1, 4, 2, (6, 12, 18, 24, 30, 36)
CFG = f"""[net]
batch={BATCH}
subdivisions=1
width=16
height=16
channels=3
min_crop=16
max_crop=20
learning_rate={LR}
momentum=0.9
decay=0.0005
burn_in={BURN_IN}
power={POWER}
policy=steps
steps={",".join(map(str, STEPS))}
scales={",".join(".5" for _ in STEPS)}
max_batches=1000

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[avgpool]

[connected]
output=2
activation=linear

[softmax]
"""
LABELS = ("klass-a", "klass-b")
# darknet's header (major, minor, revision int32, seen uint64) + float32 convolution biases, BN scales, means,
# variances and 3x3x3x4 weights, then connected biases and 4x2 weights
WEIGHTS_SIZE = 3 * 4 + 8 + 4 * (4 * 4 + 3 * 3 * 3 * 4 + 2 + 4 * 2)

INJECTOR = '''
import os, stat, tempfile, time
_target = os.environ.get("DNPY_TEST_STOP_AT")       # "<step> <n>": park at the n-th <step> of this process
_folder = os.environ.get("DNPY_TEST_BACKUP")
if _target and _folder:
    _events, _counts = os.environ["DNPY_TEST_EVENTS"], {}
    _mkstemp, _fsync, _replace = tempfile.mkstemp, os.fsync, os.replace

    def _reach(step, path):
        if os.path.dirname(os.path.abspath(path)) != _folder and os.path.abspath(path) != _folder:
            return
        _counts[step] = _counts.get(step, 0) + 1
        with open(_events, "a") as log:
            log.write(f"{step} {_counts[step]} {path}\\n")
        if f"{step} {_counts[step]}" == _target:
            time.sleep(600)                              # the test kills the process here

    def mkstemp(*args, **kwargs):
        fd, path = _mkstemp(*args, **kwargs)
        _reach("created", path)
        return fd, path

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        _reach("synced-folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "written", path)
        return _fsync(fd)

    def replace(src, dst, **kwargs):
        _reach("renaming", dst)
        return _replace(src, dst, **kwargs)

    tempfile.mkstemp, os.fsync, os.replace = mkstemp, fsync, replace
'''


def rate(i):
    """darknet's get_current_rate for this cfg: burn_in then steps."""
    if i < BURN_IN:
        return LR * (i / BURN_IN) ** POWER
    return LR * 0.5 ** sum(1 for s in STEPS if s <= i)


def save_schedule(resumed_at, until):
    """[(iteration, file name)] of the saves a run resumed at `resumed_at` makes up to iteration `until`, in
    order (numbered first within an iteration, as train_classifier)."""
    saves, numbered, last = [], resumed_at, resumed_at
    for i in range(resumed_at + 1, until + 1):
        if i >= numbered + SAVE_EVERY:
            numbered = i
            saves.append((i, f"tiny_{i}.weights"))
        if i >= last + LAST_EVERY:
            last = i
            saves.append((i, "tiny_last.weights"))
    return saves


def is_temporary(name):
    """atomic.write_atomic's temporary files: hidden, named after their target (.tiny_last.weights-XXXXXXXX)."""
    return name.startswith(".") and ".weights-" in name


class Trainer:
    """A tiny classifier data set and cfg in `root`, and the CLI training runs on it."""

    def __init__(self, root):
        self.root, self.backup = root, root / "backup"
        rng = np.random.default_rng(0)
        names = []
        for n in range(8):
            name = root / f"img{n}_{LABELS[n % 2]}.png"
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(name)
            names.append(str(name))
        (root / "train.list").write_text("\n".join(names) + "\n")
        (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
        (root / "tiny.cfg").write_text(CFG)
        (root / "inject").mkdir()
        (root / "inject" / "sitecustomize.py").write_text(INJECTOR)
        self.data = root / "tiny.data"
        self.data.write_text(f"classes = 2\ntrain = {root / 'train.list'}\nvalid = {root / 'train.list'}\n"
                             f"labels = {root / 'labels.txt'}\nbackup = {self.backup}\n"
                             f"savelast = {LAST_EVERY}\nsaveweights = {SAVE_EVERY}\n")
        self.events = root / "events.log"
        self.runs = 0

    def start(self, weights=None, stop_at=None, max_batches=100000):
        self.runs += 1
        self.out = self.root / f"run{self.runs}.out"
        self.err = self.root / f"run{self.runs}.err"
        env = dict(os.environ, PYTHONUNBUFFERED="1", DNPY_TEST_BACKUP=str(self.backup),
                   DNPY_TEST_EVENTS=str(self.events), DNPY_TEST_STOP_AT=stop_at or "",
                   PYTHONPATH=os.pathsep.join([str(self.root / "inject"), str(REPO)]))
        self.events.write_text("")
        argv = [sys.executable, "-m", "darknet_py", "classifier", "train", str(self.data),
                str(self.root / "tiny.cfg")] + ([str(weights)] if weights else []) + [
            "-dont_show", "--threads", "1", "--max_batches", str(max_batches), "-chart", str(self.root / "c.png")]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=self.root)
        return self.proc

    def lines(self):
        return [(int(i), float(r), int(seen)) for i, r, seen in LINE.findall(self.out.read_text())]

    def wait_for(self, condition, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"training exited ({self.proc.returncode}) before {what}: "
                                     f"{self.err.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {what} within {timeout} s")
            time.sleep(0.005)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def temp_files(self):
        return sorted(p.name for p in self.backup.iterdir() if is_temporary(p.name))

    def weights_files(self):
        """{name: iteration} of every .weights file in backup/, each loaded in full (a corrupt one fails)."""
        from darknet_py.network import Network
        from darknet_py.weights import load_weights
        found = {}
        for path in sorted(self.backup.iterdir()):
            if is_temporary(path.name):
                continue
            assert path.suffix == ".weights", f"unexpected file in backup/: {path.name}"
            net = Network(self.root / "tiny.cfg")
            load_weights(net, path)
            assert net.seen % BATCH == 0, (path.name, net.seen)
            assert path.stat().st_size == WEIGHTS_SIZE, path.name
            found[path.name] = net.seen // BATCH
        return found


def check_resumed(trainer, resumed_at):
    """The run resumed from _last went on at the next iteration with its rate and seen count."""
    lines = trainer.lines()[:3]
    assert lines, "no iteration line"
    for n, (i, r, seen) in enumerate(lines):
        assert i == resumed_at + 1 + n and seen == i * BATCH, (resumed_at, lines)
        assert r == pytest.approx(rate(i), abs=1e-6), (i, r)


SAVE_STEPS = ("created", "written", "renaming", "synced-folder")    # in the order save_weights takes them


def kill_in_save(trainer, step, number, resumed_at, resumed):
    """Kill the run at `step` of its `number`-th save; check what backup/ holds then. Returns the number of
    temp files the kill left."""
    trainer.wait_for(lambda: f"{step} {number} " in trainer.events.read_text(), f"save step '{step} {number}'")
    trainer.kill()
    saves = save_schedule(resumed_at, resumed_at + 100)
    at, name = saves[number - 1]
    assert trainer.lines()[-1][0] == at, (step, number, trainer.lines()[-1], saves[:number])
    files = trainer.weights_files()
    if step == "synced-folder":                 # renamed: the new file is in place
        assert files[name] == at, (step, name, files)
        return 0
    earlier = [i for i, n in saves[:number - 1] if n == name]
    if earlier:
        expected = earlier[-1]
    else:
        expected = resumed_at if resumed and name == "tiny_last.weights" else None
    assert files.get(name) == expected, (step, name, files)       # the old file, untouched
    newest = max((trainer.backup / t for t in trainer.temp_files()), key=lambda p: p.stat().st_mtime)
    size = newest.stat().st_size
    assert size == (0 if step == "created" else WEIGHTS_SIZE), (step, size)
    return 1


def test_sigkill_at_every_save_step_and_at_random_moments_then_resume(tmp_path):
    trainer = Trainer(tmp_path)
    picker = random.Random(8)
    temps, resumed_at, weights = 0, 0, None
    for plan in SAVE_STEPS + ("random", "temp-file"):
        number = picker.randint(1, 4)          # which save of the run to stop in
        trainer.start(weights, stop_at=f"{plan} {number}" if plan in SAVE_STEPS else None)
        if plan in SAVE_STEPS:
            temps += kill_in_save(trainer, plan, number, resumed_at, weights is not None)
        else:
            trainer.wait_for(lambda: len(trainer.lines()) >= 1, "an iteration line")
            if plan == "random":
                time.sleep(picker.uniform(0, 0.5))
            else:                # kill when a new temp file shows (saves are short: polling may miss them all)
                deadline = time.monotonic() + 3
                while len(trainer.temp_files()) <= temps and time.monotonic() < deadline:
                    pass
            trainer.kill()
            trainer.weights_files()
            temps = len(trainer.temp_files())
        assert len(trainer.temp_files()) == temps
        if weights:
            check_resumed(trainer, resumed_at)
        printed = trainer.lines()[-1][0] if trainer.lines() else resumed_at
        last = trainer.weights_files().get("tiny_last.weights")
        if last is None:                        # killed before the first save of a fresh run
            assert weights is None and printed <= LAST_EVERY
            continue
        assert resumed_at <= last <= printed and printed - last <= LAST_EVERY, (resumed_at, last, printed)
        assert (last - resumed_at) % LAST_EVERY == 0
        weights, resumed_at = trainer.backup / "tiny_last.weights", last

    proc = trainer.start(weights, max_batches=resumed_at + 3)
    assert proc.wait(timeout=120) == 0, trainer.err.read_text()[-2000:]
    check_resumed(trainer, resumed_at)
    assert trainer.weights_files()["tiny_final.weights"] == resumed_at + 3
    assert len(trainer.temp_files()) == temps


# -- training lists with unreadable images ---------------------------------------------------------------------
def bad_images(folder, label):
    """A missing path, a truncated PNG, a truncated JPEG and a text file named .jpg, each with `label` in its
    name."""
    folder.mkdir(exist_ok=True)
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    missing = folder / f"missing_{label}.png"
    png, jpeg, text = folder / f"cut_{label}.png", folder / f"cut_{label}.jpg", folder / f"notes_{label}.jpg"
    for path, kind in ((png, "PNG"), (jpeg, "JPEG")):
        picture.save(path, kind)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    text.write_text("these are notes, not a picture\n")
    return [str(p) for p in (missing, png, jpeg, text)]


def check_reported_and_counted(bad, out, err):
    warnings = [line for line in err.splitlines() if "unreadable image" in line]
    for path in bad:
        assert sum(path in line for line in warnings) == 1, (path, warnings)      # once, by path
    assert len(warnings) == len(bad), warnings
    skipped = re.search(r"^Skipped (\d+) unreadable images \((\d+) random draws replaced by other images\)$", out,
                        re.M)
    assert skipped and int(skipped[1]) == len(bad) and int(skipped[2]) >= len(bad), out[-500:]


def check_all_bad_is_one_error(argv, capfd):
    from darknet_py.cli import main
    assert main(argv) == 2
    assert "none of the 4 images" in one_error_line(capfd.readouterr().err)


def test_classifier_train_skips_and_counts_unreadable_images(tmp_path, capfd):
    from darknet_py.cli import main
    trainer = Trainer(tmp_path)
    bad = bad_images(tmp_path / "bad", LABELS[0])
    good = (tmp_path / "train.list").read_text().split()[:2]
    (tmp_path / "train.list").write_text("\n".join(good + bad) + "\n")
    argv = ["classifier", "train", str(trainer.data), str(tmp_path / "tiny.cfg"), "-dont_show", "--max_batches",
            "12", "-chart", str(tmp_path / "c.png")]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert [int(m[0]) for m in LINE.findall(out)] == list(range(1, 13))      # training went on
    check_reported_and_counted(bad, out, err)
    assert trainer.weights_files()["tiny_final.weights"] == 12
    (tmp_path / "train.list").write_text("\n".join(bad) + "\n")
    check_all_bad_is_one_error(argv, capfd)


def test_detector_train_skips_and_counts_unreadable_images(tmp_path, capfd):
    from darknet_py.cli import main
    from test_detector_train import make_dataset
    data, cfg = make_dataset(tmp_path, 12)
    cfg.write_text(cfg.read_text() + "random=1\n")     # multi-scale: a new loader after iteration 10
    train_list = tmp_path / "ds" / "train.txt"
    bad = bad_images(tmp_path / "bad", "shape")
    good = train_list.read_text().split()[:2]
    train_list.write_text("\n".join(good + bad) + "\n")
    argv = ["detector", "train", str(data), str(cfg), "-dont_show", "-chart", str(tmp_path / "c.png")]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert re.search(r"^ 12: ", out, re.M) and out.count("Resizing") == 2
    check_reported_and_counted(bad, out, err)
    train_list.write_text("\n".join(bad) + "\n")
    check_all_bad_is_one_error(argv, capfd)


def descendants(pid):
    """Pids of every process below `pid` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit():
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_python(pid):
    """Whether `pid` is (still) a Python process (a reused pid is not one of ours)."""
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_sigkilled_detector_training_leaves_no_loader_processes(tmp_path):
    """detector train loads in forkserver worker processes; SIGKILL of the trainer must not orphan them."""
    from test_detector_train import make_dataset
    data, cfg = make_dataset(tmp_path, 100000)
    out = tmp_path / "out.txt"
    with open(out, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "darknet_py", "detector", "train", str(data), str(cfg),
                                 "-dont_show", "--threads", "2", "-chart", str(tmp_path / "c.png")],
                                stdout=log, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 60
    while not re.search(r"^ 1: ", out.read_text(), re.M):
        assert proc.poll() is None and time.monotonic() < deadline, "detector train did not reach iteration 1"
        time.sleep(0.05)
    helpers = descendants(proc.pid)
    assert len(helpers) >= 3, helpers             # forkserver, 2 workers (and the resource tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in helpers if is_python(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:           # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"{len(alive)} of {len(helpers)} loader processes outlived the killed trainer"
