"""What export reads and writes: the finished run it reads, the export files it writes with
their sha256 beside them, export.json, and reading an export back with that check.

Each export FILE is written with FILE.sha256 beside it, one line in the format `sha256sum`
writes (so `sha256sum -c FILE.sha256` checks it as well); reading FILE back (load_slim,
load_csr, load_dense, `export.py --check`) first compares the file with it, as summaries.py checks
model.pt against summary.json's model_sha256. Without FILE.sha256 beside it (a file copied
alone), a csr or dense export is checked against the checksum stored inside it (CONTENT_SHA,
over every tensor's bytes and every other value), else against the sha256 export.json beside
it records; a file with none of these is not read (one line), and a mismatch is ExportError,
one line.
"""
import contextlib
import glob
import hashlib
import json
import os
import re

import torch

from sparsecs import fileio
from sparsecs import paths
from sparsecs import summaries

EXPORT_JSON = "export.json"
# RESULTS/<profile>/weights/<run>/COMMITTED: the export committed for run RESULTS/runs/<run>,
# whose model.pt is not committed (results/fashion/weights/README.md)
WEIGHTS = "weights"
COMMITTED = "model.csr.pt"
SHA_SUFFIX = ".sha256"
# the run's own files: an export never replaces the weights, summary or log of the run it reads
RUN_FILES = (paths.CONFIG, paths.METRICS, paths.LAYERS, paths.SUMMARY, paths.CHECKPOINT,
             paths.CHECKPOINT_PREV, paths.MODEL, paths.PREDICTIONS, paths.LOCK, paths.MARKER, EXPORT_JSON)


class ExportError(Exception):
    """One line: what is wrong with the input or the export; `code` the exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- the run read

def finished_run(run_dir):
    """The summary of the finished run in `run_dir`; ExportError (one line) otherwise. A
    missing path is a usage error (2), as train.py's missing config."""
    if not os.path.exists(run_dir):
        raise ExportError(f"{run_dir}: no such run folder", 2)
    if not os.path.isdir(run_dir):
        raise ExportError(f"{run_dir}: not a run folder, nor a csr export of one (give the folder "
                          f"that holds model.pt, or a model.csr.pt)")
    notes = []
    summary = summaries.finished_summary(run_dir, warn=notes.append)
    if summary is None:
        missing = [f for f in (paths.SUMMARY, paths.MODEL) if not os.path.exists(paths.path(run_dir, f))]
        if notes and not missing:   # damaged or altered: say which file, not "not finished"
            raise ExportError(f"{notes[0].removesuffix(': rerunning it')}; retrain the run "
                              f"(train.py with its config) or restore the file")
        raise ExportError(f"{run_dir}: run not finished (no {' or '.join(missing)}); "
                          f"finish it with train.py first")
    return summary


def committed_export(run_dir):
    """The committed csr export standing in for run folder `run_dir` (RESULTS/runs/<run>)
    where its model.pt is not here: RESULTS/<profile>/weights/<run>/model.csr.pt, matched by
    the run's name (which ends in its config hash); None where the folder has a model.pt or
    no such export. Not checked here: csr.load_any checks it before use."""
    folder = os.path.abspath(run_dir)
    if not os.path.isdir(folder) or os.path.lexists(paths.path(folder, paths.MODEL)):
        return None
    runs_dir = os.path.dirname(folder)
    if os.path.basename(runs_dir) != "runs":
        return None
    results = os.path.dirname(runs_dir)
    if not os.path.isabs(run_dir):      # said in messages: as relative as the path given
        results = os.path.relpath(results)
    pattern = os.path.join(glob.escape(results), "*", WEIGHTS,
                           glob.escape(os.path.basename(folder)), COMMITTED)
    found = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    return found[0] if found else None


def is_slim_export(path):
    """Whether `path` is a file that export.json beside it records as a slim export."""
    if not os.path.isfile(path):
        return False
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), EXPORT_JSON)) as f:
            entry = json.load(f).get("slim")
        return os.path.basename(str(entry.get("file", ""))) == os.path.basename(path)
    except (OSError, ValueError, AttributeError):
        return False


def slim_source(path):
    """The dense model slim export `path` was made from, where it is here: the run folder
    holding it (RUN_DIR/model.slim.pt), a model.csr.pt beside it, or the run folder
    RESULTS/runs/<run> of RESULTS/<profile>/weights/<run>/ with its model.pt; else None."""
    folder = os.path.dirname(os.path.abspath(path))
    results = os.path.dirname(os.path.dirname(os.path.dirname(folder)))
    for cand in (folder, os.path.join(folder, COMMITTED),
                 os.path.join(results, "runs", os.path.basename(folder))):
        if os.path.isfile(paths.path(cand, paths.MODEL)) if os.path.isdir(cand) else os.path.isfile(cand):
            return cand
    return None


def run_file(run_dir, out):
    """The name of the run's own file that path `out` (or its checksum record) is, by path,
    symlink or hard link, or None."""
    for target in (out, sha_path(out)):
        real = os.path.realpath(target)
        for name in RUN_FILES:
            p = os.path.join(run_dir, name)
            if os.path.realpath(p) == real:
                return name
            with contextlib.suppress(OSError):
                if os.path.exists(target) and os.path.exists(p) and os.path.samefile(p, target):
                    return name
    return None


def run_data_dir(run_dir):
    """The run's data_dir (its config.yaml), else "data"."""
    cfg = os.path.join(run_dir, paths.CONFIG)
    if os.path.exists(cfg):
        try:
            import yaml
            with open(cfg) as f:
                return (yaml.safe_load(f) or {}).get("data_dir", "data")
        except Exception:
            pass
    return "data"


# ----------------------------------------------------------------------------- files written

def real_batch(dataset, n=256, data_dir="data"):
    """The first `n` test images of `dataset` (normalized, on the CPU)."""
    from sparsecs import data as D

    d = D.load(dataset, data_dir, device="cpu", download=False)
    x, _ = next(d.test_batches(n))
    return x


def sha_path(file):
    return os.fspath(file) + SHA_SUFFIX


def write_export(out, blob):
    """Write export bytes `blob` to `out` and their sha256 beside it; returns the sha256."""
    sha = hashlib.sha256(blob).hexdigest()
    side = sha_path(out)
    # an old record never stands beside new bytes, even if the second write fails
    with contextlib.suppress(FileNotFoundError):
        os.unlink(side)
    fileio.atomic_write(out, blob)
    fileio.atomic_write(side, f"{sha}  {os.path.basename(out)}\n")
    return sha


def record(run_dir, fmt, facts):
    """Merge `facts` into RUN_DIR/export.json under `fmt` (one key per format)."""
    target = os.path.join(run_dir, EXPORT_JSON)
    merged = {}
    if os.path.exists(target):
        try:
            with open(target) as f:
                merged = json.load(f)
        except (OSError, ValueError):
            merged = {}
    if not isinstance(merged, dict):
        merged = {}
    merged[fmt] = facts
    fileio.save_json(merged, target)


# ----------------------------------------------------------------------------- files read back

def recorded_sha(file):
    """The sha256 recorded beside export `file`, or None where there is no record."""
    side = sha_path(file)
    try:
        with open(side) as f:
            words = f.read(256).split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"{side}: unreadable ({getattr(e, 'strerror', None) or type(e).__name__}); "
                          f"export the run again") from None
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0]):
        raise ExportError(f"{side}: not a sha256 record; export the run again")
    return words[0]


CONTENT_SHA = "content_sha256"   # inside a csr / dense export: content_sha(the rest of it)


def content_sha(obj):
    """sha256 of what an export holds: keys, values and every tensor's dtype, shape and bytes,
    the key CONTENT_SHA left out; the same however torch lays the file out."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                if k != CONTENT_SHA:
                    h.update(repr(k).encode() + b":")
                    walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}:".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(x).encode() + b";")
    walk(obj)
    return h.hexdigest()


def with_content_sha(obj):
    """`obj` (a csr or dense export's dict) with its own checksum inside."""
    return {**obj, CONTENT_SHA: content_sha(obj)}


def json_sha(file):
    """The sha256 that export.json beside `file` records for it, or None."""
    target = os.path.join(os.path.dirname(os.path.abspath(file)), EXPORT_JSON)
    try:
        with open(target) as f:
            facts = json.load(f)
        for v in facts.values():
            if os.path.basename(str(v.get("file", ""))) == os.path.basename(file) and \
                    re.fullmatch(r"[0-9a-f]{64}", str(v.get("sha256", ""))):
                return v["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _inner_sha(file):
    """(recorded, computed) content checksum of a csr / dense export holding one, else None;
    read with weights_only=True (plain tensors: nothing runs)."""
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(obj, dict) and isinstance(obj.get(CONTENT_SHA), str):
        return obj[CONTENT_SHA], content_sha(obj)
    return None


def export_problem(file):
    """Why export `file` is not the file export.py wrote, or None: checked against FILE.sha256,
    else the checksum inside it, else export.json's record beside it; none of them: a problem
    too (an unchecked file is never read)."""
    want = recorded_sha(file)
    if want is not None:
        if fileio.file_sha256(file) != want:
            return (f"{file}: altered or damaged (its sha256 is not the one "
                    f"{os.path.basename(sha_path(file))} recorded, {want[:12]}...)")
        return None
    inner = _inner_sha(file)
    if inner is not None:
        if inner[0] != inner[1]:
            return (f"{file}: altered or damaged (its content no longer matches the checksum "
                    f"stored inside it, {inner[0][:12]}...)")
        return None
    want = json_sha(file)
    if want is not None:
        if fileio.file_sha256(file) != want:
            return (f"{file}: altered or damaged (its sha256 is not the one {EXPORT_JSON} "
                    f"beside it recorded, {want[:12]}...)")
        return None
    return (f"{file}: no checksum to check it against ({os.path.basename(sha_path(file))} is not "
            f"beside it, none is stored inside it, no {EXPORT_JSON} records it): not read")


def name_of(file):
    """`file` for a message: its path, or "export" for a file object."""
    return file if isinstance(file, (str, os.PathLike)) else "export"


def open_export(file, weights_only=True):
    """torch.load of an export: a path is checked against its recorded sha256 first, a file
    object is read as it is. Missing, altered or unreadable: ExportError, one line."""
    if isinstance(file, (str, os.PathLike)):
        if not os.path.isfile(file):
            raise ExportError(f"{file}: no such export file")
        problem = export_problem(file)
        if problem:
            raise ExportError(f"{problem}; export the run again (python export.py RUN_DIR --format ...)")
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        raise ExportError(f"{name_of(file)}: unreadable ({type(e).__name__}); not an export of this "
                          f"repository, or damaged") from None
