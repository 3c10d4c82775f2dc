"""What every figure of a report shares: sizes, fonts, saving, axes, legends, the points the
dynamics and per-layer figures show. Figures at the size a paper prints them: saved at exactly
3.5 in (one column) or 7 in (the page) wide, 8 pt text at that size, PNG at 300 dpi and PDF with
TrueType (Type 42) fonts, no Type 3 (which IEEE PDF eXpress and ACM's checks reject).

One figure a module, each drawn from the frames reporting/load.py read (never a run folder):

    tradeoff_{col,page}*      fig_tradeoff.py: accuracy against sparsity (elementwise curves)
    ablation_{col,page}*      fig_tradeoff.py: the same for xRDA and its ablations
    structured_{col,page}*    fig_tradeoff.py: accuracy against structural multiply-adds
    dynamics_page*            fig_dynamics.py: accuracy and sparsity per epoch of the points
                              of `matched`, mean and a band of ± std over seeds, on the
                              total-epoch axis
    layers_page*              fig_layers.py: per-layer sparsity of those same points
    threshold_col*            fig_threshold.py: the soft threshold d_t over training
    search_col*               fig_search.py: sparsity against λ (or D) for every λ search
    thresholds_page*          threshold_figure.py: each threshold schedule's d and λ
    speedup_page*             speedup_figure.py: measured CPU speed-up
    budget_{col,page}*        budget_figure.py: accuracy against the training budget

A column figure holds one panel (one row of the profile; several rows: one file per row, the
row in the file name), a page figure up to six (more: numbered files). Every mark is in the
legend: filled markers joined by a line are points every seed ran (error bars: std over
seeds); small open markers are λ-search rounds that only seed 0 ran; collapsed runs
(criteria.collapsed) sit on the lower edge of the axis as ×, healthy points more than BELOW_PP
below the best as ↓ on that edge, and 100%-sparse points (nothing left) on the right edge as
▶ (with a white × when they also collapsed). The accuracy axis spans the healthy points and
the dense model's band, not 0-100%.

Colours: reporting.style (Okabe-Ito); the threshold figure shades one entry's points along
the cividis map (sequential, readable with colour-vision deficiencies).
"""
import math
import os
import re

import numpy as np

from sparsecs import fileio

WIDTHS = {"col": 3.5, "page": 7.0}
FONT = 8
DPI = 300
PANEL_H = {"col": 2.25, "page": 2.1}     # inches per panel row
PER_FILE = {"col": (1, 1), "page": (3, 2)}    # (panel rows, panel columns) per file at most
SP_CAND = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
MAC_CAND = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
EDGE = 5.9          # sp_x / mac_x beyond this: 100% sparse, nothing left
BELOW_PP = 20.0     # the accuracy axis reaches this far below the best healthy value at most
BELOW_MARK = r"$\downarrow$"     # not a triangle: ▼ is prune + fine-tune's marker

# what each figure drew: {file stem: {"entries": [(label, colour, marker)], "marks": [...]}}
DRAWN = {}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT,
                         "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1,
                         "lines.linewidth": 1.1, "lines.markersize": 4, "axes.grid": True,
                         "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.linewidth": 0.6,
                         "savefig.dpi": DPI, "pdf.fonttype": 42, "ps.fonttype": 42,
                         "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
                         "legend.handlelength": 2.0, "legend.columnspacing": 1.0,
                         "axes.titlelocation": "left"})
    return plt


def sp_x(s):
    """Sparsity (fraction) -> -log10(1 - s): 90%, 99%, 99.9% one unit apart."""
    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), 1e-6, 1.0))


def mac_x(f):
    """Fraction of dense multiply-adds kept -> -log10(f): fewer MACs to the right."""
    return -np.log10(np.clip(np.asarray(f, dtype=float), 1e-6, 1.0))


def pct(v):
    """0.995 -> '99.5%' (at most 4 significant digits)."""
    return f"{100 * v:.4g}%"


def ticks(lo, hi, cand, to_x, most=7):
    """Tick values (from `cand`) inside [lo, hi] on the transformed axis, at least 3 where
    the candidates allow, at most `most`, never two closer than a tenth of the span."""
    xs = [(float(to_x(c)), c) for c in cand]
    inside = [(x, c) for x, c in xs if lo - 1e-9 <= x <= hi + 1e-9]
    if len(inside) < 3:
        inside = sorted(xs, key=lambda t: abs(t[0] - (lo + hi) / 2))[:3]
        inside.sort()
    gap = (hi - lo) / 10
    kept = []
    for x, c in inside:
        if not kept or x - kept[-1][0] >= gap:
            kept.append((x, c))
    while len(kept) > most:
        kept = kept[::2]
    return [x for x, _ in kept], [pct(c) for _, c in kept]


def slug(text):
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text)).strip("-")


def _save(fig, folder, name):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        p = os.path.join(folder, f"{name}.{ext}")
        fileio.save_figure(fig, p, dpi=DPI, metadata=meta)    # no bbox_inches="tight": the size is the size
        paths.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _record(stem, fig, **extra):
    """What a figure shows, for tests and for a reader of DRAWN: titles, legend texts, axis
    limits and tick labels of every visible axis."""
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    legend = [t.get_text() for f in [fig, *fig.subfigs] for lg in f.legends for t in lg.get_texts()]
    legend += [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    DRAWN[stem] = {"titles": [ax.get_title(loc="left") for ax in axes if ax.get_title(loc="left")],
                   "legend": legend, "ylims": [ax.get_ylim() for ax in axes],
                   "xlims": [ax.get_xlim() for ax in axes],
                   "xlabels": [ax.get_xlabel() for ax in axes], "yscales": [ax.get_yscale() for ax in axes],
                   "xticks": [_shown(ax.get_xticks(), ax.get_xticklabels(), ax.get_xlim()) for ax in axes],
                   "yticks": [_shown(ax.get_yticks(), ax.get_yticklabels(), ax.get_ylim()) for ax in axes],
                   "size": tuple(fig.get_size_inches()), **extra}


def _shown(locs, labels, lim):
    lo, hi = min(lim), max(lim)
    return [t.get_text() for x, t in zip(locs, labels) if lo - 1e-9 <= x <= hi + 1e-9]


def _groups(items, width, per=None):
    """Split panels into files: [(file suffix, [items])]."""
    rows, cols = PER_FILE[width]
    per = per or rows * cols
    if not items:
        return []
    if len(items) <= per:
        return [("", items)]
    if width == "col":
        return [(f"_{slug(it[0] if isinstance(it, tuple) else it)}", [it]) for it in items]
    return [(f"_{k + 1}", items[i:i + per]) for k, i in enumerate(range(0, len(items), per))]


def _figure(plt, n, width, legend_rows, ncols=None, panel_h=None):
    cols = ncols or min(n, PER_FILE[width][1])
    rows = math.ceil(n / cols)
    h = (panel_h or PANEL_H[width]) * rows + 0.16 * legend_rows + (0.08 if legend_rows else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTHS[width], h), squeeze=False, layout="constrained")
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig, handles, width, ncol=None):
    if not handles:
        return
    ncol = ncol or (2 if width == "col" else 4)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=ncol,
               frameon=False, borderaxespad=0.2)


def _legend_rows(n, width, ncol=None):
    return math.ceil(n / (ncol or (2 if width == "col" else 4)))


def _mark_handles(plt, marks):
    """Grey proxies for the marks a figure uses (in this order)."""
    from matplotlib.lines import Line2D

    g = "0.35"
    spec = {
        "round": ("λ-search round (seed 0)", dict(marker="o", ms=3, mfc="white", mec=g, ls="none")),
        "round_fill": ("search round or fill-in",
                       dict(marker="o", ms=3, mfc="white", mec=g, ls="none")),
        "collapsed": ("collapsed run (lower edge)", dict(marker="x", ms=4, color=g, ls="none")),
        "below": ("below the axis (lower edge)", dict(marker=BELOW_MARK, ms=6, color=g, ls="none")),
        "edge": ("past the axis (right edge; its value beside)", dict(marker=">", ms=5, color=g, ls="none")),
        "band": ("± std over seeds", dict(color=g, lw=6, alpha=0.2)),
        "reached": ("round that reached its target", dict(marker="o", ms=4, color=g, ls="none")),
        "target": ("target sparsity", dict(color=g, ls=":", lw=0.8)),
        "missed": ("level missed (lower edge)",
                   dict(marker="o", ms=4, mfc="white", mec=g, ls="none")),
    }
    out = {spec[m][0]: Line2D([], [], **spec[m][1]) for m in marks if m in spec}
    if "edge_collapsed" in marks:     # a ▶ with a white × on it
        out["past the axis and collapsed"] = (Line2D([], [], marker=">", ms=5, color=g, ls="none"),
                                            Line2D([], [], marker="x", ms=3, mew=1.0, color="white", ls="none"))
    return out


def _dense_point(pts, row, epochs=None):
    dense = pts[(pts["row"] == row) & (pts["role"] == "dense")]
    if not len(dense):
        return None
    same = dense[dense["epochs"] == epochs] if epochs is not None else dense.iloc[0:0]
    return (same if len(same) else dense.sort_values("epochs")).iloc[-1]


def _healthy(part):
    return part[part["collapsed"] == 0]


def _xrange(finite, cand, to_x):
    """x limits that bracket the points with a tick on each side (candidates `cand`)."""
    cx = sorted(float(to_x(c)) for c in cand)
    lo_d = float(finite.min()) if len(finite) else 0.0
    hi_d = float(finite.max()) if len(finite) else 1.0
    left = [x for x in cx if x <= lo_d - 0.03] or [cx[0]]
    # past the last candidate (a collapsed round near 100%): the axis still reaches the point
    right = [x for x in cx if x >= hi_d + 0.03] or [hi_d + 0.15]
    return max(-0.05, left[-1] - 0.05), right[0] + 0.05


def _ylim(ys):
    """Axis limits around the healthy values: 8% margin, at least 1 pp, at most 0-100."""
    ys = [y for y in ys if y == y]
    if not ys:
        return 0.0, 100.0
    lo, hi = min(ys), max(ys)
    span = max(hi - lo, 1.0)
    pad = 0.08 * span
    return max(0.0, lo - pad - (span - (hi - lo)) / 2), min(100.0, hi + pad + (span - (hi - lo)) / 2)


def _ylocator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=6, steps=[1, 2, 5, 10], min_n_ticks=4)


def _few_log_labels(axis, lim):
    """A log axis spanning under two decades: matplotlib labels its minor ticks too, in
    scientific notation that overlaps at a column's width; label 1, 2 and 5 of each decade
    in plain numbers instead, the minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(lim)
    if lo <= 0 or math.log10(hi / lo) >= 2:
        return
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


ALWAYS = ("soft_threshold",)     # entries the dynamics and per-layer figures always show


def matched(pts, row, most=2):
    """The points the dynamics and per-layer figures show for one row: xRDA's (the reference,
    elementwise, from scratch) full point nearest its median sparsity, and for each of the
    `most` elementwise baselines nearest to it (in log nonzeros) that baseline's nearest full
    point; the dense model of the same budget. [(role, point)] in drawing order."""
    mine = pts[(pts["row"] == row) & (pts["collapsed"] == 0)]
    full = mine[mine["seeds"] == mine.groupby("entry")["seeds"].transform("max")]
    ref = full[(full["role"] == "reference") & (full["mode"] == "elementwise") & ~full["from_trained"]]
    if not len(ref):
        return []
    ref = ref[ref["entry"] == ref["entry"].iloc[0]].sort_values("sparsity")
    r = ref.iloc[(len(ref) - 1) // 2 if len(ref) % 2 == 0 else len(ref) // 2]
    logn = lambda p: math.log(max((1 - p["sparsity"]) * p["n_weights"], 0.5))
    near = []
    for entry, part in full[(full["role"] == "baseline") & (full["mode"] == "elementwise")].groupby("entry", sort=False):
        dist = [abs(logn(p) - logn(r)) for _, p in part.iterrows()]
        i = int(np.argmin(dist))
        near.append((dist[i], part.iloc[i]))
    near.sort(key=lambda t: t[0])
    # LATS (the soft threshold with its own schedule) always: the baseline xRDA is held against
    keep = near[:most] + [t for t in near[most:] if t[1]["entry"] in ALWAYS]
    out = [("reference", r)] + [("baseline", p) for _, p in keep]
    d = _dense_point(pts, row, int(r["epochs"]))
    return out + ([("dense", d)] if d is not None else [])


def _mean_sd(frames, col):
    import pandas as pd

    m = pd.concat(frames)
    g = m.groupby("epoch")[col]
    return g.mean().index.to_numpy(), g.mean().to_numpy(), g.std().fillna(0).to_numpy()


def _runs_of(df, p):
    return df[df["run"].isin(p["runs"])]
