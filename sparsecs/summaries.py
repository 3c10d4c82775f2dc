"""What summary.json holds, field by field and type by type, and when a run counts as
complete (the report's rule) or finished (train's and sweep's rule: its model.pt too).

train.py writes summary.json; every reader goes through read_summary, which checks each
field's type, so a damaged file makes the run damaged, never a wrong number.
"""
import csv
import json
import math
import os
import re

from sparsecs import fileio
from sparsecs import paths


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
    "calibration_status": ("'not reached': run at the closest round of a search that missed; "
                           "'fill-in': a follower seed's own run past an end level it stopped short of"),
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


def model_problem(out, summary):
    """Why RUN/model.pt is not the file the run wrote (summary.json's model_bytes and
    model_sha256), or None. A summary from before the checksum was recorded is checked by
    size alone; one with neither is trusted."""
    m = paths.path(out, paths.MODEL)
    size, want = os.path.getsize(m), summary.get("model_bytes")
    if want is not None and size != want:
        return f"{m}: damaged ({size} bytes, the run wrote {want})"
    sha = summary.get("model_sha256")
    if sha and fileio.file_sha256(m) != sha:
        return (f"{m}: altered or damaged (its sha256 is not the one {paths.SUMMARY} recorded, "
                f"{sha[:12]}...)")
    return None


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
    s, m = paths.path(out, paths.SUMMARY), paths.path(out, paths.MODEL)
    if not (os.path.exists(s) and os.path.exists(m)):
        return None
    try:
        summary = read_summary(out)
        problem = (metrics_problem(out, summary)
                   if os.path.exists(paths.path(out, paths.METRICS)) and "epochs" in summary else None)
    except paths.RunFolderError as e:   # (not the advice to delete the folder: a rerun rewrites it)
        (warn or _stderr)(f"{str(e).removesuffix(paths.RETRAIN)}: rerunning it")
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
    p = paths.path(out, paths.SUMMARY)
    try:
        with open(p) as f:
            s = json.load(f)
    except (OSError, ValueError) as e:
        raise paths.RunFolderError(f"{p}: unreadable ({e}){paths.RETRAIN}") from None
    if isinstance(s, dict):   # null is how save_json writes NaN (no summary field is ever None)
        s = {k: math.nan if v is None else v for k, v in s.items()}
    problem = summary_problem(s)
    if problem:
        raise paths.RunFolderError(f"{p}: damaged ({problem}){paths.RETRAIN}")
    return s


def read_metrics(out):
    """metrics.csv of run folder `out` as a list of dicts (strings); OSError when it is
    missing, RunFolderError (one line) when it is damaged: not text, no header, or a row with
    another number of fields than the header (which pandas would shift into other columns)."""
    p = paths.path(out, paths.METRICS)
    with open(p, newline="", encoding="utf-8", errors="strict") as f:
        try:
            table = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise paths.RunFolderError(f"{p}: damaged ({type(e).__name__}){paths.RETRAIN}") from None
    if not table or not table[0] or "epoch" not in table[0]:
        raise paths.RunFolderError(f"{p}: damaged (no header with an 'epoch' column){paths.RETRAIN}")
    header = table[0]
    for i, r in enumerate(table[1:], 2):
        if len(r) != len(header):
            raise paths.RunFolderError(f"{p}: damaged (line {i} has {len(r)} fields, the header "
                                 f"{len(header)}){paths.RETRAIN}")
    return [dict(zip(header, r)) for r in table[1:]]


def complete_summary(out):
    """The summary of a run whose results are all there, weights or not, or None: summary.json
    readable with every SUMMARY_FIELDS key (but OPTIONAL), and metrics.csv with one row per
    epoch trained. This is what the report reads: results committed to git are complete (but
    not finished, so a sweep retrains them); a run killed before its summary, or whose metrics
    were cut short, is not. A damaged summary.json or metrics.csv: RunFolderError."""
    if not os.path.exists(paths.path(out, paths.SUMMARY)):
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
    p = paths.path(out, paths.METRICS)
    n = 0
    with open(p, newline="", encoding="utf-8", errors="strict") as f:
        try:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or "epoch" not in header:
                raise paths.RunFolderError(f"{p}: damaged (no header with an 'epoch' column){paths.RETRAIN}")
            for i, r in enumerate(reader, 2):
                if len(r) != len(header):
                    raise paths.RunFolderError(f"{p}: damaged (line {i} has {len(r)} fields, the header "
                                         f"{len(header)}){paths.RETRAIN}")
                n += 1
                if most is not None and n >= most:
                    break
        except (UnicodeDecodeError, csv.Error) as e:
            raise paths.RunFolderError(f"{p}: damaged ({type(e).__name__}){paths.RETRAIN}") from None
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
    return f"{paths.path(out, paths.METRICS)}: {many} for the {epochs} epochs the run trained"


def zero_fraction(out, unit):
    """Fraction of the run's conv `unit`s ("filters" or "kernels") that are entirely zero, from
    layers.csv; None when the model has no conv layer. OSError when layers.csv is missing,
    RunFolderError (one line) when it is damaged."""
    p = paths.path(out, paths.LAYERS)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("type") == "Conv2d"]
        total = sum(int(r[unit]) for r in rows)
        zero = sum(int(r["zero_" + unit]) for r in rows)
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as e:
        why = f"no column {e}" if isinstance(e, KeyError) else type(e).__name__
        raise paths.RunFolderError(f"{p}: damaged ({why}){paths.RETRAIN}") from None
    if not 0 <= zero <= total:
        raise paths.RunFolderError(f"{p}: damaged ({zero} zero {unit} of {total}){paths.RETRAIN}")
    return zero / total if total else None


def is_finished(results, name):
    return finished_summary(paths.run_dir(results, name)) is not None
