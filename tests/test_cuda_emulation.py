"""The CUDA emulation (csrc/cuda/emulation.h) on its own: the self-test kernels of csrc/cuda/selftest.cu against
NumPy, under emulation and on a GPU where there is one; broken launches and kernels raise under emulation instead
of hanging. Also the build: _cuda where nvcc exists, and what a _cuda import without a driver says."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from darknet_py import _ext


def run(ops, name, x, out, blocks, threads):
    x, out = ops.asarray(x), ops.asarray(out)
    ops.k.selftest(name, ops._ptr(x), x.size, ops._ptr(out), blocks, threads, ops._stream)
    return np.asarray(ops.to_numpy(out))


@pytest.mark.parametrize("n, threads", [(1000, 256), (4096, 1024), (37, 64), (1, 32), (300, 2)])
def test_block_sum_with_shared_memory_and_barriers(cuda_ops, n, threads):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    blocks = -(-n // threads)
    got = run(cuda_ops, "block_sum", x, np.zeros(blocks, np.float32), blocks, threads)
    padded = np.zeros(blocks * threads, np.float32)
    padded[:n] = x
    np.testing.assert_allclose(got, padded.reshape(blocks, threads).sum(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, threads", [(1000, 48), (96, 96), (33, 33), (5000, 256), (7, 7)])
def test_warp_sum_on_full_and_partial_warps(cuda_ops, n, threads):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    got = run(cuda_ops, "warp_sum", x, np.zeros(1, np.float32), -(-n // threads), threads)
    np.testing.assert_allclose(got[0], x.astype(np.float64).sum(), rtol=1e-4, atol=1e-4)


def test_warp_shuffles_and_votes(cuda_ops):
    n = 512
    x = np.random.default_rng(1).normal(size=n).astype(np.float32)
    x[64:96] = np.abs(x[64:96]) + 1    # one warp all positive
    x[96:128] = -np.abs(x[96:128]) - 1   # one warp all negative
    got = run(cuda_ops, "warp_ops", x, np.zeros(6 * n, np.float32), 4, 128).reshape(n, 6)
    warps = x.reshape(-1, 32)
    np.testing.assert_allclose(got[:, 0], np.repeat(warps.sum(1), 32), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[:, 1], np.repeat(warps[:, 3], 32))
    np.testing.assert_allclose(got[:, 2], np.cumsum(warps, 1).ravel(), rtol=1e-5, atol=1e-5)
    positive = warps > 0
    np.testing.assert_array_equal(got[:, 3], np.repeat(positive.sum(1), 32))
    np.testing.assert_array_equal(got[:, 4], np.repeat(positive.any(1), 32))
    np.testing.assert_array_equal(got[:, 5], np.repeat(positive.all(1), 32))


def test_syncthreads_count(cuda_ops):
    x = np.random.default_rng(2).normal(size=700).astype(np.float32)
    got = run(cuda_ops, "count_positive", x, np.zeros(3, np.float32), 3, 256)
    padded = np.zeros(768, np.float32)
    padded[:700] = x
    np.testing.assert_array_equal(got, (padded.reshape(3, 256) > 0).sum(1))


@pytest.mark.parametrize("n, threads", [(100, 32), (1000, 200), (64, 64)])
def test_dynamic_shared_memory(cuda_ops, n, threads):
    x = np.arange(n, dtype=np.float32)
    got = run(cuda_ops, "reverse_blocks", x, np.zeros(n, np.float32), -(-n // threads), threads)
    want = np.concatenate([blk[::-1] for blk in np.split(np.concatenate([x, np.zeros(-n % threads, np.float32)]),
                                                         -(-n // threads))])[:n]
    np.testing.assert_array_equal(got, want)


def test_atomics_across_blocks(cuda_ops):
    x = np.random.default_rng(3).uniform(-2, 18, size=20000).astype(np.float32)
    got = run(cuda_ops, "histogram", x, np.zeros(16, np.float32), 13, 64).view(np.int32)
    np.testing.assert_array_equal(got, np.histogram(x, bins=np.arange(17))[0])


# -- what the emulation refuses (these kernels would hang or fail on a GPU: emulation only) ---------------------------
@pytest.fixture
def emulated():
    from darknet_py.cuda_backend import CudaOps
    return CudaOps("cuda-emulated")


@pytest.mark.parametrize("name, message", [
    ("divergent_barrier", "32 threads wait at __syncthreads but 32 have returned"),
    ("split_barrier", "barrier deadlock"),
])
def test_broken_barriers_raise(emulated, name, message):
    with pytest.raises(RuntimeError, match=message):
        run(emulated, name, np.zeros(64, np.float32), np.zeros(64, np.float32), 1, 64)


@pytest.mark.parametrize("blocks, threads, message", [
    (1, 1025, "a block holds 1 to 1024 threads"), (1, 2048, "invalid configuration"), (0, 32, "grid"),
])
def test_invalid_launch_configurations_raise(emulated, blocks, threads, message):
    with pytest.raises(RuntimeError, match=message):
        run(emulated, "block_sum", np.zeros(8, np.float32), np.zeros(8, np.float32), blocks, threads)


def test_too_much_dynamic_shared_memory_raises(emulated):
    with pytest.raises(RuntimeError, match="65536 bytes of dynamic shared memory"):
        run(emulated, "oversized_shared", np.zeros(8, np.float32), np.zeros(8, np.float32), 1, 32)


def test_reverse_order_shows_a_race(emulated):
    """A kernel that reads a neighbour's shared value without a barrier gives one result with the threads run first
    to last and another last to first; a kernel with the barrier gives the same either way."""
    x = np.arange(1, 65, dtype=np.float32)
    results = {}
    try:
        for order in ("forward", "reverse"):
            emulated.k.set_thread_order(order)
            results[order] = [run(emulated, name, x, np.zeros(64, np.float32), 2, 32)
                              for name in ("racy_neighbour", "reverse_blocks")]
    finally:
        emulated.k.set_thread_order("forward")
    racy, synchronised = zip(results["forward"], results["reverse"])
    assert not np.array_equal(*racy, equal_nan=True)
    np.testing.assert_array_equal(*synchronised)


@pytest.mark.skipif(sys.platform != "linux", reason="runs the kernel tests again in a child process")
def test_kernels_give_the_same_results_with_threads_and_blocks_in_reverse_order():
    """Every CUDA kernel test again with each block's threads (and each grid's blocks) run last to first: a kernel
    that reads shared memory another thread writes without a barrier between fails its reference there. What the
    emulation cannot show (races between interleaved threads) is left to compute-sanitizer's racecheck on a GPU."""
    from conftest import REPO
    files = [str(REPO / "tests" / f"test_cuda_{area}.py")
             for area in ("activations", "conv", "batchnorm", "pooling", "heads")]
    env = dict(os.environ, DARKNET_PY_EMU_ORDER="reverse")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not gpu",
                           *files], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_errors_leave_the_emulation_usable(emulated):
    with pytest.raises(RuntimeError):
        run(emulated, "split_barrier", np.zeros(64, np.float32), np.zeros(64, np.float32), 2, 64)
    x = np.ones(256, np.float32)
    assert run(emulated, "block_sum", x, np.zeros(1, np.float32), 1, 256)[0] == 256


# -- the build ----------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_extension_is_built_where_nvcc_exists():
    """CMake compiles csrc/cuda for sm_80 and sm_90 with warnings as errors; a failure leaves only the CPU
    package, which this test turns into a failure on machines with nvcc (CI)."""
    assert _ext.cuda_compiled, "nvcc is installed but darknet_py._cuda was not built: see the build log"


@pytest.mark.skipif(not _ext.cuda_compiled, reason="darknet_py._cuda not built")
def test_cuda_device_without_a_driver_is_one_line():
    if _ext.cuda_ext.driver_version() > 0:
        pytest.skip("this machine has a CUDA driver")
    code = "import darknet_py; darknet_py.load('cfg/shapes-yolo-tiny.cfg', quiet=True, device='cuda')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "no CUDA driver" in last and "cuda-emulated" in last
