"""Measured CPU speed-up against sparsity: what the sparse kernels deliver next to what the
nonzero multiply-adds promise, from the CSV of benchmarks/bench_inference.py (--csv).

    paths = speedup_figure.figure(load.inference("inference.csv"), folder)   # [] without rows

    speedup_page.{png,pdf}   one panel per batch size (1, and the throughput batch): per run,
                             dense time / variant time (median of the per-round ratios, bars
                             the interquartile range) against the nonzero-MAC ratio
                             flops_dense / flops_nonzero (log-log); the diagonal is the ratio
                             itself (every skipped multiply-add saved), 1 is dense's speed
"""
import math

from . import figures as F
from . import style

# marker, colour (the project's Okabe-Ito palette) and what each variant is, for the legend
VARIANTS = {
    "sparse": ("o", style.OKABE_ITO["blue"], "sparse: BatchNorm folded, sparse kernels"),
    "slim+sparse": ("s", style.OKABE_ITO["bluish green"], "slim+sparse: zero filters removed, then sparse kernels"),
    "folded": ("^", style.OKABE_ITO["orange"], "folded: BatchNorm folded, dense kernels"),
    "slim": ("D", style.OKABE_ITO["vermillion"], "slim: zero filters removed, dense kernels"),
}


def threads_text(threads):
    """'1 thread', '4 threads', '1, 4 threads'."""
    ts = sorted(int(t) for t in threads)
    return f"{', '.join(map(str, ts))} thread{'' if ts == [1] else 's'}"


def figure(df, folder):
    """speedup_page.{png,pdf} in `folder` from the benchmark rows `df` (reporting/load.py:
    inference); [] when there are none."""
    if df is None or df.empty:
        return []
    plt = F._plt()
    batches = sorted(df["batch"].unique())
    fig, axes = F._figure(plt, len(batches), "page", F._legend_rows(len(VARIANTS) + 2, "page", 2),
                          ncols=len(batches), panel_h=2.6)
    handles = {}
    for ax, b in zip(axes, batches):
        _panel(ax, df[df["batch"] == b], b, handles)
    F._legend(fig, handles, "page", ncol=2)
    paths = F._save(fig, folder, "speedup_page")
    F._record("speedup_page", fig)
    return paths


def _panel(ax, d, b, handles):
    finite = d["mac_ratio"][d["mac_ratio"].map(math.isfinite)]
    hi = max(2.0, float(finite.max()) * 1.3 if len(finite) else 2.0)
    handles.setdefault("diagonal: every skipped multiply-add saved",
                       ax.plot([1, hi], [1, hi], color="#555555", lw=0.6, ls=":")[0])
    handles.setdefault("1: dense's speed", ax.axhline(1.0, color="#555555", lw=0.6))
    for v, (marker, color, text) in VARIANTS.items():
        s = d[d["variant"] == v]
        if s.empty:
            continue
        err = [s["speedup"] - s["speedup_q1"], s["speedup_q3"] - s["speedup"]]
        handles.setdefault(text, ax.errorbar(s["mac_ratio"], s["speedup"], yerr=err, fmt=marker, color=color,
                                             capsize=2, lw=0.8))
    ax.set_xscale("log")
    ax.set_yscale("log")
    what = "latency" if b == 1 else "throughput"
    ax.set_title(f"batch {b} ({what}), {threads_text(d['threads'].unique())}")
    ax.set_xlabel("multiply-adds dense / nonzero")
    ax.set_ylabel("speed-up over dense (median, IQR)")
