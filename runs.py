"""The run folder: its file names, what summary.json holds, when a run counts as finished,
atomic writes, the results index (runs.csv) and loading a run's model.

train.py writes run folders, eval.py, sweep.py, report.py and export.py read them: all of
them go through this module, so the contract (README, "Run folders") lives in one place.

    RESULTS/runs/<run name>/   config.yaml metrics.csv layers.csv summary.json
                               predictions.npy checkpoint.pt model.pt
    RESULTS/runs.csv           one row per finished run (an index; the folders are the truth)
    RESULTS/labels/<data set>.npy   the test set's labels, in its fixed order (the report
                               scores predictions.npy against them: paired tests)

Sweeps write to `results/`; an ad-hoc `python train.py` writes to `scratch/` (git-ignored)
unless it is given --results, so experiments never mix into the committed results.
"""
import contextlib
import ctypes
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import tempfile

import torch

RESULTS = "results"     # where sweeps write
SCRATCH = "scratch"     # where ad-hoc train.py runs go by default (git-ignored)

CONFIG, METRICS, LAYERS, SUMMARY = "config.yaml", "metrics.csv", "layers.csv", "summary.json"
CHECKPOINT, CHECKPOINT_PREV, MODEL = "checkpoint.pt", "checkpoint.prev.pt", "model.pt"
# the predicted class of every test image at the final evaluation, in the test set's fixed
# order (uint8; int16 past 256 classes): 10,128 bytes for Fashion-MNIST, committed with the run
PREDICTIONS = "predictions.npy"
LABELS = "labels"       # RESULTS/labels/<data set>.npy: the test labels the predictions are scored on
LOCK = "run.lock"       # held by the one process training the folder
INDEX = "runs.csv"
MARKER = ".sparse-run"  # written by train.py into every run folder it creates
# Temporary files atomic_write leaves when a writer is killed: ".tmp-" + the target's name +
# mkstemp's random letters. Only names of this pattern are removed as stale (a user's own
# .tmp-notes.txt in a run folder is not ours).
STALE_TEMP = re.compile(r"\.tmp-(?:config\.yaml|metrics\.csv|layers\.csv|summary\.json|checkpoint\.pt"
                        r"|predictions\.npy|model(?:\.[a-z]+)?\.pt(?:\.sha256)?|export\.json|\.sparse-run)[a-z0-9_]{1,16}\Z")

# summary.json, field by field (a runs.csv row is the same dict). Methods add their own
# fields after these (method.summary(): lam, target, threshold, ...).
SUMMARY_FIELDS = {
    "run": "the run's name (readable part + config hash); also its folder name",
    "dataset": "data set", "model": "architecture", "width": "channel multiplier",
    "method": "training method (optim/)", "mode": "dense | elementwise | kernel | channel",
    "seed": "random seed", "epochs": "epochs this run trained",
    "total_epochs": "epochs including those of the run it started from (init_from)",
    "lam": "penalty strength (0 for methods without one)",
    "test_acc": "final test accuracy, percent, after BatchNorm recalibration (bn_recal)",
    "test_loss": "final test loss, the same way",
    "test_acc_running_bn": "last epoch's test accuracy with training's running BatchNorm statistics",
    "test_loss_running_bn": "the same for the test loss",
    "bn_recal_images": "training images the BatchNorm statistics were recomputed on (0: none)",
    "train_acc": "last epoch's training accuracy, percent (an average over weights that were still changing)",
    "train_loss": "last epoch's loss",
    "sparsity": "zeros among conv + linear weights (fraction)",
    "sparsity_all": "zeros among all parameters (fraction)",
    "nnz": "nonzero conv + linear weights", "n_weights": "conv + linear weights",
    "n_params": "all parameters", "flops_dense": "multiply-adds of one image, dense",
    "flops_nonzero": "multiply-adds with nonzero weights (elementwise: each layer's MACs x density)",
    "macs_structural": "multiply-adds left after removing all-zero filters and the inputs they "
                       "feed (what slim export removes; NaN, null in the file: the model could not be slimmed)",
    "train_seconds": "training time (evaluation excluded)",
    "config_hash": "hash of the whole resolved config (config.config_hash)",
    "init_from": "the model.pt this run started from ('' for random init)",
    # what the run is, written by the sweep (empty for ad-hoc runs); see config.IDENTITY
    "profile": "profile that asked for the run", "entry": "profile entry",
    "role": "dense | reference | baseline | ablation",
    "row": "the comparison it belongs to (a paper row, or dataset-model-width)",
    "swept_key": "the key its entry sweeps ('' if none)", "swept_value": "its value here",
    "calibration_target": "target of a λ search in its entry's target_metric: a sparsity, or a "
                          "fraction of the dense structural MACs (NaN if none; null in the file)",
    "calibration_round": "round of that search (0 if none)",
    "calibration_status": "'not reached': run at the closest round of a search that missed",
    # where and with what it ran
    "torch": "torch version", "torchvision": "torchvision version", "numpy": "numpy version",
    "device_name": "CPU or GPU it trained on", "threads": "torch CPU threads",
    # written since these fields were added: older summaries lack them (OPTIONAL)
    "world_size": "processes the run trained on (torchrun)",
    "model_bytes": "size of model.pt as written", "model_sha256": "sha256 of model.pt as written",
    "init_sha256": "sha256 of the init_from model.pt when this run started from it ('' for random init)",
    "train_acc_final": "the final weights' accuracy, percent, on the first FINAL_TRAIN_IMAGES training "
                       "images of a fixed order (no augmentation, after bn_recal): what collapsed() reads",
    "method_revision": "revision of the method's behaviour (optim Method.revision_of; 1 unless corrected "
                       "since, e.g. RigL 2: the authors' update; soft_threshold's sine schedule 2: "
                       "STDS's curve); in the config hash where it is not 1",
}
OPTIONAL = ("world_size", "model_bytes", "model_sha256", "init_sha256", "train_acc_final",
            "method_revision")   # a summary may lack these

# What the fields of summary.json must hold (checked on every read: a wrongly typed field
# makes the run damaged, never a wrong number): "int" a whole number, "num" a finite number
# (NaN only where NAN_OK), "frac" a number in [0, 1], "pct" in [0, 100], "str" a string.
FIELD_TYPES = {
    **{k: "str" for k in ("run", "dataset", "model", "method", "mode", "config_hash", "init_from",
                          "profile", "entry", "role", "row", "swept_key", "swept_value", "torch",
                          "torchvision", "numpy", "device_name")},
    **{k: "int" for k in ("seed", "epochs", "total_epochs", "nnz", "n_weights", "n_params",
                          "flops_dense", "calibration_round", "threads", "world_size", "model_bytes",
                          "method_revision")},
    **{k: "num" for k in ("width", "lam", "test_loss", "train_loss", "flops_nonzero", "train_seconds",
                          "calibration_target")},
    "sparsity": "frac", "sparsity_all": "frac", "test_acc": "pct", "train_acc": "pct",
    "train_acc_final": "pct", "model_sha256": "sha", "init_sha256": "sha",
}
NAN_OK = ("calibration_target",)


class RunFolderError(Exception):
    """One line: which run file is missing or unreadable."""


RETRAIN = "; delete the run folder to retrain it"   # the advice a damaged run file ends with


def path(out, name):
    return os.path.join(out, name)


def run_dir(results, name):
    return os.path.join(results, "runs", name)


def labels_path(results, dataset):
    return os.path.join(results, LABELS, f"{dataset}.npy")


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
    atomic_write(path(out, PREDICTIONS), _npy_bytes(class_array(predicted, num_classes)))


def save_labels(results, dataset, labels, num_classes):
    """RESULTS/labels/<dataset>.npy, written once (the test labels never change; a file that
    differs is replaced: the data set on disk is the truth)."""
    import numpy as np

    target, arr = labels_path(results, dataset), class_array(labels, num_classes)
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
        with writing(path(out, LOCK)):
            os.makedirs(out, exist_ok=True)
            f = open(path(out, LOCK), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise LockedError(f"{out} is being trained by another process (pid {holder}); wait for "
                              f"it to finish or stop it") from None
        if _same_inode(f, path(out, LOCK)):
            break
        f.close()     # its holder removed it as we opened it: lock the file there now
    try:
        with writing(path(out, LOCK)):
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
        for name in os.listdir(out):
            if STALE_TEMP.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(path(out, name))
        yield
    finally:
        if os.path.exists(path(out, SUMMARY)) and _same_inode(f, path(out, LOCK)):
            with contextlib.suppress(OSError):
                os.unlink(path(out, LOCK))
        f.close()


def _is_config(p):
    """Whether `p` reads as a config this repository wrote: a YAML mapping of known keys."""
    import yaml

    import config as C
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
    if not names or MARKER in names:
        return None
    if CONFIG in names and any(n in names for n in (METRICS, CHECKPOINT, CHECKPOINT_PREV)) \
            and _is_config(path(real, CONFIG)):
        return None
    if all(n == LOCK or STALE_TEMP.match(n) for n in names):
        return None
    if any(n in names and _is_checkpoint(path(real, n)) for n in (CHECKPOINT, CHECKPOINT_PREV)):
        return None   # a run folder whose config.yaml was deleted: train.py says what to do
    return (f"--out {out} is a folder with other files in it ({len(names)} entries, e.g. "
            f"{sorted(names)[0]!r}), not a run folder of this repository: give an empty or new "
            f"folder; nothing was written")


def mark_run_folder(out):
    """Write MARKER into run folder `out` (once): train.py made it, --out may use it again."""
    if not os.path.exists(path(out, MARKER)):
        atomic_write(path(out, MARKER), "a run folder written by train.py (sparse training)\n")


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


def model_problem(out, summary):
    """Why RUN/model.pt is not the file the run wrote (summary.json's model_bytes and
    model_sha256), or None. A summary from before the checksum was recorded is checked by
    size alone; one with neither is trusted."""
    m = path(out, MODEL)
    size, want = os.path.getsize(m), summary.get("model_bytes")
    if want is not None and size != want:
        return f"{m}: damaged ({size} bytes, the run wrote {want})"
    sha = summary.get("model_sha256")
    if sha and file_sha256(m) != sha:
        return (f"{m}: altered or damaged (its sha256 is not the one {SUMMARY} recorded, "
                f"{sha[:12]}...)")
    return None


def duration(seconds):
    """'45s', '12m 05s', '3h 07m': for progress lines and ETAs."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


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


def _index_rows(target, key="run"):
    """The rows of the CSV at `target` ([] if there is none); RunFolderError when it is not a
    table (not text, a field over csv's limit, ragged rows, no `key` column)."""
    if not os.path.exists(target):
        return []
    try:
        with open(target, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        raise RunFolderError(f"{target}: damaged ({type(e).__name__})") from None
    if key not in header or any(None in r or None in r.values() for r in rows):
        raise RunFolderError(f"{target}: damaged (not a table of runs)")
    return rows


def _folder_rows(results):
    """(summaries of the complete runs under RESULTS/runs/ in folder order, [folders left
    out], [one line per damaged folder])."""
    top = os.path.join(results, "runs")
    rows, skipped, notes = [], [], []
    for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        folder = os.path.join(top, name)
        try:
            s = complete_summary(folder)
        except RunFolderError as e:
            s = None
            notes.append(str(e))
        if s is None:
            skipped.append(folder)
        else:
            rows.append(s)
    return rows, skipped, notes


def _index_lock(target):
    """The side file whose lock serializes writers of the index `target` (opened, not locked)."""
    with writing(target + ".lock"):
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        return open(target + ".lock", "w")


def upsert_row(target, row, key="run", warn=None):
    """Add `row` to the CSV at `target`, replacing a row with the same key; safe when several
    processes finish at once (an exclusive lock on a side file serializes them). A damaged
    runs.csv is rebuilt from the run folders next to it (said through `warn`, one line), so
    it never costs the run whose row this is."""
    with _index_lock(target) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = _index_rows(target, key)
        except RunFolderError as e:
            rows = _folder_rows(os.path.dirname(os.path.abspath(target)))[0]
            (warn or _stderr)(f"{e}: rebuilt from the run folders ({len(rows)} runs)")
        rows = [r for r in rows if r.get(key) != str(row[key])]
        rows.append(row)
        save_csv(rows, target, list(dict.fromkeys(k for r in rows for k in r)))


def reindex(results, warn=None):
    """Rebuild RESULTS/runs.csv from the run folders (the truth): one row per complete run,
    in folder order. Returns (rows written, [folders skipped as incomplete or unreadable]);
    each damaged folder is said through `warn` (one line each)."""
    rows, skipped, notes = _folder_rows(results)
    for n in notes:
        (warn or (lambda _: None))(n)
    target = os.path.join(results, INDEX)
    with _index_lock(target) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        save_csv(rows, target, list(dict.fromkeys(k for r in rows for k in r)) or ["run"])
    return len(rows), skipped


def index_problem(results):
    """Why RESULTS/runs.csv is not a true index of the run folders, or None: missing, damaged
    (unreadable, no `run` column, ragged rows) or behind (a complete run it lacks, e.g. one
    whose row failed to write, or a row for a folder that is gone)."""
    target = os.path.join(results, INDEX)
    top = os.path.join(results, "runs")
    folders = sorted(os.listdir(top)) if os.path.isdir(top) else []
    complete = set()
    for name in folders:
        with contextlib.suppress(RunFolderError):
            if complete_summary(os.path.join(top, name)) is not None:
                complete.add(name)
    if not os.path.exists(target):
        return "missing" if complete else None
    try:
        rows = _index_rows(target)
    except OSError as e:
        return f"damaged ({type(e).__name__})"
    except RunFolderError as e:
        return str(e).rsplit(": ", 1)[-1]
    listed = {r["run"] for r in rows}
    lacking, gone = complete - listed, listed - set(folders)
    if lacking or gone:
        return "behind (" + ", ".join(p for p in (
            f"{len(lacking)} complete run(s) not in it" if lacking else "",
            f"{len(gone)} row(s) of folders that are gone" if gone else "") if p) + ")"
    return None


def ensure_index(results):
    """Rebuild runs.csv when index_problem finds one; returns a line saying so, or None."""
    problem = index_problem(results)
    if problem is None:
        return None
    n, _ = reindex(results)
    return f"{os.path.join(results, INDEX)} was {problem}: rebuilt from the run folders ({n} runs)"


def environment():
    """Versions and hardware a run's numbers depend on, for its summary."""
    import numpy
    try:
        import torchvision
        tv = torchvision.__version__
    except ImportError:
        tv = ""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = _cpu_name() or platform.processor() or platform.machine()
    return {"torch": torch.__version__, "torchvision": tv, "numpy": numpy.__version__,
            "device_name": device, "threads": torch.get_num_threads()}


def _cpu_fields(cpuinfo="/proc/cpuinfo"):
    """/proc/cpuinfo's first processor block as {field: value} ({} where there is none)."""
    first = {}
    with contextlib.suppress(OSError):
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break                       # the first processor's block is enough
                key, _, value = line.partition(":")
                first[key.strip()] = value.strip()
    return first


def _cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name, with its family, model and widest vector unit where the name
    alone does not tell machines apart (a VM may show "AMD EPYC" for CPUs whose epochs took
    53 s and 126 s): "AMD EPYC (family 26 model 2, AVX-512)"."""
    first = _cpu_fields(cpuinfo)
    name = first.get("model name", "")
    if not name:
        return ""
    flags = set(first.get("flags", "").split())
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else
           "AVX2" if "avx2" in flags else "")
    what = [f"family {first['cpu family']} model {first['model']}"] if "cpu family" in first and "model" in first else []
    what += [isa] if isa else []
    return f"{name} ({', '.join(what)})" if what else name


# ----------------------------------------------------------------------------- reading

def finished_summary(out, warn=None):
    """The summary of the run finished in folder `out`, or None. A run is finished when
    summary.json reads back (well-typed fields), metrics.csv, where there is one, has a row
    for every epoch, no more and no fewer (metrics_problem, also the report's rule), and
    model.pt is the file the run wrote (its size and sha256 as the
    summary recorded them, model_problem): results committed to git (no weights) do not
    count, so running their config again trains it here instead of trusting another
    machine's numbers; a damaged summary or metrics.csv, a truncated or altered model.pt is
    not finished either (said through `warn`), and a rerun writes them again."""
    s, m = path(out, SUMMARY), path(out, MODEL)
    if not (os.path.exists(s) and os.path.exists(m)):
        return None
    try:
        summary = read_summary(out)
        problem = (metrics_problem(out, summary)
                   if os.path.exists(path(out, METRICS)) and "epochs" in summary else None)
    except RunFolderError as e:   # (not the advice to delete the folder: a rerun rewrites it)
        (warn or _stderr)(f"{str(e).removesuffix(RETRAIN)}: rerunning it")
        return None
    if problem:
        (warn or _stderr)(f"{problem}: rerunning it")
        return None
    problem = model_problem(out, summary)
    if problem:
        (warn or _stderr)(f"{problem}: rerunning it")
        return None
    return summary


def _stderr(msg):
    import sys

    print(msg, file=sys.stderr)


def _type_problem(key, value):
    """What is wrong with summary field `key` holding `value`, or None."""
    kind = FIELD_TYPES.get(key)
    if kind is None:
        return None
    if kind == "str":
        return None if isinstance(value, str) else "not a string"
    if kind == "sha":
        ok = isinstance(value, str) and (value == "" or re.fullmatch(r"[0-9a-f]{64}", value))
        return None if ok else "not a sha256 in hex"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if math.isnan(value):
        return None if key in NAN_OK else "NaN"
    if not math.isfinite(value):
        return "not finite"
    if kind == "int" and not float(value).is_integer():
        return "not a whole number"
    if kind == "int" and key not in ("seed",) and value < 0:
        return "negative"
    if kind == "frac" and not 0 <= value <= 1:
        return "not a fraction in [0, 1]"
    if kind == "pct" and not 0 <= value <= 100:
        return "not a percentage in [0, 100]"
    return None


def summary_problem(summary):
    """Why a summary dict is not one train.py wrote (a wrongly typed field), or None."""
    if not isinstance(summary, dict):
        return f"not a mapping of fields ({type(summary).__name__})"
    for k, v in summary.items():
        why = _type_problem(k, v)
        if why:
            return f"field {k!r} is {v!r}: {why}"[:200]
    return None


def read_summary(out):
    """summary.json of run folder `out`; RunFolderError (one line naming the file) when it is
    unreadable or a field has the wrong type."""
    p = path(out, SUMMARY)
    try:
        with open(p) as f:
            s = json.load(f)
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{p}: unreadable ({e}){RETRAIN}") from None
    if isinstance(s, dict):   # null is how save_json writes NaN (no summary field is ever None)
        s = {k: math.nan if v is None else v for k, v in s.items()}
    problem = summary_problem(s)
    if problem:
        raise RunFolderError(f"{p}: damaged ({problem}){RETRAIN}")
    return s


def read_metrics(out):
    """metrics.csv of run folder `out` as a list of dicts (strings); OSError when it is
    missing, RunFolderError (one line) when it is damaged: not text, no header, or a row with
    another number of fields than the header (which pandas would shift into other columns)."""
    p = path(out, METRICS)
    with open(p, newline="", encoding="utf-8", errors="strict") as f:
        try:
            table = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise RunFolderError(f"{p}: damaged ({type(e).__name__}){RETRAIN}") from None
    if not table or not table[0] or "epoch" not in table[0]:
        raise RunFolderError(f"{p}: damaged (no header with an 'epoch' column){RETRAIN}")
    header = table[0]
    for i, r in enumerate(table[1:], 2):
        if len(r) != len(header):
            raise RunFolderError(f"{p}: damaged (line {i} has {len(r)} fields, the header "
                                 f"{len(header)}){RETRAIN}")
    return [dict(zip(header, r)) for r in table[1:]]


def complete_summary(out):
    """The summary of a run whose results are all there, weights or not, or None: summary.json
    readable with every SUMMARY_FIELDS key (but OPTIONAL), and metrics.csv with one row per
    epoch trained. This is what the report reads: results committed to git are complete (but
    not finished, so a sweep retrains them); a run killed before its summary, or whose metrics
    were cut short, is not. A damaged summary.json or metrics.csv: RunFolderError."""
    if not os.path.exists(path(out, SUMMARY)):
        return None
    s = read_summary(out)
    if any(k not in s for k in SUMMARY_FIELDS if k not in OPTIONAL):
        return None
    try:
        return None if metrics_problem(out, s) else s
    except OSError:
        return None


def metrics_rows(out, most=None):
    """The number of rows of metrics.csv in run folder `out`, read a row at a time (a file of
    millions of rows costs no memory), counting at most `most` (then stops); OSError when it is
    missing, RunFolderError (one line) when it is damaged, as read_metrics."""
    p = path(out, METRICS)
    n = 0
    with open(p, newline="", encoding="utf-8", errors="strict") as f:
        try:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or "epoch" not in header:
                raise RunFolderError(f"{p}: damaged (no header with an 'epoch' column){RETRAIN}")
            for i, r in enumerate(reader, 2):
                if len(r) != len(header):
                    raise RunFolderError(f"{p}: damaged (line {i} has {len(r)} fields, the header "
                                         f"{len(header)}){RETRAIN}")
                n += 1
                if most is not None and n >= most:
                    break
        except (UnicodeDecodeError, csv.Error) as e:
            raise RunFolderError(f"{p}: damaged ({type(e).__name__}){RETRAIN}") from None
    return n


def metrics_problem(out, summary):
    """Why metrics.csv of run folder `out` does not hold one row per epoch the summary says the
    run trained, or None: the one rule of a finished (train, sweep, eval, hub, export) and a
    complete (report, --reuse-complete) run. Too few rows or too many: neither."""
    epochs = int(summary["epochs"])
    rows = metrics_rows(out, most=epochs + 1)
    if rows == epochs:
        return None
    many = f"more than {epochs} rows" if rows > epochs else f"{rows} rows"
    return f"{path(out, METRICS)}: {many} for the {epochs} epochs the run trained"


# A run is collapsed when its final training accuracy is below this fraction of the way from
# chance (100 / classes) to 100%: 55% for 10 classes. Training accuracy, not test accuracy, so
# that no test image decides it, and not the BatchNorm statistics either. "Final" is the final
# weights' (train_acc_final, measured on FINAL_TRAIN_IMAGES training images after training),
# not the last epoch's average (train_acc): a threshold that still grows while the rate goes to
# zero can break a model in its last steps while the epoch's average stays near 90%.
COLLAPSE_FRACTION = 0.5
FINAL_TRAIN_IMAGES = 10_000


def collapse_measure(summary):
    """(training accuracy %, which field) that collapsed() judges a run by: train_acc_final,
    or for a run from before summary.json recorded it, the last epoch's train_acc."""
    final = summary.get("train_acc_final")
    if final is not None and final == final and final != "":   # absent, NaN (a csv gap), ""
        return float(final), "train_acc_final"
    return float(summary["train_acc"]), "train_acc"


def collapsed(summary):
    """Whether a finished run's training collapsed (see COLLAPSE_FRACTION)."""
    import data

    spec = data.DATASETS.get(summary.get("dataset"))
    chance = 100.0 / (spec.num_classes if spec else 10)
    return collapse_measure(summary)[0] < chance + COLLAPSE_FRACTION * (100.0 - chance)


def zero_fraction(out, unit):
    """Fraction of the run's conv `unit`s ("filters" or "kernels") that are entirely zero, from
    layers.csv; None when the model has no conv layer. OSError when layers.csv is missing,
    RunFolderError (one line) when it is damaged."""
    p = path(out, LAYERS)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("type") == "Conv2d"]
        total = sum(int(r[unit]) for r in rows)
        zero = sum(int(r["zero_" + unit]) for r in rows)
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as e:
        why = f"no column {e}" if isinstance(e, KeyError) else type(e).__name__
        raise RunFolderError(f"{p}: damaged ({why}){RETRAIN}") from None
    if not 0 <= zero <= total:
        raise RunFolderError(f"{p}: damaged ({zero} zero {unit} of {total}){RETRAIN}")
    return zero / total if total else None


def is_finished(results, name):
    return finished_summary(run_dir(results, name)) is not None


def model_file(cfg, num_classes, state_dict):
    """What model.pt holds: enough to rebuild the model without the config."""
    return {"model": cfg["model"], "width": cfg["width"], "num_classes": num_classes,
            "dataset": cfg["dataset"], "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def model_path(run_or_file):
    return path(run_or_file, MODEL) if os.path.isdir(run_or_file) else run_or_file


def _in_run_folder(p):
    """Whether file `p` lies in a run folder (so that deleting it to retrain is advice to give)."""
    d = os.path.dirname(os.path.abspath(p))
    return os.path.basename(p) == MODEL and any(
        os.path.exists(path(d, n)) for n in (MARKER, CONFIG, SUMMARY))


MODEL_KEYS = ("model", "width", "num_classes", "dataset", "state_dict")


def load_model_file(run_or_file, verify=True):
    """What model.pt holds (runs.model_file), read with weights_only. A model.pt next to a
    summary.json is checked against the size and sha256 the run recorded (verify); a file
    that is not a model.pt of this repository: RunFolderError, one line."""
    p = model_path(run_or_file)
    if not os.path.exists(p):
        raise RunFolderError(f"{p} not found (is the run finished?)")
    ours = _in_run_folder(p)
    what = "delete it to retrain the run" if ours else "not a model.pt written by train.py"
    if verify and os.path.exists(path(os.path.dirname(os.path.abspath(p)), SUMMARY)):
        folder = os.path.dirname(os.path.abspath(p))
        problem = model_problem(folder, read_summary(folder))
        if problem:
            raise RunFolderError(f"{problem}; retrain the run (delete {p}) or restore the file")
    try:
        saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunFolderError(f"{p}: unreadable ({type(e).__name__}); {what}") from None
    missing = [k for k in MODEL_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or not isinstance(saved["state_dict"], dict):
        raise RunFolderError(f"{p}: not a model file of this version (no {', '.join(missing) or 'state_dict'}"
                             f"); {what}")
    return saved


def load_model(run_or_file, device="cpu"):
    """A finished run's model (a run folder or its model.pt) with its trained sparse weights,
    in eval mode. The forward pass is the one training evaluated (thresholds applied)."""
    import models

    saved = load_model_file(run_or_file)
    p = model_path(run_or_file)
    try:
        model = models.from_saved(saved)
        model.load_state_dict(saved["state_dict"])
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise RunFolderError(f"{p}: does not fit model {saved['model']!r} of this version "
                             f"({' '.join(str(e).split())[:160]})") from None
    return model.to(device).eval()


# ----------------------------------------------------------------------------- devices

def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunFolderError("device: cuda was asked for but no GPU is visible; use device=auto or cpu")
    return torch.device(name)


def keep_freed_memory():
    """Keep freed memory in the process instead of returning it to the OS (glibc's malloc).
    By default glibc gives large freed blocks back (mmap threshold, heap trim), and a CPU
    training step frees and allocates the same multi-megabyte activations every step, so each
    step faults them in again: ~10,000 minor page faults a step for ResNet-20 x0.5 at batch 128
    in fp32, ~0 with this (benchmarks/bench_cpu.py --allocator). Only where memory comes from
    changes, not a number computed. Returns whether it applied (False off glibc)."""
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # <malloc.h>
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # 32 MiB is glibc's largest mmap threshold on 64 bits: blocks above it still go to mmap
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def cpu_native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU computes in bf16 itself (AVX512-BF16 or AMX-BF16). Without either
    (an AVX2-only CPU) oneDNN has no bf16 kernels and autocast's bf16 is emulated: slower
    than fp32, not faster. Reads the flags (ISA limits such as ONEDNN_MAX_CPU_ISA are not
    seen); torch's own probes where there is no /proc/cpuinfo."""
    flags = _cpu_fields(cpuinfo).get("flags")
    if flags is not None:
        return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(p() for p in probes if p is not None)


def cxx_compiler():
    """The C++ compiler torch.compile's inductor would use for CPU code (its search list:
    $CXX, else g++), or None where none of them is on PATH."""
    try:
        from torch._inductor import config as inductor
        names = [c for c in inductor.cpp.cxx if c] if isinstance(inductor.cpp.cxx, (list, tuple)) \
            else [inductor.cpp.cxx]
    except Exception:   # a torch without inductor: its default
        names = [os.environ.get("CXX", "g++")]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


def c_compiler():
    """The C compiler Triton builds its GPU launcher with ($CC, else gcc, else clang), or None."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["gcc", "clang"]
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


def has_triton():
    try:
        from torch.utils._triton import has_triton as probe
        return probe()
    except ImportError:
        return False


# An AVX2-only CPU emulated on an AMX one (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2;
# ATEN_CPU_CAPABILITY alone leaves oneDNN's bf16 convolutions native, 1.57x fp32):
# benchmarks/bench_cpu.py --models resnet20:0.5 --settings fp32+cl bf16+cl fp32 bf16
# --repeats 3 --steps 4, 1 thread, median images/s fp32+cl 214, bf16+cl 31 (0.14x), fp32 207,
# bf16 32 (0.15x): oneDNN has no AVX2 bf16 convolution and falls back to a reference one.
BF16_EMULATED_SLOWDOWN = "about 7x slower than fp32 (measured with oneDNN limited to AVX2)"


def device_problem(cfg, device):
    """Why this machine cannot run `cfg` on `device` (one line), or None. Checked when a run
    starts, not by config.resolve: a config resolves (and hashes) the same on every machine."""
    if cfg["compile"]:
        if device.type == "cpu" and cxx_compiler() is None:
            return ("compile=true: torch.compile builds C++ for the CPU and finds no C++ compiler "
                    "(g++ or $CXX) on PATH; install one (apt-get install g++) or use compile=false")
        if device.type == "cuda" and not has_triton():
            return "compile=true: torch.compile on a GPU needs Triton, which this torch cannot import; use compile=false"
        if device.type == "cuda" and c_compiler() is None:
            return ("compile=true: Triton builds its GPU launcher with a C compiler and finds none "
                    "(gcc, clang or $CC) on PATH; install one or use compile=false")
    if cfg["precision"] == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return (f"precision=bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 "
                f"support (torch.cuda.is_bf16_supported() is False); use precision=fp32")
    return None


def device_note(cfg, device):
    """One line for a setting this machine runs, but slowly, or None."""
    if cfg["precision"] == "bf16" and device.type == "cpu" and not cpu_native_bf16():
        return (f"note: precision=bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): "
                f"autocast emulates it, {BF16_EMULATED_SLOWDOWN}; precision=fp32 is faster here")
    if cfg["precision"] == "bf16" and device.type == "cuda" and \
            not torch.cuda.is_bf16_supported(including_emulation=False):
        return ("note: precision=bf16 on a GPU older than compute capability 8.0: bfloat16 is "
                "emulated, expect it slower than fp32")
    return None


def autocast(cfg, device):
    if cfg["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- every tool's entry

def cli(main, tool):
    """Run `main()` as a command-line tool and return its exit status. SIGTERM ends like
    Ctrl-C (as train.py): one line and 130; every file is written atomically, so an interrupt
    leaves whole files behind. A reader that closed the pipe (`| head`) ends it quietly, 141
    (the shell's status of a process SIGPIPE ended)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        code = main()
        sys.stdout.flush()   # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            print(f"{tool}: interrupted; every file written so far is whole: run the same command "
                  f"again", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # nothing more reaches the reader; stdout must not be flushed again at exit
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
