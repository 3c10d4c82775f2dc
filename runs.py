"""The run folder: its file names, what summary.json holds, when a run counts as finished,
atomic writes, the results index (runs.csv) and loading a run's model.

train.py writes run folders, eval.py, sweep.py, report.py and export.py read them: all of
them go through this module, so the contract (README, "Run folders") lives in one place.

    RESULTS/runs/<run name>/   config.yaml metrics.csv layers.csv summary.json
                               checkpoint.pt model.pt
    RESULTS/runs.csv           one row per finished run (an index; the folders are the truth)

Sweeps write to `results/`; an ad-hoc `python train.py` writes to `scratch/` (git-ignored)
unless it is given --results, so experiments never mix into the committed results.
"""
import contextlib
import csv
import fcntl
import io
import json
import os
import platform
import tempfile

import torch

RESULTS = "results"     # where sweeps write
SCRATCH = "scratch"     # where ad-hoc train.py runs go by default (git-ignored)

CONFIG, METRICS, LAYERS, SUMMARY = "config.yaml", "metrics.csv", "layers.csv", "summary.json"
CHECKPOINT, CHECKPOINT_PREV, MODEL = "checkpoint.pt", "checkpoint.prev.pt", "model.pt"
LOCK = "run.lock"       # held by the one process training the folder
INDEX = "runs.csv"

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
    "train_acc": "last epoch's training accuracy, percent", "train_loss": "last epoch's loss",
    "sparsity": "zeros among conv + linear weights (fraction)",
    "sparsity_all": "zeros among all parameters (fraction)",
    "nnz": "nonzero conv + linear weights", "n_weights": "conv + linear weights",
    "n_params": "all parameters", "flops_dense": "multiply-adds of one image, dense",
    "flops_nonzero": "multiply-adds with nonzero weights (elementwise: each layer's MACs x density)",
    "macs_structural": "multiply-adds left after removing all-zero filters and the inputs they "
                       "feed (what slim export removes; NaN: the model could not be slimmed)",
    "train_seconds": "training time (evaluation excluded)",
    "config_hash": "hash of the whole resolved config (config.config_hash)",
    "init_from": "the model.pt this run started from ('' for random init)",
    # what the run is, written by the sweep (empty for ad-hoc runs); see config.IDENTITY
    "profile": "profile that asked for the run", "entry": "profile entry",
    "role": "dense | reference | baseline | ablation",
    "row": "the comparison it belongs to (a paper row, or dataset-model-width)",
    "swept_key": "the key its entry sweeps ('' if none)", "swept_value": "its value here",
    "calibration_target": "target sparsity of a λ search (NaN if none)",
    "calibration_round": "round of that search (0 if none)",
    "calibration_status": "'not reached': run at the closest round of a search that missed",
    # where and with what it ran
    "torch": "torch version", "torchvision": "torchvision version", "numpy": "numpy version",
    "device_name": "CPU or GPU it trained on", "threads": "torch CPU threads",
}


class RunFolderError(Exception):
    """One line: which run file is missing or unreadable."""


def path(out, name):
    return os.path.join(out, name)


def run_dir(results, name):
    return os.path.join(results, "runs", name)


# ----------------------------------------------------------------------------- writing

def atomic_write(target, data):
    """Write bytes or text to `target` via a temporary file in the same folder + os.replace,
    so a crash never leaves half a CSV or checkpoint."""
    target = os.fspath(target)
    d = os.path.dirname(target) or "."
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


@contextlib.contextmanager
def run_lock(out):
    """Hold RUN/run.lock for as long as this process trains the folder (released by the
    kernel however the process ends); a second process gets LockedError at once. Temporary
    files a killed writer left behind are removed once the lock is ours."""
    os.makedirs(out, exist_ok=True)
    f = open(path(out, LOCK), "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise LockedError(f"{out} is being trained by another process (pid {holder}); wait for "
                              f"it to finish or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        for name in os.listdir(out):
            if name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    os.unlink(path(out, name))
        yield
    finally:
        f.close()


def save_torch(obj, target):
    """torch.save through atomic_write; returns the number of bytes written."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write(target, data)
    return len(data)


def save_json(obj, target):
    atomic_write(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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


def upsert_row(target, row, key="run"):
    """Add `row` to the CSV at `target`, replacing a row with the same key; safe when several
    processes finish at once (an exclusive lock on a side file serializes them)."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = []
        if os.path.exists(target):
            with open(target, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get(key) != str(row[key])]
        rows.append(row)
        save_csv(rows, target)


def reindex(results):
    """Rebuild RESULTS/runs.csv from the run folders (the truth): one row per complete run,
    in folder order. Returns (rows written, [folders skipped as incomplete or unreadable])."""
    top = os.path.join(results, "runs")
    rows, skipped = [], []
    for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        folder = os.path.join(top, name)
        try:
            s = complete_summary(folder)
        except RunFolderError:
            s = None
        if s is None:
            skipped.append(folder)
        else:
            rows.append(s)
    target = os.path.join(results, INDEX)
    with open(target + ".lock", "w") as lock:
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
        with open(target, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return f"damaged ({type(e).__name__})"
    if "run" not in header or any(None in r or None in r.values() for r in rows):
        return "damaged (not a table of runs)"
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


def _cpu_name():
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return ""


# ----------------------------------------------------------------------------- reading

def finished_summary(out, warn=None):
    """The summary of the run finished in folder `out`, or None. A run is finished when
    summary.json reads back and model.pt exists at the size the summary recorded: results
    committed to git (no weights) do not count, so running their config again trains it here
    instead of trusting another machine's numbers; a damaged summary or a truncated model.pt
    is not finished either (said through `warn`), and a rerun writes them again."""
    s, m = path(out, SUMMARY), path(out, MODEL)
    if not (os.path.exists(s) and os.path.exists(m)):
        return None
    try:
        summary = read_summary(out)
    except RunFolderError as e:
        (warn or _stderr)(f"{e}: rerunning it")
        return None
    want = summary.get("model_bytes") if isinstance(summary, dict) else None
    if not isinstance(summary, dict) or (want is not None and os.path.getsize(m) != want):
        (warn or _stderr)(f"{m}: damaged ({os.path.getsize(m)} bytes, the run wrote {want}): rerunning it")
        return None
    return summary


def _stderr(msg):
    import sys

    print(msg, file=sys.stderr)


def read_summary(out):
    try:
        with open(path(out, SUMMARY)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{path(out, SUMMARY)}: unreadable ({e}); delete the run folder "
                             f"to retrain it") from None


def complete_summary(out):
    """The summary of a run whose results are all there, weights or not, or None: summary.json
    readable with every SUMMARY_FIELDS key, and metrics.csv with one row per epoch trained.
    This is what the report reads: results committed to git are complete (but not finished,
    so a sweep retrains them); a run killed before its summary, or whose metrics were cut
    short, is not."""
    if not os.path.exists(path(out, SUMMARY)):
        return None
    s = read_summary(out)
    if not isinstance(s, dict) or any(k not in s for k in SUMMARY_FIELDS):
        return None
    try:
        with open(path(out, METRICS), newline="") as f:
            epochs = sum(1 for _ in csv.DictReader(f))
    except OSError:
        return None
    return s if epochs == int(s["epochs"]) else None


# A run is collapsed when its final training accuracy is below this fraction of the way from
# chance (100 / classes) to 100%: 55% for 10 classes. Training accuracy, not test accuracy, so
# that no test image decides it, and not the BatchNorm statistics either.
COLLAPSE_FRACTION = 0.5


def collapsed(summary):
    """Whether a finished run's training collapsed (see COLLAPSE_FRACTION)."""
    import data

    spec = data.DATASETS.get(summary.get("dataset"))
    chance = 100.0 / (spec.num_classes if spec else 10)
    return float(summary["train_acc"]) < chance + COLLAPSE_FRACTION * (100.0 - chance)


def zero_fraction(out, unit):
    """Fraction of the run's conv `unit`s ("filters" or "kernels") that are entirely zero, from
    layers.csv; None when the model has no conv layer. OSError when layers.csv is missing."""
    with open(path(out, LAYERS), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("type") == "Conv2d"]
    total = sum(int(r[unit]) for r in rows)
    return sum(int(r["zero_" + unit]) for r in rows) / total if total else None


def is_finished(results, name):
    return finished_summary(run_dir(results, name)) is not None


def model_file(cfg, num_classes, state_dict):
    """What model.pt holds: enough to rebuild the model without the config."""
    return {"model": cfg["model"], "width": cfg["width"], "num_classes": num_classes,
            "dataset": cfg["dataset"], "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def model_path(run_or_file):
    return path(run_or_file, MODEL) if os.path.isdir(run_or_file) else run_or_file


def load_model_file(run_or_file):
    p = model_path(run_or_file)
    if not os.path.exists(p):
        raise RunFolderError(f"{p} not found (is the run finished?)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunFolderError(f"{p}: unreadable ({type(e).__name__}); delete it to retrain the run") from None


def load_model(run_or_file, device="cpu"):
    """A finished run's model (a run folder or its model.pt) with its trained sparse weights,
    in eval mode. The forward pass is the one training evaluated (thresholds applied)."""
    import models

    saved = load_model_file(run_or_file)
    model = models.from_saved(saved)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


# ----------------------------------------------------------------------------- devices

def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunFolderError("device: cuda was asked for but no GPU is visible; use device=auto or cpu")
    return torch.device(name)


def autocast(cfg, device):
    if cfg["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
