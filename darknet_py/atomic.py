"""Atomic file writes for everything we save (weights, ONNX files, detector outputs): a temporary file in the
same folder, fsync, rename over the target, fsync of the folder. A crash or kill at any moment leaves either the
old file or the complete new one, never a half-written file; the new file gets the mode a plain open() would
give it (0666 less the umask), not mkstemp's 0600."""
import os
import tempfile


def write_atomic(path, write, what=None, error=None):
    """Write `write` (bytes, or a function called with the binary temporary file) and move it to `path`
    durably; the temporary file never outlives a failure. An OSError becomes the one-line
    error(f"{path}: cannot write {what}: {reason}") when `error` (a DarknetError class) is given, else propagates."""
    try:
        _write_atomic(os.fspath(path), write)
    except OSError as e:
        if error is None:
            raise
        raise error(f"{path}: cannot write{' ' + what if what else ''}: {e.strerror or e}") from None


def _write_atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):   # POSIX; Windows has no group/other permission bits to widen
                os.fchmod(f.fileno(), 0o666 & ~process_umask())
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(folder)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def process_umask():
    """The process umask. Linux reports it in /proc/self/status; elsewhere os.umask must set it to read it, so it
    is set straight back (a file another thread creates in between may get mode 0666 & ~0o022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
