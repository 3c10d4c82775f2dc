"""What exporting a sparse model saves, one row per run: file sizes (export.py writes them to
RUN_DIR/export.json) and CPU speed-ups (benchmarks/bench_inference.py writes RUN_DIR/
inference.json), next to the theoretical speed-up flops_dense / flops_nonzero.

    rows = savings.table(run_dirs)      # list of dicts, COLUMNS in order, None where unknown
    header, cells = savings.display(rows)    # the same as text: 4 significant digits, kB/MB

Only runs with export.json and/or inference.json get a row. Speed-ups are dense time over the
variant's time (above 1: faster): "slim" is the model with zero filters removed, "sparse" the
CSR kernels (per layer the faster of dense and CSR). The b64 columns are filled only when the
benchmark ran at batch 64 (its default). A network with no nonzero multiply-add has a
theoretical speed-up of inf, shown as "all zero". Reads JSON only: no torch import.
"""
import json
import math
import os

COLUMNS = (
    "run", "model", "method", "mode",
    "theoretical_speedup",          # flops_dense / flops_nonzero (multiply-adds with nonzero weights)
    "slim_speedup_b1", "sparse_speedup_b1",       # latency at batch 1
    "slim_speedup_b64", "sparse_speedup_b64",     # throughput at batch 64
    "dense_bytes", "slim_bytes", "csr_bytes",     # file sizes
)


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def row(run_dir):
    """The savings row of one run folder, or None when it has neither file."""
    exp = _read(os.path.join(run_dir, "export.json"))
    inf = _read(os.path.join(run_dir, "inference.json"))
    if exp is None and inf is None:
        return None
    summary = _read(os.path.join(run_dir, "summary.json")) or {}
    theoretical = _get(inf, "theoretical_speedup")
    if theoretical is not None and _get(inf, "flops_nonzero") == 0:
        theoretical = math.inf          # bench_inference divides by max(nonzero, 1)
    if theoretical is None and summary.get("flops_dense") and summary.get("flops_nonzero"):
        theoretical = summary["flops_dense"] / summary["flops_nonzero"]
    elif theoretical is None and summary.get("flops_dense") and summary.get("flops_nonzero") == 0:
        theoretical = math.inf          # no multiply-add left: an all-zero network
    b64 = _get(inf, "batch") == 64
    dense_bytes = next((_get(exp, f, "dense_bytes") for f in ("dense", "slim", "csr")
                        if _get(exp, f, "dense_bytes") is not None), None)
    return {
        "run": summary.get("run") or _get(inf, "run") or os.path.basename(os.path.normpath(run_dir)),
        "model": summary.get("model") or _get(inf, "model"),
        "method": summary.get("method"),
        "mode": summary.get("mode"),
        "theoretical_speedup": theoretical,
        "slim_speedup_b1": _get(inf, "speedup_b1", "slim"),
        "sparse_speedup_b1": _get(inf, "speedup_b1", "sparse"),
        "slim_speedup_b64": _get(inf, "speedup_batch", "slim") if b64 else None,
        "sparse_speedup_b64": _get(inf, "speedup_batch", "sparse") if b64 else None,
        "dense_bytes": dense_bytes,
        "slim_bytes": _get(exp, "slim", "bytes"),
        "csr_bytes": _get(exp, "csr", "bytes"),
    }


def table(run_dirs):
    """One row (a dict with COLUMNS) per run folder that has export.json or inference.json."""
    return [r for r in (row(d) for d in run_dirs) if r is not None]


HEADER = {"run": "run", "model": "model", "method": "method", "mode": "mode",
          "theoretical_speedup": "MACs dense / nonzero", "slim_speedup_b1": "slim, batch 1",
          "sparse_speedup_b1": "CSR, batch 1", "slim_speedup_b64": "slim, batch 64",
          "sparse_speedup_b64": "CSR, batch 64", "dense_bytes": "dense file", "slim_bytes": "slim file",
          "csr_bytes": "CSR file"}


def size(n):
    """Bytes as '1.234 MB' (SI units, 4 significant digits)."""
    if n is None:
        return "—"
    n = float(n)
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.4g} {unit}"
    return f"{n:.0f} B"


def ratio(v):
    """A speed-up as '2.345×' (4 significant digits); 'all zero' when nothing is left to run."""
    if v is None:
        return "—"
    v = float(v)
    if not math.isfinite(v):
        return "all zero"
    return f"{v:.4g}×"


def display(rows):
    """(header, rows of strings) of the savings table for Markdown: speed-ups as ratios with
    4 significant digits (above 1×: faster than dense), files in kB/MB, 'all zero' for a
    network with no nonzero multiply-add, '—' where unknown."""
    out = []
    for r in rows:
        cells = []
        for c in COLUMNS:
            v = r[c]
            if c.endswith("_bytes"):
                cells.append(size(v))
            elif "speedup" in c:
                cells.append(ratio(v))
            else:
                cells.append("—" if v is None else str(v))
        out.append(cells)
    return [HEADER[c] for c in COLUMNS], out
