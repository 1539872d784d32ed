"""Memory precheck: before a forward allocates, the network compares the memory its layer table says the run
needs with what the device has available, and refuses with a DarknetMemoryError naming both, instead of being
killed by the kernel's OOM killer half way (or, on a GPU, failing deep inside a kernel launch).

The device's free memory comes from the ops interface (`ops.available_memory()`: host RAM for NumpyOps, free
device memory for a GPU backend), so the same check serves every backend. Overrides, for shared machines and
tests: DARKNET_PY_MEMORY_LIMIT=<size> (e.g. 2G, 512M) uses that figure as the memory available;
DARKNET_PY_MEMORY_CHECK=0 (or `darknet-py --no-memory-check`, or `net.memory_check = False`) skips the check."""
import contextlib
import os
import re

from .errors import DarknetMemoryError

LIMIT_ENV = "DARKNET_PY_MEMORY_LIMIT"
CHECK_ENV = "DARKNET_PY_MEMORY_CHECK"
MIB = 1024 * 1024
_UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}


def parse_size(text, source=LIMIT_ENV):
    """Bytes of a size such as '2G', '512M', '1.5g', '1000000' (binary units; a trailing B or iB is optional)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not match:
        raise DarknetMemoryError(f"{source}: expected a size such as 2G, 512M or a number of bytes; got '{text}'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:   # systems without /proc/meminfo: free pages (ignores reclaimable caches, so it errs low)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_headroom():
    """Bytes left under this process's cgroup memory limit (containers, CI runners), or None without a limit."""
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),     # v2
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",                     # v1
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < 1 << 60:   # v1 reports "no limit" as ~2^63
            return max(0, limit - usage)
    return None


def host_available_bytes():
    """Host RAM a new allocation can use without swapping: /proc/meminfo MemAvailable, capped by the cgroup's
    remaining limit; None when neither can be read."""
    figures = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(figures) if figures else None


def check_enabled():
    return os.environ.get(CHECK_ENV, "1").strip().lower() not in ("0", "no", "off", "false")


@contextlib.contextmanager
def check_disabled():
    """The check skipped inside the block (darknet-py --no-memory-check), CHECK_ENV restored after it: an
    in-process caller of cli.main keeps its own setting."""
    previous = os.environ.get(CHECK_ENV)
    os.environ[CHECK_ENV] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CHECK_ENV, None)
        else:
            os.environ[CHECK_ENV] = previous


def available_bytes(ops):
    """(bytes available to `ops`' device or None if unknown, where the figure comes from)."""
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        return parse_size(limit), f"{LIMIT_ENV}={limit}"
    return ops.available_memory(), f"free on {ops.name}"


def check_memory(ops, needed, what):
    """Raise DarknetMemoryError if `needed` bytes (from the layer table) exceed what `ops`' device has available.
    `what` says what the memory is for, e.g. "cfg/yolov4.cfg: forward at batch 8 (inference)"."""
    if not check_enabled():
        return
    available, source = available_bytes(ops)
    if available is None or needed <= available:
        return
    raise DarknetMemoryError(f"{what} needs {needed / MIB:,.0f} MiB; {available / MIB:,.0f} MiB available ({source}): "
                             f"use a smaller width/height or batch, or set {CHECK_ENV}=0 to try anyway")
