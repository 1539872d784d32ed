"""Data-parallel training (distributed.py) with real MPI processes on the CPU: two ranks at mini-batch B train the
weights one process trains at twice the subdivisions (the same images in the same mini-batches, BN statistics
per mini-batch as darknet computes them), and, without batch normalization, at mini-batch 2B; on the CPU engine
and under cuda-emulated (and with NCCL on a machine with two GPUs). A rank that dies or hangs stops the other
with one line naming it, and the last saved weights resume the run. The launcher's flags are the ones `-gpus`
uses (distributed.launcher_flags: --oversubscribe, no core binding, the job kept alive when a rank dies)."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, gpu_available, load_quiet, one_error_line
from darknet_py.data import ImageOrder, Shard
from darknet_py.distributed import find_launcher, launcher_flags
from darknet_py.weights import load_weights
from engines import assert_close

LAUNCHER = find_launcher()
needs_mpi = pytest.mark.skipif(LAUNCHER is None or importlib.util.find_spec("mpi4py") is None,
                               reason="no MPI launcher or mpi4py here (pip install 'darknet_py[dist]')")
# -gpus 0,1 starts CPU ranks only where no CUDA engine can use the GPUs
cpu_launcher = pytest.mark.skipif(gpu_available(), reason="this machine has a GPU: -gpus 0,1 would run there")
DIGITS_CFG = REPO / "cfg" / "mixnet_tiny_digits.cfg"
LINE = re.compile(r"^(\d+), [\d.]+: ([\d.]+), ([\d.]+) avg, ", re.M)

FAULT_INJECTOR = '''
import os, signal, threading, time
# rank 1 of the run stops (DNPY_TEST_FAULT: SIGKILL dies, SIGSTOP hangs) once the file DNPY_TEST_FAULT_AFTER exists
if os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK")) == "1" and os.environ.get("DNPY_TEST_FAULT"):
    def _fault():
        while not os.path.exists(os.environ["DNPY_TEST_FAULT_AFTER"]):
            time.sleep(0.05)
        os.kill(os.getpid(), getattr(signal, os.environ["DNPY_TEST_FAULT"]))
    threading.Thread(target=_fault, daemon=True).start()
'''


def mpirun(ranks, args, env=None, cwd=None):
    """`mpirun -np <ranks> python <args>` with the launcher's flags."""
    command = [LAUNCHER, "-np", str(ranks), *launcher_flags(LAUNCHER), sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def darknet(args, env=None, cwd=None):
    """`python -m darknet_py <args>` (one process, or the ranks it launches)."""
    return subprocess.run([sys.executable, "-m", "darknet_py", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def assert_same_weights(cfg, got, want, rtol=1e-5):
    """Every array of the two weights files within rtol of its largest value, and the same `seen`."""
    nets = []
    for path in (got, want):
        net = load_quiet(cfg)
        load_weights(net, path)
        nets.append(net)
    assert nets[0].seen == nets[1].seen
    compared = 0
    for mine, theirs in zip(*(net.layers for net in nets)):
        for name, array in theirs.weights.items():
            assert_close(mine.weights[name], array, rtol, f"layer {theirs.index} {name}")
            compared += 1
    assert compared


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from darknet_py.datasets import make_digits
    return make_digits(tmp_path_factory.mktemp("digits"), size=32, seed=0)


def digits_data(digits, folder, **extra):
    root = digits.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits.data"
    keys = {"classes": 10, "train": root / "train.list", "valid": root / "valid.list", "labels": root / "labels.txt",
            "names": root / "names.txt", "backup": folder / "backup", "top": 2, **extra}
    path.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
    return path


def final_weights(data, cfg):
    return data.parent / "backup" / f"{cfg.stem}_final.weights"


# -- the image stream -------------------------------------------------------------------------------------------
def test_every_image_once_per_epoch_in_an_order_of_the_seed_and_epoch():
    order = ImageOrder(10, seed=3)
    epochs = [[order.index(g) for g in range(e * 10, e * 10 + 10)] for e in range(3)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert [ImageOrder(10, seed=3).index(g) for g in range(25, 5, -1)] == [order.index(g) for g in range(25, 5, -1)]
    assert epochs[0] != [ImageOrder(10, seed=4).index(g) for g in range(10)]


@pytest.mark.parametrize("ranks, subdivisions, first", [(2, 1, 0), (3, 2, 12), (4, 3, 24)])
def test_the_ranks_read_what_one_process_reads_at_ranks_times_the_subdivisions(ranks, subdivisions, first):
    one = Shard(first=first, subdivisions=ranks * subdivisions)
    per_rank = [Shard(first=first, rank=r, ranks=ranks, subdivisions=subdivisions) for r in range(ranks)]
    for iteration in range(4):
        expected = [one.batch(iteration * ranks * subdivisions + j) for j in range(ranks * subdivisions)]
        got = [shard.batch(iteration * subdivisions + j) for shard in per_rank for j in range(subdivisions)]
        assert got == expected      # rank 0's mini-batches first, as the rolling statistics are combined


# -- same weights ---------------------------------------------------------------------------------------------------
@needs_mpi
def test_mpirun_two_ranks_train_the_digits_as_one_process_at_twice_the_subdivisions(digits, tmp_path):
    train = ["--batch", "4", "--max_batches", "3", "--seed", "7", "-dont_show", "--threads", "1"]
    one_data, two_data = digits_data(digits, tmp_path / "one"), digits_data(digits, tmp_path / "two")
    one = darknet(["classifier", "train", str(one_data), str(DIGITS_CFG), "--subdivisions", "2", *train])
    two = mpirun(2, ["-m", "darknet_py", "classifier", "train", str(two_data), str(DIGITS_CFG), *train])
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert_same_weights(DIGITS_CFG, final_weights(two_data, DIGITS_CFG), final_weights(one_data, DIGITS_CFG))
    lines_one, lines_two = LINE.findall(one.stdout), LINE.findall(two.stdout)     # rank 0 alone prints
    assert [int(i) for i, _, _ in lines_two] == [1, 2, 3] and two.stdout.count("Saved ") == 1
    for (_, loss_one, avg_one), (_, loss_two, avg_two) in zip(lines_one, lines_two):
        assert float(loss_two) == pytest.approx(float(loss_one), rel=1e-5)
    assert "Total BFLOPS" in two.stderr and two.stderr.count("Total BFLOPS") == 1
    assert sorted(p.name for p in (tmp_path / "two" / "backup").iterdir()) == ["mixnet_tiny_digits_final.weights"]


NO_BN_CFG = """[net]
batch=8
subdivisions=1
width=16
height=16
channels=3
min_crop=16
max_crop=20
flip=1
learning_rate=0.05
momentum=0.9
decay=0.0005
burn_in=2
max_batches=4

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[avgpool]

[connected]
output=10
activation=linear

[softmax]
"""


@needs_mpi
def test_without_batch_normalization_two_ranks_equal_one_process_at_twice_the_mini_batch(digits, tmp_path):
    cfg = tmp_path / "nobn.cfg"
    cfg.write_text(NO_BN_CFG)
    train = ["--max_batches", "4", "--seed", "3", "-dont_show", "--threads", "1"]
    one_data, two_data = digits_data(digits, tmp_path / "one"), digits_data(digits, tmp_path / "two")
    one = darknet(["classifier", "train", str(one_data), str(cfg), "--batch", "8", *train])
    two = mpirun(2, ["-m", "darknet_py", "classifier", "train", str(two_data), str(cfg), "--batch", "4", *train])
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert_same_weights(cfg, final_weights(two_data, cfg), final_weights(one_data, cfg))


ENGINE_SCRIPT = """
import sys
from darknet_py.classifier import train_classifier
from darknet_py.distributed import world
device = f"cuda:{world().local_rank}" if sys.argv[3] == "cuda" else sys.argv[3]   # a GPU per rank, as -gpus 0,1
train_classifier(sys.argv[1], sys.argv[2], device=device, batch=4, subdivisions=int(sys.argv[4]), max_batches=2,
                 seed=5, threads=1, progress=False, chart=None)
"""


@needs_mpi
@pytest.mark.parametrize("device", [
    "cuda-emulated",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU here")])])
def test_two_ranks_of_the_cuda_engine_train_as_one_process(digits, tmp_path, device):
    """cuda-emulated: host arrays summed by MPI; cuda: device arrays summed by NCCL, one GPU per rank."""
    if device == "cuda":
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 2:
            pytest.skip("NCCL ranks need a GPU each: this machine has one")
    script = tmp_path / "train.py"
    script.write_text(ENGINE_SCRIPT)
    one_data, two_data = digits_data(digits, tmp_path / "one"), digits_data(digits, tmp_path / "two")
    one = subprocess.run([sys.executable, str(script), str(one_data), str(DIGITS_CFG), device, "2"],
                         capture_output=True, text=True, timeout=300)
    two = mpirun(2, [str(script), str(two_data), str(DIGITS_CFG), device, "1"])
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert_same_weights(DIGITS_CFG, final_weights(two_data, DIGITS_CFG), final_weights(one_data, DIGITS_CFG))


NCCL_SCRIPT = """
import cupy
from darknet_py.cuda_backend import CudaOps
from darknet_py.distributed import MpiRanks, NcclAllreduce
ranks = MpiRanks(60)
transport = NcclAllreduce(ranks, CudaOps("cuda:0"))
flat = cupy.arange(1000, dtype=cupy.float32)
transport.wait([transport.start(flat)], "the test's sum")
assert bool(cupy.array_equal(flat, cupy.arange(1000, dtype=cupy.float32) * ranks.size))
print("summed")
"""


@needs_mpi
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU here")
def test_nccl_transport_on_one_gpu(tmp_path):
    """The NCCL path's calls (unique id over MPI, communicator, all-reduce on its stream, events) as one rank on
    the one GPU a lent machine has: the two-rank test needs a GPU per rank."""
    script = tmp_path / "nccl.py"
    script.write_text(NCCL_SCRIPT)
    done = mpirun(1, [str(script)])
    assert done.returncode == 0 and "summed" in done.stdout, done.stderr


DETECTOR_TRAIN = ["--max_batches", "3", "--batch", "4", "--seed", "2", "-dont_show", "--threads", "1", "-map",
                  "-chart", "chart.png"]


@needs_mpi
def test_detector_two_ranks_train_and_map_as_one_process(tmp_path):
    """The shapes detector with -map (each rank evaluates half of the valid list) and rank 0's chart."""
    from test_detector_train import make_dataset
    runs = {}
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        data, cfg = make_dataset(folder, max_batches=3)
        train = ["detector", "train", str(data), str(cfg), *DETECTOR_TRAIN]
        if name == "one":
            done = darknet(train + ["--subdivisions", "2"], cwd=folder)
        else:
            done = mpirun(2, ["-m", "darknet_py", *train, "--subdivisions", "1"], cwd=folder)
        assert done.returncode == 0, done.stderr
        runs[name] = (done, data, cfg)
    (one, one_data, cfg), (two, two_data, _) = runs["one"], runs["two"]
    assert_same_weights(cfg, final_weights(two_data, cfg), final_weights(one_data, cfg))
    maps = [re.findall(r"mean_average_precision \(mAP@0.50\) = ([\d.]+)", done.stdout) for done in (one, two)]
    assert len(maps[0]) == 1 and maps[0] == maps[1]
    assert (tmp_path / "two" / "chart.png").is_file()


# -- faults -----------------------------------------------------------------------------------------------------
def fault_env(tmp_path, fault, after):
    folder = tmp_path / "inject"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(FAULT_INJECTOR)
    env = dict(os.environ, DNPY_TEST_FAULT=fault, DNPY_TEST_FAULT_AFTER=str(after))
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    return env


def exited(pid):
    """Whether process pid has ended: no such process, or a zombie (state Z, after the name in parentheses)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@needs_mpi
@cpu_launcher
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_a_rank_that_dies_or_hangs_stops_the_other_and_the_run_resumes(digits, tmp_path, fault):
    """-gpus 0,1 (two CPU ranks here) killed or stopped at rank 1 after the first _last save: rank 0 names rank 1 in
    one line within the timeout (6 s) and exits 1, rank 1 is gone, no partial checkpoint; _last resumes both ranks at
    its iteration."""
    data = digits_data(digits, tmp_path, savelast=2)
    last = tmp_path / "backup" / "mixnet_tiny_digits_last.weights"
    train = ["--batch", "4", "-dont_show", "-gpus", "0,1", "--threads", "1", "--rank_timeout", "6"]
    stopped = darknet(["classifier", "train", str(data), str(DIGITS_CFG), *train, "--max_batches", "10000"],
                      env=fault_env(tmp_path, fault, last))
    assert stopped.returncode == 1, stopped.stderr
    line = one_error_line(stopped.stderr)
    match = re.match(r"error: rank 1 \(pid (\d+) on [^)]+\) did not answer within 6 s: died or hung while rank 0 "
                     r"waited for the sums of the gradients of iteration \d+", line)
    assert match, line
    assert exited(int(match[1]))
    assert sorted(p.name for p in last.parent.iterdir()) == ["mixnet_tiny_digits_last.weights"]   # no temp file
    net = load_quiet(DIGITS_CFG)
    load_weights(net, last)
    saved_at = net.seen // 8
    assert saved_at >= 2 and saved_at % 2 == 0
    resumed = darknet(["classifier", "train", str(data), str(DIGITS_CFG), str(last), *train, "--max_batches",
                       str(saved_at + 2)])
    assert resumed.returncode == 0, resumed.stderr
    assert [int(i) for i, _, _ in LINE.findall(resumed.stdout)] == [saved_at + 1, saved_at + 2]


@needs_mpi
@cpu_launcher
def test_bad_input_under_the_launcher_is_one_line(digits, tmp_path):
    data = digits_data(digits, tmp_path)
    done = darknet(["classifier", "train", str(data), str(tmp_path / "missing.cfg"), "-gpus", "0,1", "-dont_show"])
    assert done.returncode == 2
    assert "missing.cfg" in one_error_line(done.stderr) and "rank" not in one_error_line(done.stderr)
