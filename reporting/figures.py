"""Figures at the size a paper prints them: saved at exactly 3.5 in (one column) or 7 in (the
page) wide, 8 pt text at that size, PNG at 300 dpi and PDF with TrueType (Type 42) fonts, no
Type 3 (which IEEE PDF eXpress and ACM's checks reject).

    tradeoff_{col,page}*      accuracy against sparsity (elementwise curves)
    ablation_{col,page}*      the same for xRDA and its ablations
    structured_{col,page}*    accuracy against nonzero multiply-adds (structured curves)
    dynamics_page*            accuracy and sparsity per epoch of xRDA, the dense model and the
                              nearest point of the (at most two) nearest baselines, mean and a
                              band of ± std over seeds, on the total-epoch axis
    layers_page*              per-layer sparsity of those same points
    threshold_col*            the soft threshold d_t over training (soft_threshold runs)
    search_col*               sparsity against λ (or D) for every λ search, round by round

A column figure holds one panel (one row of the profile; several rows: one file per row, the
row in the file name), a page figure up to six (more: numbered files). Every mark is in the
legend: filled markers joined by a line are points every seed ran (error bars: std over
seeds); small open markers are λ-search rounds that only seed 0 ran; collapsed runs
(runs.collapsed) sit on the lower edge of the axis as ×, healthy points more than BELOW_PP
below the best as ▼ on that edge, and 100%-sparse points (nothing left) on the right edge as
▶ (with a white × when they also collapsed). The accuracy axis spans the healthy points and
the dense model's band, not 0-100%.

Colours: reporting.style (Okabe-Ito); the threshold figure shades one entry's points along
the cividis map (sequential, readable with colour-vision deficiencies).
"""
import math
import os
import re

import numpy as np

from optim.base import STRUCTURED_MODES
import runs

from . import load as L
from . import style

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
        runs.save_figure(fig, p, dpi=DPI, metadata=meta)    # no bbox_inches="tight": the size is the size
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
        "collapsed": ("collapsed run (lower edge)", dict(marker="x", ms=4, color=g, ls="none")),
        "below": ("below the axis (lower edge)", dict(marker=BELOW_MARK, ms=6, color=g, ls="none")),
        "edge": ("past the axis (right edge; its value beside)", dict(marker=">", ms=5, color=g, ls="none")),
        "band": ("± std over seeds", dict(color=g, lw=6, alpha=0.2)),
        "reached": ("round that reached its target", dict(marker="o", ms=4, color=g, ls="none")),
        "target": ("target sparsity", dict(color=g, ls=":", lw=0.8)),
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


def tradeoff(pts, folder, kind="nnz", width="col", name=None, roles=("reference", "baseline"),
             titles=None, looks=None):
    """Accuracy against sparsity (kind nnz) or nonzero MACs (kind macs), a panel per row, for
    the entries with these roles, the dense model of the row's budget as a dotted line with
    its spread. Returns the paths written."""
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
    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    base = name or ("structured" if structured else "tradeoff")
    to_x = mac_x if structured else sp_x
    cand = MAC_CAND if structured else SP_CAND
    paths = []
    for suffix, group in _groups(rows, width):
        entries = list(dict.fromkeys(zip(sel[sel["row"].isin(group)]["method"],
                                         sel[sel["row"].isin(group)]["entry"])))
        look = looks.figure(entries)
        marks, handles, placed = [], {}, []
        n_leg = len(entries) + 1 + 4
        fig, axes = _figure(plt, len(group), width, _legend_rows(n_leg, width))
        for ax, row in zip(axes, group):
            mine = sel[sel["row"] == row]
            budget = int(mine["epochs"].max())
            d = _dense_point(pts, row, budget)
            ys = []
            if d is not None:
                h = ax.axhline(d["acc"], color=style.DENSE_COLOR, ls=":", lw=1.0)
                handles.setdefault(f"{style.label(d['method'], d['entry'])} (same budget)", h)
                if d["acc_sd"] == d["acc_sd"]:
                    ax.axhspan(d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"], color="0.5", alpha=0.15, lw=0)
                    ys += [d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"]]
                ys.append(d["acc"])
            xv = np.asarray(to_x(mine["mac_frac"] if structured else mine["sparsity"]))
            healthy = _healthy(mine)
            ys += list(healthy["acc"] + healthy["acc_sd"].fillna(0)) + list(healthy["acc"] - healthy["acc_sd"].fillna(0))
            # the axis spans what is within BELOW_PP of the best healthy value (or the dense
            # model); anything lower is marked on the lower edge, not allowed to flatten the rest
            ys = [y for y in ys if y == y]
            lo, hi = _ylim([y for y in ys if y >= max(ys, default=100.0) - BELOW_PP])
            # the x axis spans the healthy points: a collapsed run far to the right (99.994%)
            # is an edge marker with its sparsity beside it, not a reason to squeeze the data
            ok = (mine["collapsed"] == 0).to_numpy() & (xv < EDGE)
            x_lo, x_hi = _xrange(xv[ok] if ok.any() else xv[xv < EDGE], cand, to_x)
            x_lo = min(x_lo, _xrange(xv[xv < EDGE], cand, to_x)[0]) if (xv < EDGE).any() else x_lo
            past = xv > x_hi
            x_edge = x_hi + (0.3 if past.any() else 0.0)
            lower, right = [], []       # edge marks of every entry, placed together (never hiding)
            for (meth, entry), part in mine.groupby(["method", "entry"], sort=False):
                kw = look[(meth, entry)]
                lab = style.mpl(style.label(meth, entry))
                part = part.sort_values("sparsity")
                x = np.asarray(to_x(part["mac_frac"] if structured else part["sparsity"]))
                acc = part["acc"].to_numpy()
                sd = part["acc_sd"].fillna(0).to_numpy()
                full = (part["seeds"] >= part["seeds"].max()).to_numpy()
                fell = (part["collapsed"] > 0).to_numpy()
                edge = x > x_hi
                below = (acc < lo) & ~fell
                line = full & ~fell & ~edge & ~below
                if line.any():
                    h = ax.errorbar(x[line], acc[line], yerr=sd[line], capsize=1.5, elinewidth=0.7,
                                    color=kw["color"], marker=kw["marker"], ls=kw["ls"], mfc=kw["color"],
                                    mec=kw["color"])
                    handles.setdefault(lab, h)
                rnd = ~full & ~fell & ~edge & ~below
                if rnd.any():
                    h = ax.plot(x[rnd], acc[rnd], ls="none", marker=kw["marker"], ms=2.8, mfc="white",
                                mec=kw["color"], mew=0.7)[0]
                    marks.append("round")
                    handles.setdefault(lab, h)
                for m, sym in (("collapsed", fell & ~edge), ("below", below & ~edge)):
                    lower += [(xi, m, kw["color"]) for xi in x[sym]]
                sp = part["mac_frac"] if structured else part["sparsity"]
                right += [(float(a), bool(f or b), kw["color"], _edge_text(v, structured))
                          for a, f, b, v in zip(acc[edge], fell[edge], below[edge], sp.to_numpy()[edge])]
                if (fell | below | edge).any():
                    handles.setdefault(lab, ax.plot([], [], color=kw["color"], marker=kw["marker"], ls=kw["ls"])[0])
            placed += _lower_marks(ax, lower, lo, hi, x_hi - x_lo)
            placed += _right_marks(ax, right, lo, hi, x_edge - 0.08)
            tx, tl = ticks(x_lo, x_hi, cand, to_x)
            ax.set_xticks(tx, tl)
            ax.set_xlim(x_lo, x_edge)
            ax.set_ylim(lo, hi)
            ax.yaxis.set_major_locator(_ylocator())
            ax.set_xlabel("nonzero multiply-adds (% of dense, log-spaced)" if structured
                          else "sparsity of conv + linear weights (log-spaced)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{titles.get(row, row)}, {budget} epochs")
        marks += [m[2] for m in placed]
        handles.update(_mark_handles(plt, [m for m in ("round", "collapsed", "below", "edge", "edge_collapsed")
                                           if m in marks]))
        _legend(fig, handles, width)
        stem = f"{base}_{width}{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, entries=[(style.label(*e), look[e]["color"], look[e]["marker"]) for e in entries],
                marks=sorted(set(marks)), edge_marks=placed)
    return paths


def _edge_text(v, structured):
    """The label beside a right-edge mark: its sparsity (or share of MACs kept)."""
    if structured:
        return f"{100 * v:.3g}%"
    return "100%" if v >= 1 else f"{100 * v:.5g}%"


def _stack(values, gap):
    """A level per value (0, 1, 2, ...) such that two values on one level are at least `gap`
    apart: marks that would cover each other are stacked instead (deterministic, no jitter)."""
    levels, taken = [], []
    for v in values:
        k = 0
        while any(lv == k and abs(v - w) < gap for w, lv in taken):
            k += 1
        taken.append((v, k))
        levels.append(k)
    return levels


def _lower_marks(ax, lower, lo, hi, span):
    """Collapsed (×) and far-below (↓) runs on the lower edge at their x; marks closer than
    2.5% of the axis to another are stacked upward. Returns [(x, y, kind)]."""
    out = []
    step = 0.065 * (hi - lo)
    for (x, m, color), k in zip(lower, _stack([t[0] for t in lower], 0.025 * max(span, 1e-9))):
        y = lo + 0.025 * (hi - lo) + k * step
        ax.plot([x], [y], ls="none", marker="x" if m == "collapsed" else BELOW_MARK, color=color,
                ms=4.5 if m == "collapsed" else 6, clip_on=False, zorder=5)
        out.append((float(x), float(y), m))
    return out


def _right_marks(ax, right, lo, hi, x):
    """Runs past the axis's right end (sparser than every healthy point: a collapse at
    99.994%, an all-zero network) as ▶ on the right edge, with their sparsity beside them; a
    collapsed (or far-below) one at the lower edge with a white × on it. Stacked, never
    covering each other. Returns [(x, y, kind)]."""
    out = []
    ys = [max(lo + 0.025 * (hi - lo), min(a, hi)) if not bad else lo + 0.025 * (hi - lo)
          for a, bad, _, _ in right]
    for (a, bad, color, text), y0, k in zip(right, ys, _stack(ys, 0.07 * (hi - lo))):
        y = y0 + k * 0.07 * (hi - lo)
        ax.plot([x], [y], ls="none", marker=">", color=color, ms=5, clip_on=False, zorder=5)
        if bad:
            ax.plot([x], [y], ls="none", marker="x", color="white", ms=3, mew=1.0, clip_on=False, zorder=6)
        ax.annotate(text, (x, y), xytext=(-5, 0), textcoords="offset points", ha="right", va="center",
                    fontsize=FONT - 2, color=color, annotation_clip=False)
        out.append((float(x), float(y), "edge_collapsed" if bad else "edge"))
    return out


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


# ----------------------------------------------------------------------------- matched points

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


def _epoch_metrics(df, p):
    """Each seed's metrics.csv on the total-epoch axis: a run that starts from another
    (init_from) is shifted by the epochs that run trained (total_epochs - epochs)."""
    out = []
    for _, r in _runs_of(df, p).iterrows():
        m = L.metrics_of(r["folder"])
        m = m.assign(epoch=m["epoch"] + int(r["total_epochs"] - r["epochs"]))
        out.append(m)
    return out


def _parent_metrics(df, p):
    """The metrics of the runs a point's runs start from (init_from), per seed, or []."""
    out = []
    for _, r in _runs_of(df, p).iterrows():
        if not r["init_from"]:
            continue
        hit = df[df["run"] == L.parent_run(r["init_from"])]
        if len(hit):
            out.append(L.metrics_of(hit["folder"].iloc[0]))
    return out


def dynamics(df, pts, folder, titles=None, looks=None):
    """Test accuracy and sparsity per epoch for the points of `matched`: a row of two panels
    per profile row. A run started from a trained dense model (init_from) is drawn from the
    epoch its budget starts at, its dense start as a thin line of the same colour."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    rows = [r for r in dict.fromkeys(pts["row"]) if matched(pts, r)]
    if not rows:
        return []
    paths = []
    for suffix, group in _groups(rows, "page", per=3):
        # a subfigure per row, its legend below its two panels: never over the curves
        fig = plt.figure(figsize=(WIDTHS["page"], 2.75 * len(group)), layout="constrained")
        subs = fig.subfigures(len(group), 1, squeeze=False)[:, 0]
        axes = np.array([sf.subplots(1, 2) for sf in subs])
        drawn, panels, curves = [], [], []
        for (ax_a, ax_s), row, sf in zip(axes, group, subs):
            marks = set()
            sel = matched(pts, row)
            look = looks.figure([(p["method"], p["entry"]) for _, p in sel])
            ref = sel[0][1]
            top, s_top = 0, 1.0
            for role, p in sel:
                kw = look[(p["method"], p["entry"])]
                frames = _epoch_metrics(df, p)
                ep, acc, sd = _mean_sd(frames, "test_acc")
                _, sp, _ = _mean_sd(frames, "sparsity")
                top = max(top, int(ep.max()))
                s_top = max(s_top, float(np.max(sp_x(np.clip(sp, 0, 0.9999)))))
                lab = style.mpl(style.label(p["method"], p["entry"]))
                lab += f" ({pct(p['sparsity'])})" if role != "dense" else " (0%)"
                ls = ":" if role == "dense" else kw["ls"]
                parent = _parent_metrics(df, p)
                if parent:
                    pe, pa, _ = _mean_sd(parent, "test_acc")
                    ax_a.plot(list(pe) + [ep[0]], list(pa) + [acc[0]], color=kw["color"], lw=0.6, ls="--", alpha=0.7)
                    marks.add("parent")
                ax_a.plot(ep, acc, color=kw["color"], ls=ls, marker=kw["marker"], ms=3,
                          markevery=max(1, len(ep) // 8), label=lab)
                if len(frames) > 1:
                    ax_a.fill_between(ep, acc - sd, acc + sd, color=kw["color"], alpha=0.2, lw=0)
                    marks.add("band")
                ax_s.plot(ep, sp_x(sp), color=kw["color"], ls=ls, marker=kw["marker"], ms=3,
                          markevery=max(1, len(ep) // 8))
                drawn.append((lab, kw["color"]))
            panels.append(drawn[-len(sel):])
            n_seeds = int(ref["seeds"])
            nb = sum(1 for role, _ in sel if role == "baseline")
            ax_a.set_title(f"{titles.get(row, row)}: xRDA at {pct(ref['sparsity'])} sparse"
                           + (f" and the nearest point of {nb} baseline{'s' if nb != 1 else ''}" if nb else "")
                           + (f" ({n_seeds} seeds)" if n_seeds > 1 else " (one seed)"))
            ax_a.set_ylabel("test accuracy (%)")
            handles = dict(zip(*ax_a.get_legend_handles_labels()[::-1]))
            curves.append(len(handles))
            handles.update(_dynamics_keys(marks))
            sf.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=4,
                      frameon=False, title="final sparsity", title_fontsize=FONT - 1)
            tx, tl = ticks(0.0, s_top + 0.1, SP_CAND, sp_x, most=6)
            ax_s.set_yticks(tx, tl)
            ax_s.set_ylim(-0.05, s_top + 0.15)
            ax_s.set_ylabel("sparsity (log-spaced)")
            for ax in (ax_a, ax_s):
                ax.set_xlabel("epoch of the total budget")
                ax.set_xlim(0.5, top + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=4))
        stem = f"dynamics_page{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, panels=panels, curves=curves)
    return paths


def _dynamics_keys(marks):
    """Grey legend proxies for the band and the parent line, where a row draws them."""
    from matplotlib.lines import Line2D

    keys = {"band": ("± std over seeds (band)", dict(color="0.35", lw=6, alpha=0.2)),
            "parent": ("thin dashed: the dense run it starts from", dict(color="0.35", lw=0.6, ls="--"))}
    return {keys[m][0]: Line2D([], [], **keys[m][1]) for m in ("band", "parent") if m in marks}


def _layers_mean(df, p):
    import pandas as pd

    frames = []
    for f in _runs_of(df, p)["folder"]:
        try:
            frames.append(pd.read_csv(os.path.join(f, "layers.csv")))
        except OSError:
            return None
    if not frames:
        return None
    m = pd.concat(frames)
    if "sparsity" not in m.columns and {"nnz", "n_weights"} <= set(m.columns):
        m = m.assign(sparsity=1 - m["nnz"] / m["n_weights"].clip(lower=1))
    if not {"layer", "sparsity", "n_weights"} <= set(m.columns):
        return None          # a layers.csv without per-layer counts
    g = m.groupby("layer", sort=False)
    types = g["type"].first() if "type" in m.columns else None
    return g["sparsity"].mean(), g["n_weights"].first(), types


def layer_ticks(names, types=None):
    """Tick labels of the per-layer axis: the layer's position (1 = the input layer), 'fc'
    for a linear layer (layers.csv's type)."""
    types = list(types) if types is not None else [""] * len(names)
    return ["fc" if t == "Linear" else str(i + 1) for i, t in enumerate(types)]


def layers(df, pts, folder, titles=None, looks=None):
    """Per-layer sparsity of the points of `matched` (mean over seeds of layers.csv), one
    panel per row; the grey bars show each layer's share of the weights."""
    plt = _plt()
    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    rows = [r for r in dict.fromkeys(pts["row"]) if matched(pts, r)
            and any(_layers_mean(df, p) is not None for role, p in matched(pts, r) if role != "dense")]
    paths = []
    for suffix, group in _groups(rows, "page", per=3):
        fig, axes = plt.subplots(len(group), 1, figsize=(WIDTHS["page"], 2.4 * len(group) + 0.35),
                                 squeeze=False, layout="constrained")
        handles = {}
        for ax, row in zip(axes[:, 0], group):
            sel = [(role, p) for role, p in matched(pts, row) if role != "dense"]
            look = looks.figure([(p["method"], p["entry"]) for _, p in sel])
            names, types, overall = None, None, []
            for role, p in sel:
                got = _layers_mean(df, p)
                if got is None:
                    continue
                sp, nw, ty = got
                if names is None:
                    names, types = list(sp.index), (None if ty is None else list(ty.reindex(sp.index)))
                kw = look[(p["method"], p["entry"])]
                y = sp_x(sp.reindex(names).clip(upper=0.9999).to_numpy())
                lab = style.mpl(style.label(p["method"], p["entry"]))
                h = ax.plot(range(len(names)), y, color=kw["color"], ls=kw["ls"], marker=kw["marker"], ms=3,
                            lw=0.9)[0]
                handles.setdefault(lab, h)
                overall.append(f"{lab} {pct(p['sparsity'])}")
                share = nw.reindex(names).to_numpy() / nw.sum()
            if names is None:
                continue
            ax2 = ax.twinx()
            ax2.bar(range(len(names)), 100 * share, color="0.6", alpha=0.25, width=0.8, zorder=0)
            ax2.set_ylabel("share of weights (%)", color="0.4")
            ax2.grid(False)
            ax2.tick_params(axis="y", colors="0.4")
            ax.set_zorder(ax2.get_zorder() + 1)
            ax.patch.set_visible(False)
            top = float(np.nanmax([l.get_ydata().max() for l in ax.get_lines()] + [1.0]))
            tx, tl = ticks(0.0, top + 0.1, SP_CAND, sp_x, most=6)
            ax.set_yticks(tx, tl)
            ax.set_ylim(-0.05, top + 0.2)
            labels = layer_ticks(names, types)
            every = 1 if len(names) <= 30 else 5        # many layers: every 5th labelled
            keep = [i for i in range(len(names)) if labels[i] == "fc" or (i + 1) % every == 0 or i == 0]
            ax.set_xticks(keep, [labels[i] for i in keep])
            ax.set_xticks(range(len(names)), minor=True)
            ax.set_xlim(-0.6, len(names) - 0.4)
            ax.set_xlabel("conv / linear layer, input to output")
            ax.set_ylabel("sparsity (log-spaced)")
            ax.set_title(f"{titles.get(row, row)}; sparsity overall: " + ", ".join(overall))
        handles["share of the weights (right axis)"] = _bar_proxy()
        _legend(fig, handles, "page", ncol=2)
        stem = f"layers_page{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig)
    return paths


def _bar_proxy():
    from matplotlib.patches import Patch

    return Patch(color="0.6", alpha=0.25)


def threshold(df, pts, folder, titles=None, looks=None):
    """The soft threshold d_t over training (metrics.csv's threshold column), mean over seeds,
    one panel per row: per schedule (entry) its colour and marker, and of its points every
    seed ran the one nearest each report level (compare.SPARSITY_LEVELS); each curve names its
    final sparsity at its end, the legend the schedule and the knob it sets (λ or D)."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    st = pts[(pts["method"] == "soft_threshold") & (pts["collapsed"] == 0)]
    st = st[st["seeds"] == st.groupby("entry")["seeds"].transform("max")]
    rows = []
    for row in dict.fromkeys(st["row"]):
        part = st[st["row"] == row]
        if any("threshold" in L.metrics_of(f).columns for f in _runs_of(df, part.iloc[0])["folder"]):
            rows.append(row)
    paths = []
    for suffix, group in _groups(rows, "col"):
        row = group[0]
        part = st[st["row"] == row]
        entries = list(dict.fromkeys(zip(part["method"], part["entry"])))
        look = looks.figure(entries)
        fig, (ax,) = _figure(plt, 1, "col", _legend_rows(len(entries), "col", 1), ncols=1)
        handles, ends = {}, []
        for (meth, entry), mine in part.groupby(["method", "entry"], sort=False):
            kw = look[(meth, entry)]
            for _, p in _nearest_levels(mine).iterrows():
                frames = [m for m in _epoch_metrics(df, p) if "threshold" in m.columns]
                if not frames:
                    continue
                ep, thr, _ = _mean_sd(frames, "threshold")
                h = ax.plot(ep, thr, color=kw["color"], ls=kw["ls"], marker=kw["marker"], ms=2.5,
                            markevery=max(1, len(ep) // 6))[0]
                handles.setdefault(f"{style.mpl(style.label(meth, entry))} ({_knob(p)})", h)
                ends.append((float(ep[-1]), float(thr[-1]), pct(p["sparsity"]), kw["color"]))
        ax.set_yscale("log")
        _end_labels(ax, ends)
        ax.set_xlabel("epoch")
        ax.set_ylabel("threshold $d_t$ (log scale)")
        last = max((e[0] for e in ends), default=1)
        ax.set_xticks([t for t in MaxNLocator(integer=True, min_n_ticks=4).tick_values(1, last) if 1 <= t <= last])
        ax.set_title(f"{titles.get(row, row)}: soft threshold $d_t$,\nfinal sparsity at each curve's end")
        _legend(fig, handles, "col", ncol=1)
        stem = f"threshold_col{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, curves=len(ends), entries=[(style.label(*e), look[e]["color"], look[e]["marker"])
                                                      for e in entries])
    return paths


def _nearest_levels(mine):
    """An entry's points nearest each report level (in log nonzeros), each point once."""
    from . import compare as K

    keep = []
    for lv in K.SPARSITY_LEVELS:
        d = (np.log10(1 - mine["sparsity"].clip(upper=1 - 1e-6)) - math.log10(1 - lv)).abs()
        i = d.idxmin()
        if d[i] < 0.15 and i not in keep:        # within 0.15 decades of nonzeros (90% vs 93%)
            keep.append(i)
    return mine.loc[sorted(keep, key=lambda i: mine.loc[i, "sparsity"])]


def _knob(p):
    """'searched λ' or 'searched D': the knob that set the point's level."""
    return "searched " + tables_swept(p).split(" = ")[0]


def _end_labels(ax, ends):
    """Each curve's final sparsity beside its last point, pushed apart (in log y) so that no
    two overlap."""
    if not ends:
        return
    ends = sorted(ends, key=lambda t: t[1])
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    gap = 0.075 * (hi - lo)
    ys, prev = [], -math.inf
    for _, y, _, _ in ends:
        prev = max(math.log10(y), prev + gap)
        ys.append(prev)
    x = max(e[0] for e in ends)
    for (_, y, text, color), ly in zip(ends, ys):
        ax.annotate(text, (x, y), xytext=(x + 0.25, 10 ** ly), textcoords="data", fontsize=FONT - 2,
                    color=color, va="center", ha="left", annotation_clip=False)
    ax.set_xlim(right=x + 1.6)         # room for the labels inside the panel


def tables_swept(p):
    key = str(p["swept_key"]).split(".")[-1]
    sym = {"lam": "λ", "final_threshold": "D", "target": "target"}.get(key, key)
    try:
        return f"{sym} = {float(p['swept_value']):.3g}"
    except ValueError:
        return f"{sym} = {p['swept_value']}"


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


# a searched config key in words: (axis label, short name in the title)
KNOBS = {"lam": ("ℓ₁ coefficient λ", "λ"), "final_threshold": ("final threshold D", "D"),
         "s_weight_decay": ("STR's threshold weight decay", "the threshold decay"),
         "target": ("target sparsity", "the target")}


def searches(df, folder, search_rows=(), titles=None, looks=None):
    """Sparsity against the searched key for every λ search (seed 0's rounds, in round
    order), one panel per row and key; the target sparsities as dotted lines."""
    plt = _plt()
    titles = titles or {}
    rounds = df[(df["calibration_round"] > 0) & (df["calibration_target"] == df["calibration_target"])]
    # searches on structural MACs (target_metric) are not drawn on this sparsity axis
    on_macs = {r["entry"] for r in search_rows if r.get("metric", "sparsity") != "sparsity"}
    rounds = rounds[~rounds["entry"].isin(on_macs)]
    if not len(rounds):
        return []
    rounds = rounds[rounds["seed"] == rounds.groupby("entry")["seed"].transform("min")]
    looks = looks or style.Looks(zip(df["method"], df["entry"]))
    reached = {(r["entry"], r["target"]): r for r in search_rows if r["status"] == "reached"}
    panels = list(dict.fromkeys(zip(rounds["row"], rounds["swept_key"])))
    paths = []
    for suffix, group in _groups(panels, "col"):
        row, key = group[0]
        if len(panels) > 1:   # one file per row and searched key (λ, D, STR's decay): never the same name
            suffix = f"_{slug(row)}" + (f"_{slug(key.split('.')[-1])}" if
                                        sum(r == row for r, _ in panels) > 1 else "")
        mine = rounds[(rounds["row"] == row) & (rounds["swept_key"] == key)]
        entries = list(dict.fromkeys(zip(mine["method"], mine["entry"])))
        look = looks.figure(entries)
        fig, (ax,) = _figure(plt, 1, "col", _legend_rows(len(entries) + 4, "col"))
        handles, marks = {}, ["round", "reached", "target"]
        for t in sorted(set(mine["calibration_target"])):
            ax.axhline(float(sp_x(t)), color="0.35", ls=":", lw=0.8)
            # every target line says which it is (a tick may not sit on it)
            ax.annotate(f"target {pct(t)}", (1.0, float(sp_x(t))), xycoords=("axes fraction", "data"),
                        xytext=(-2, 1), textcoords="offset points", ha="right", va="bottom",
                        fontsize=FONT - 2, color="0.3")
        for (meth, entry), part in mine.groupby(["method", "entry"], sort=False):
            kw = look[(meth, entry)]
            for t, srch in part.groupby("calibration_target", sort=True):
                srch = srch.sort_values("calibration_round")
                x = srch["swept_value"].astype(float).to_numpy()
                y = sp_x(srch["sparsity"].clip(upper=0.9999))
                fell = srch["collapsed"].to_numpy(bool)
                ax.plot(x, y, color=kw["color"], lw=0.6, alpha=0.6)
                ok = ~fell
                ax.plot(x[ok], y[ok], ls="none", marker=kw["marker"], ms=3.2, mfc="white", mec=kw["color"], mew=0.8)
                if fell.any():
                    ax.plot(x[fell], y[fell], ls="none", marker="x", ms=4, color=kw["color"])
                    marks.append("collapsed_round")
                hit = reached.get((entry, t))
                if hit is not None:
                    j = np.argmin(np.abs(np.log(x) - math.log(hit["value"])))
                    ax.plot([x[j]], [y[j]], ls="none", marker=kw["marker"], ms=4, color=kw["color"])
            handles[style.mpl(style.label(meth, entry))] = ax.plot([], [], color=kw["color"], marker=kw["marker"],
                                                                   lw=0.6)[0]
        ax.set_xscale("log")
        _few_log_labels(ax.xaxis, ax.get_xlim())
        all_y = sp_x(mine["sparsity"].clip(upper=0.9999))
        lo = min(float(np.min(all_y)), float(sp_x(min(mine["calibration_target"])))) - 0.1
        hi = max(float(np.max(all_y)), float(sp_x(max(mine["calibration_target"])))) + 0.1
        tx, tl = ticks(lo, hi, SP_CAND, sp_x)
        ax.set_yticks(tx, tl)
        ax.set_ylim(lo, hi)
        sym, short = KNOBS.get(key.split(".")[-1], (key.split(".")[-1].replace("_", " "),) * 2)
        ax.set_xlabel(f"{style.mpl(sym)}, log scale\n(config key {key})")      # two lines: never clipped
        ax.set_ylabel("sparsity (log-spaced)")
        ax.set_title(f"{titles.get(row, row)}:\nsearches of {short} (seed 0)")   # two lines: a column's width
        handles.update(_mark_handles(plt, marks))
        if "collapsed_round" in marks:
            from matplotlib.lines import Line2D
            handles["collapsed round"] = Line2D([], [], marker="x", ms=4, color="0.35", ls="none")
        _legend(fig, handles, "col")
        stem = f"search_col{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig)
    return paths
