"""Writing files so that none is ever half-written, and holding a run folder.

atomic_write (a temporary file + os.replace) under every saver (JSON, CSV, torch, npy,
figures); WriteError names the file meant when a disk is full; run_lock keeps a run folder to
one process, and out_problem refuses a folder this repository did not write.
"""
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import tempfile

import torch

from sparsecs import paths


def _npy_bytes(array):
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def class_array(values, num_classes):
    """Class indices as the smallest array that holds them: uint8 up to 256 classes, else int16."""
    import numpy as np

    return np.asarray(values, dtype=np.uint8 if num_classes <= 256 else np.int16)


def save_predictions(out, predicted, num_classes):
    """predictions.npy of run folder `out` (atomic, like every run file)."""
    atomic_write(paths.path(out, paths.PREDICTIONS), _npy_bytes(class_array(predicted, num_classes)))


def save_labels(results, dataset, labels, num_classes):
    """RESULTS/labels/<dataset>.npy, written once (the test labels never change; a file that
    differs is replaced: the data set on disk is the truth)."""
    import numpy as np

    target, arr = paths.labels_path(results, dataset), class_array(labels, num_classes)
    if os.path.exists(target):
        with contextlib.suppress(OSError, ValueError):
            if np.array_equal(np.load(target, allow_pickle=False), arr):
                return
    atomic_write(target, _npy_bytes(arr))


def read_classes(file):
    """An array of class indices saved by save_predictions / save_labels (int64), or None
    when there is none or it is unreadable."""
    import numpy as np

    try:
        a = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return a.astype(np.int64) if a.ndim == 1 and a.dtype.kind in "iu" else None


# ----------------------------------------------------------------------------- writing

class WriteError(OSError):
    """An OSError (a full disk, a read-only folder) while writing `filename`: its text names
    the file meant, not the temporary file, nor nothing (ENOSPC from write() has no name)."""

    def __str__(self):
        return f"could not write {self.filename}: {self.strerror}"


@contextlib.contextmanager
def writing(target):
    """Any OSError inside becomes a WriteError naming `target` (its errno kept)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(e.errno, e.strerror or str(e), os.fspath(target)) from e


def stream_name(stream, default):
    """The file an output stream writes to (a log it was redirected to), else `default`."""
    name = getattr(stream, "name", None)
    if isinstance(name, str) and not name.startswith("<"):
        return name
    try:
        return os.readlink(f"/proc/self/fd/{stream.fileno()}")
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return default


class NamedOutput:
    """A text stream (stdout, stderr) whose write errors name its file: a full disk under the
    log a tool's output is redirected to gives 'could not write LOG: No space left on device'
    (WriteError), not the bare reason write(2) reports."""

    def __init__(self, stream, default):
        self._stream, self._default = stream, default

    def _named(self):
        return writing(stream_name(self._stream, self._default))

    def write(self, text):
        with self._named():
            return self._stream.write(text)

    def flush(self):
        with self._named():
            return self._stream.flush()

    def __getattr__(self, name):      # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def os_error_text(e):
    """One line for an OSError: 'could not write F: reason', 'F: reason' or the reason."""
    if isinstance(e, WriteError):
        return str(e)
    return f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e)


def atomic_write(target, data):
    """Write bytes or text to `target` via a temporary file in the same folder + os.replace,
    so a crash never leaves half a CSV or checkpoint. A failure is a WriteError naming `target`."""
    target = os.fspath(target)
    d = os.path.dirname(target) or "."
    with writing(target):
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-" + os.path.basename(target))
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)   # mkstemp makes 0600; collaborators must read results
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


class LockedError(Exception):
    """Another process holds the run folder."""


def _same_inode(f, p):
    """Whether open file `f` is still the file at path `p` (not unlinked or replaced)."""
    try:
        a, b = os.fstat(f.fileno()), os.stat(p)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def run_lock(out):
    """Hold RUN/run.lock for as long as this process trains the folder (released by the
    kernel however the process ends); a second process gets LockedError at once. Temporary
    files a killed writer left behind are removed once the lock is ours. A run that finished
    (its summary.json there) leaves no run.lock behind: it is removed while still held, and
    a taker checks that the file it locked is still the one at the path (else it takes the
    new one), so removing it never lets two processes hold the folder; a lock held by another
    live process is never removed (flock refuses it to us)."""
    while True:
        with writing(paths.path(out, paths.LOCK)):
            os.makedirs(out, exist_ok=True)
            f = open(paths.path(out, paths.LOCK), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise LockedError(f"{out} is being trained by another process (pid {holder}); wait for "
                              f"it to finish or stop it") from None
        if _same_inode(f, paths.path(out, paths.LOCK)):
            break
        f.close()     # its holder removed it as we opened it: lock the file there now
    try:
        with writing(paths.path(out, paths.LOCK)):
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
        for name in os.listdir(out):
            if paths.STALE_TEMP.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(paths.path(out, name))
        yield
    finally:
        if os.path.exists(paths.path(out, paths.SUMMARY)) and _same_inode(f, paths.path(out, paths.LOCK)):
            with contextlib.suppress(OSError):
                os.unlink(paths.path(out, paths.LOCK))
        f.close()


def _is_config(p):
    """Whether `p` reads as a config this repository wrote: a YAML mapping of known keys."""
    import yaml

    from sparsecs import config as C
    try:
        with open(p, encoding="utf-8") as f:
            cfg = yaml.safe_load(f.read(1 << 20))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and bool(cfg) and all(k in C.DEFAULTS for k in cfg)


def _is_checkpoint(p):
    """Whether `p` is a checkpoint train.py wrote (a mapping with its config hash)."""
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(ckpt, dict) and "config_hash" in ckpt


def out_problem(out):
    """Why train.py must not use `out` as its run folder, or None. A run folder is absent,
    empty, or one this repository wrote: it holds MARKER, or (folders from before the
    marker) a config.yaml of known keys with metrics.csv or a checkpoint, or only a lock
    and stale temporary files of a run killed before its first write. Anything else (a
    user's folder, /) is never written into. A file is left to the write to report.
    Also a folder whose checkpoint.pt is one train.py wrote (config.yaml deleted by hand)."""
    real = os.path.realpath(out)
    if real == os.path.dirname(real):
        return f"--out {out} is the file system root; give a run folder"
    if not os.path.isdir(real):
        return None
    try:
        names = os.listdir(real)
    except OSError as e:
        return f"--out {out}: cannot list it ({e.strerror})"
    if not names or paths.MARKER in names:
        return None
    if paths.CONFIG in names and any(n in names for n in (paths.METRICS, paths.CHECKPOINT, paths.CHECKPOINT_PREV)) \
            and _is_config(paths.path(real, paths.CONFIG)):
        return None
    if all(n == paths.LOCK or paths.STALE_TEMP.match(n) for n in names):
        return None
    if any(n in names and _is_checkpoint(paths.path(real, n)) for n in (paths.CHECKPOINT, paths.CHECKPOINT_PREV)):
        return None   # a run folder whose config.yaml was deleted: train.py says what to do
    return (f"--out {out} is a folder with other files in it ({len(names)} entries, e.g. "
            f"{sorted(names)[0]!r}), not a run folder of this repository: give an empty or new "
            f"folder; nothing was written")


def mark_run_folder(out):
    """Write MARKER into run folder `out` (once): train.py made it, --out may use it again."""
    if not os.path.exists(paths.path(out, paths.MARKER)):
        atomic_write(paths.path(out, paths.MARKER), "a run folder written by train.py (sparse training)\n")


def save_torch(obj, target):
    """torch.save through atomic_write; returns the number of bytes written."""
    return save_torch_sha(obj, target)[0]


def save_torch_sha(obj, target):
    """torch.save through atomic_write; returns (bytes written, their sha256 in hex)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write(target, data)
    return len(data), hashlib.sha256(data).hexdigest()


_SHA_CACHE = {}


def file_sha256(p):
    """sha256 of file `p` in hex (cached while its size, mtime and inode stay the same)."""
    st = os.stat(p)
    key = (os.path.realpath(p), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if len(_SHA_CACHE) > 4096:
            _SHA_CACHE.clear()
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def finite(obj):
    """`obj` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts, lists
    and tuples: strict JSON has no NaN or Infinity, and parsers other than Python's reject
    them. Readers take null for "not a number" (read_summary turns it back into NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj, **kw):
    """Strict JSON (RFC 8259): non-finite numbers written as null; anything else that is not
    JSON raises (allow_nan=False), never a NaN token."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def save_json(obj, target):
    atomic_write(target, json_text(obj, indent=2, sort_keys=True) + "\n")


def csv_text(rows, columns=None):
    """Rows (dicts) as CSV text; columns default to the union in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def save_csv(rows, target, columns=None):
    atomic_write(target, csv_text(rows, columns))


def save_figure(fig, target, **kw):
    """fig.savefig through atomic_write (the format from the file's extension): a full disk
    leaves the previous figure whole and names the file."""
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(target)[1][1:], **kw)
    atomic_write(target, buf.getvalue())
