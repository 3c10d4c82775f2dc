"""Measured CPU speed-up against sparsity: what the sparse kernels deliver next to what the
nonzero multiply-adds promise, from the CSV of benchmarks/bench_inference.py (--csv).

    paths = speedup_figure.figure("inference.csv", folder)   # [] when there is no CSV / no row

    speedup_page.{png,pdf}   one panel per batch size (1, and the throughput batch): per run,
                             dense time / variant time (median of the per-round ratios, bars
                             the interquartile range) against the nonzero-MAC ratio
                             flops_dense / flops_nonzero (log-log); the diagonal is the ratio
                             itself (every skipped multiply-add saved), 1 is dense's speed
"""
import math
import os

import runs

FONT = 8
WIDTH = 7.0   # in: a page-wide figure, as the report's other *_page figures
VARIANTS = {"sparse": ("o", "#1f77b4"), "slim+sparse": ("s", "#2ca02c"),
            "folded": ("^", "#7f7f7f"), "slim": ("D", "#d62728")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT,
                         "xtick.labelsize": FONT, "ytick.labelsize": FONT, "legend.fontsize": FONT,
                         "lines.markersize": 4, "axes.grid": True, "grid.alpha": 0.3,
                         "savefig.dpi": 200})
    return plt


def read(csv_path):
    """The benchmark rows, the latest measurement of each (run, batch, variant, threads)."""
    import pandas as pd

    if not csv_path or not os.path.exists(csv_path) or os.path.getsize(csv_path) == 0:
        return None
    df = pd.read_csv(csv_path)
    if df.empty:
        return None
    df = df.sort_values("measured_at").drop_duplicates(["run", "batch", "variant", "threads"], keep="last")
    return df[df["variant"] != "dense"]


def figure(csv_path, folder):
    """speedup_page.{png,pdf} in `folder` from the benchmark CSV; [] when it has no rows."""
    df = read(csv_path)
    if df is None or df.empty:
        return []
    plt = _plt()
    batches = sorted(df["batch"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(WIDTH, 2.8), squeeze=False)
    for ax, b in zip(axes[0], batches):
        d = df[df["batch"] == b]
        finite = d["mac_ratio"][d["mac_ratio"].map(math.isfinite)]
        hi = max(2.0, float(finite.max()) * 1.3 if len(finite) else 2.0)
        ax.plot([1, hi], [1, hi], color="#555555", lw=0.6, ls=":", label="nonzero-MAC ratio")
        ax.axhline(1.0, color="#555555", lw=0.6)
        for v, (marker, color) in VARIANTS.items():
            s = d[d["variant"] == v]
            if s.empty:
                continue
            err = [s["speedup"] - s["speedup_q1"], s["speedup_q3"] - s["speedup"]]
            ax.errorbar(s["mac_ratio"], s["speedup"], yerr=err, fmt=marker, color=color,
                        capsize=2, lw=0.8, label=v)
        ax.set_xscale("log")
        ax.set_yscale("log")
        threads = ", ".join(str(t) for t in sorted(d["threads"].unique()))
        what = "latency" if b == 1 else "throughput"
        ax.set_title(f"batch {b} ({what}), {threads} thread(s)", loc="left")
        ax.set_xlabel("multiply-adds dense / nonzero")
        ax.set_ylabel("speed-up over dense")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = os.path.join(folder, f"speedup_page.{ext}")
        runs.save_figure(fig, p, bbox_inches="tight", pad_inches=0.02)
        paths.append(p)
    plt.close(fig)
    return paths
