"""RESULTS/runs.csv: one row per complete run, an index rebuilt from the run folders (the
truth) whenever it is missing, damaged or behind them.
"""
import contextlib
import csv
import fcntl
import os
import sys

from sparsecs import fileio
from sparsecs import paths
from sparsecs import summaries


def _stderr(msg):
    print(msg, file=sys.stderr)


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
        raise paths.RunFolderError(f"{target}: damaged ({type(e).__name__})") from None
    if key not in header or any(None in r or None in r.values() for r in rows):
        raise paths.RunFolderError(f"{target}: damaged (not a table of runs)")
    return rows


def _folder_rows(results):
    """(summaries of the complete runs under RESULTS/runs/ in folder order, [folders left
    out], [one line per damaged folder])."""
    top = os.path.join(results, "runs")
    rows, skipped, notes = [], [], []
    for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        folder = os.path.join(top, name)
        try:
            s = summaries.complete_summary(folder)
        except paths.RunFolderError as e:
            s = None
            notes.append(str(e))
        if s is None:
            skipped.append(folder)
        else:
            rows.append(s)
    return rows, skipped, notes


def _index_lock(target):
    """The side file whose lock serializes writers of the index `target` (opened, not locked)."""
    with fileio.writing(target + ".lock"):
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
        except paths.RunFolderError as e:
            rows = _folder_rows(os.path.dirname(os.path.abspath(target)))[0]
            (warn or _stderr)(f"{e}: rebuilt from the run folders ({len(rows)} runs)")
        rows = [r for r in rows if r.get(key) != str(row[key])]
        rows.append(row)
        fileio.save_csv(rows, target, list(dict.fromkeys(k for r in rows for k in r)))


def reindex(results, warn=None):
    """Rebuild RESULTS/runs.csv from the run folders (the truth): one row per complete run,
    in folder order. Returns (rows written, [folders skipped as incomplete or unreadable]);
    each damaged folder is said through `warn` (one line each)."""
    rows, skipped, notes = _folder_rows(results)
    for n in notes:
        (warn or (lambda _: None))(n)
    target = os.path.join(results, paths.INDEX)
    with _index_lock(target) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fileio.save_csv(rows, target, list(dict.fromkeys(k for r in rows for k in r)) or ["run"])
    return len(rows), skipped


def index_problem(results):
    """Why RESULTS/runs.csv is not a true index of the run folders, or None: missing, damaged
    (unreadable, no `run` column, ragged rows) or behind (a complete run it lacks, e.g. one
    whose row failed to write, or a row for a folder that is gone)."""
    target = os.path.join(results, paths.INDEX)
    top = os.path.join(results, "runs")
    folders = sorted(os.listdir(top)) if os.path.isdir(top) else []
    complete = set()
    for name in folders:
        with contextlib.suppress(paths.RunFolderError):
            if summaries.complete_summary(os.path.join(top, name)) is not None:
                complete.add(name)
    if not os.path.exists(target):
        return "missing" if complete else None
    try:
        rows = _index_rows(target)
    except OSError as e:
        return f"damaged ({type(e).__name__})"
    except paths.RunFolderError as e:
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
    return f"{os.path.join(results, paths.INDEX)} was {problem}: rebuilt from the run folders ({n} runs)"
