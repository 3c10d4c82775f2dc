"""Figures at the size a paper prints them: a column-width (3.5 in) and a page-width (7 in)
version of each, 8 pt text at that size, every point inside the axes.

    tradeoff_{col,page}.{png,pdf}    accuracy against sparsity (elementwise curves)
    structured_{col,page}.{png,pdf}  accuracy against nonzero multiply-adds (structured curves)
    dynamics_page.{png,pdf}          accuracy and sparsity against epoch, one point per entry
"""
import math
import os

import numpy as np

from optim.base import STRUCTURED_MODES

from . import load as L
from . import style

WIDTHS = {"col": 3.5, "page": 7.0}
FONT = 8
SP_TICKS = (0.0, 0.9, 0.99, 0.999, 0.9999)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT,
                         "xtick.labelsize": FONT, "ytick.labelsize": FONT, "legend.fontsize": FONT,
                         "lines.linewidth": 1.1, "lines.markersize": 4, "axes.grid": True,
                         "grid.alpha": 0.3, "savefig.dpi": 200})
    return plt


def sp_x(s):
    """Sparsity (fraction) -> -log10(1 - s): 90%, 99%, 99.9% one unit apart."""
    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), 1e-6, 1.0))


def mac_x(f):
    """Fraction of dense multiply-adds kept -> -log10(f): fewer MACs to the right."""
    return -np.log10(np.clip(np.asarray(f, dtype=float), 1e-6, 1.0))


def _axis_limit(values, ticks_x):
    """The right end of the axis: past the largest finite value, and where points beyond it
    (100% sparsity, no MACs left) are drawn with an edge marker."""
    finite = [v for v in values if v < 5.9]
    top = max(finite) if finite else 1.0
    nxt = [t for t in ticks_x if t >= top - 1e-9]
    return (nxt[0] if nxt else top) + 0.15


def _save(fig, folder, name):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = os.path.join(folder, f"{name}.{ext}")
        fig.savefig(p, bbox_inches="tight", pad_inches=0.02)
        paths.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _panels(plt, n, width):
    ncols = 1 if width == "col" else min(n, 2)
    nrows = math.ceil(n / ncols)
    w = WIDTHS[width] * (0.72 if width == "page" and ncols == 1 else 1.0)
    per = 2.3 if nrows == 1 else 1.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, per * nrows), squeeze=False)
    return fig, list(axes.flat)


def _legend(fig, axes, width):
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if not handles:
        return
    # below the panels, so that the figure keeps the width it is printed at
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=2 if width == "col" else 4, frameon=False, handlelength=2.2, columnspacing=1.0)


def tradeoff(pts, folder, kind="nnz", width="col", name=None, roles=("reference", "baseline")):
    """Accuracy against sparsity (kind nnz) or nonzero MACs (kind macs), a panel per row, for
    the entries with these roles; error bars: std over seeds; the dense model as a dotted line
    with its spread. Lines join an entry's points with its full seed count; single-seed
    points (λ-search rounds) are small open markers."""
    plt = _plt()
    structured = kind == "macs"
    # the structured axis is what slim export removes: only structured modes are drawn on it
    sel = pts[pts["mode"].isin(STRUCTURED_MODES) if structured else (pts["mode"] == "elementwise")]
    if structured:
        sel = sel[sel["mac_frac"] == sel["mac_frac"]]   # runs from before macs_structural: none
    sel = sel[sel["role"].isin(roles)]
    rows = list(dict.fromkeys(sel["row"]))
    if not rows:
        return []
    fig, axes = _panels(plt, len(rows), width)
    look = style.looks(zip(pts["method"], pts["entry"]))
    for ax, row in zip(axes, rows):
        mine = sel[sel["row"] == row]
        dense = pts[(pts["row"] == row) & (pts["role"] == "dense")]
        if len(dense):
            d = dense.sort_values("epochs").iloc[-1]
            ax.axhline(d["acc"], color="0.2", ls=":", lw=1.0, label=f"dense ({int(d['epochs'])} ep)")
            if d["acc_sd"] == d["acc_sd"]:
                ax.axhspan(d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"], color="0.5", alpha=0.15, lw=0)
        xs = mac_x(mine["mac_frac"]) if structured else sp_x(mine["sparsity"])
        ticks = sp_x(SP_TICKS) if not structured else mac_x([1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01])
        hi = _axis_limit(list(xs), list(ticks))
        for (meth, entry), part in mine.groupby(["method", "entry"], sort=False):
            part = part.sort_values("sparsity")
            x = np.asarray(mac_x(part["mac_frac"]) if structured else sp_x(part["sparsity"]))
            edge = x > hi - 0.1
            x = np.where(edge, hi - 0.05, x)   # 100% sparse (or no MACs): at the edge
            kw = look[(meth, entry)]
            full = (part["seeds"] >= part["seeds"].max()).to_numpy()
            acc = part["acc"].to_numpy()
            ax.errorbar(x[full], acc[full], yerr=part["acc_sd"].fillna(0).to_numpy()[full], capsize=1.5,
                        label=style.label(meth, entry), **kw)
            if (~full).any():
                ax.plot(x[~full], acc[~full], ls="none", marker=kw["marker"], ms=2.5, mfc="white",
                        mec=kw["color"], alpha=0.8)
            if edge.any():
                ax.plot(x[edge], acc[edge], ls="none", marker=">", color=kw["color"], ms=6)
        if structured:
            labels = [1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
            ax.set_xticks(mac_x(labels), [f"{100 * v:g}%" for v in labels])
            ax.set_xlabel("nonzero multiply-adds (% of dense, log)")
        else:
            ax.set_xticks(sp_x(SP_TICKS), [f"{100 * t:g}%" for t in SP_TICKS])
            ax.set_xlabel("sparsity of conv + linear weights (log-spaced)")
        ax.set_xlim(-0.05, hi)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(row, loc="left")
    _legend(fig, axes, width)
    fig.tight_layout()
    return _save(fig, folder, name or f"{'structured' if structured else 'tradeoff'}_{width}")


def dynamics(df, pts, folder):
    """Test accuracy and sparsity per epoch: for each entry of each row, its point nearest
    the median sparsity of the row's reference curve (mean over seeds)."""
    plt = _plt()
    import pandas as pd

    rows = list(dict.fromkeys(pts["row"]))
    fig, axes = plt.subplots(len(rows), 2, figsize=(WIDTHS["page"], 2.3 * len(rows)), squeeze=False)
    look = style.looks(zip(pts["method"], pts["entry"]))
    for (ax_a, ax_s), row in zip(axes, rows):
        mine = pts[pts["row"] == row]
        ref = mine[(mine["role"] == "reference") & (mine["mode"] == "elementwise")]
        target = float(ref["sparsity"].median()) if len(ref) else float(mine["sparsity"].median())
        for (meth, entry), part in mine.groupby(["method", "entry"], sort=False):
            p = part.iloc[int(np.argmin(np.abs(sp_x(part["sparsity"]) - sp_x(target))))]
            m = pd.concat([L.metrics_of(f) for f in df[df["run"].isin(p["runs"])]["folder"]])
            m = m.groupby("epoch", as_index=False)[["test_acc", "sparsity"]].mean()
            kw = dict(look[(meth, entry)], markevery=max(1, len(m) // 6))
            lab = style.label(meth, entry)
            ax_a.plot(m["epoch"], m["test_acc"], label=lab, **kw)
            ax_s.plot(m["epoch"], sp_x(m["sparsity"]), **kw)
        ax_a.set_title(f"{row}: points nearest {100 * target:.1f}% sparse", loc="left")
        ax_a.set_ylabel("test accuracy (%)")
        ax_s.set_yticks(sp_x(SP_TICKS), [f"{100 * t:g}%" for t in SP_TICKS])
        ax_s.set_ylim(-0.05, _axis_limit(list(sp_x(mine["sparsity"])), list(sp_x(SP_TICKS))))
        ax_s.set_ylabel("sparsity (log-spaced)")
        for ax in (ax_a, ax_s):
            ax.set_xlabel("epoch")
    _legend(fig, list(axes.flat), "page")
    fig.tight_layout()
    return _save(fig, folder, "dynamics_page")
