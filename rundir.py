"""Writing run folders safely: every file is written to a temporary name and renamed,
so a crash never leaves half a CSV or checkpoint; results/runs.csv is updated under a lock."""
import csv
import fcntl
import io
import json
import os
import tempfile

import torch


def atomic_write(path, data):
    """Write bytes or text to `path` via a temporary file in the same folder + os.replace."""
    path = os.fspath(path)
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_torch(obj, path):
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def save_json(obj, path):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def csv_text(rows, columns=None):
    """Rows (dicts) as CSV text; columns default to the union in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def save_csv(rows, path, columns=None):
    atomic_write(path, csv_text(rows, columns))


def upsert_row(path, row, key="run"):
    """Add `row` to the CSV at `path`, replacing a row with the same key; safe when several
    processes finish at once (an exclusive lock on a side file serializes them)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = []
        if os.path.exists(path):
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get(key) != str(row[key])]
        rows.append(row)
        save_csv(rows, path)
