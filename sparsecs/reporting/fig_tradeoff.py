"""Accuracy against sparsity (kind nnz: tradeoff_*, ablation_*) or against structural
multiply-adds (kind macs: structured_*), a panel per row, from the report's points
(claims.points); marks past the axis on its edges (reporting/figures.py's docstring)."""
import numpy as np

from sparsecs.optim.base import STRUCTURED_MODES

from . import style
from .figures import (BELOW_MARK, BELOW_PP, EDGE, FONT, MAC_CAND, SP_CAND, _dense_point, _figure, _groups, _healthy,
                      _legend, _legend_rows, _mark_handles, _plt, _record, _save, _xrange, _ylim, _ylocator, mac_x,
                      sp_x, ticks)


def tradeoff(pts, folder, kind="nnz", width="col", name=None, roles=("reference", "baseline"),
             titles=None, looks=None):
    """Accuracy against sparsity (kind nnz) or structural MACs (kind macs), a panel per row, for
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
    axis = Axis(structured)
    paths = []
    for suffix, group in _groups(rows, width):
        entries = list(dict.fromkeys(zip(sel[sel["row"].isin(group)]["method"],
                                         sel[sel["row"].isin(group)]["entry"])))
        look = looks.figure(entries)
        marks, handles, placed = [], {}, []
        n_leg = len(entries) + 1 + 4
        fig, axes = _figure(plt, len(group), width, _legend_rows(n_leg, width))
        for ax, row in zip(axes, group):
            placed += _panel(ax, pts, sel[sel["row"] == row], row, axis, look, marks, handles, titles)
        marks += [m[2] for m in placed]
        if "fill" in marks:      # one legend entry for both open kinds
            marks = [("round" if m == "fill" else m) for m in marks]
            rounds = "round_fill"
        else:
            rounds = "round"
        handles.update(_mark_handles(plt, [rounds if m == "round" else m
                                           for m in ("round", "collapsed", "below", "edge", "edge_collapsed")
                                           if m in marks]))
        _legend(fig, handles, width)
        stem = f"{base}_{width}{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, entries=[(style.label(*e), look[e]["color"], look[e]["marker"]) for e in entries],
                marks=sorted(set(marks)), edge_marks=placed)
    return paths


class Axis:
    """The x axis of a trade-off figure: sparsity, or structural MACs kept (structured)."""

    def __init__(self, structured):
        self.structured = structured
        self.to_x = mac_x if structured else sp_x
        self.cand = MAC_CAND if structured else SP_CAND

    def of(self, part):
        """The points' x values (sparsity, or the share of MACs kept)."""
        return part["mac_frac"] if self.structured else part["sparsity"]


def _panel(ax, pts, mine, row, axis, look, marks, handles, titles):
    """One row's panel: the dense model's line and band, every entry's curve, the marks past
    the axis on its edges, the limits and labels. Returns the edge marks placed."""
    budget = int(mine["epochs"].max())
    ys = _dense_line(ax, _dense_point(pts, row, budget), handles)
    xv = np.asarray(axis.to_x(axis.of(mine)))
    healthy = _healthy(mine)
    ys += list(healthy["acc"] + healthy["acc_sd"].fillna(0)) + list(healthy["acc"] - healthy["acc_sd"].fillna(0))
    # the axis spans what is within BELOW_PP of the best healthy value (or the dense
    # model); anything lower is marked on the lower edge, not allowed to flatten the rest
    ys = [y for y in ys if y == y]
    lo, hi = _ylim([y for y in ys if y >= max(ys, default=100.0) - BELOW_PP])
    # the x axis spans the healthy points: a collapsed run far to the right (99.994%)
    # is an edge marker with its sparsity beside it, not a reason to squeeze the data
    ok = (mine["collapsed"] == 0).to_numpy() & (xv < EDGE)
    x_lo, x_hi = _xrange(xv[ok] if ok.any() else xv[xv < EDGE], axis.cand, axis.to_x)
    x_lo = min(x_lo, _xrange(xv[xv < EDGE], axis.cand, axis.to_x)[0]) if (xv < EDGE).any() else x_lo
    x_edge = x_hi + (0.3 if (xv > x_hi).any() else 0.0)
    lower, right = [], []       # edge marks of every entry, placed together (never hiding)
    for (meth, entry), part in mine.groupby(["method", "entry"], sort=False):
        _entry(ax, part, axis, look[(meth, entry)], style.mpl(style.label(meth, entry)), (lo, x_hi),
               marks, handles, lower, right)
    placed = _lower_marks(ax, lower, lo, hi, x_hi - x_lo) + _right_marks(ax, right, lo, hi, x_edge - 0.08)
    tx, tl = ticks(x_lo, x_hi, axis.cand, axis.to_x)
    ax.set_xticks(tx, tl)
    ax.set_xlim(x_lo, x_edge)
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(_ylocator())
    ax.set_xlabel("structural multiply-adds (% of dense, log-spaced)" if axis.structured
                  else "sparsity of conv + linear weights (log-spaced)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{titles.get(row, row)}, {budget} epochs")
    return placed


def _dense_line(ax, d, handles):
    """The dense model of the row's budget as a dotted line and its ± std band; returns the
    accuracies the y axis must show."""
    if d is None:
        return []
    ys = []
    h = ax.axhline(d["acc"], color=style.DENSE_COLOR, ls=":", lw=1.0)
    handles.setdefault(f"{style.label(d['method'], d['entry'])} (same budget)", h)
    if d["acc_sd"] == d["acc_sd"]:
        ax.axhspan(d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"], color="0.5", alpha=0.15, lw=0)
        ys += [d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"]]
    return ys + [d["acc"]]


def _entry(ax, part, axis, kw, lab, limits, marks, handles, lower, right):
    """One entry's points: a line through those every seed ran, open markers for λ-search
    rounds; collapsed, far-below and past-the-axis points go to `lower` and `right`."""
    lo, x_hi = limits
    part = part.sort_values("sparsity")
    x = np.asarray(axis.to_x(axis.of(part)))
    acc = part["acc"].to_numpy()
    sd = part["acc_sd"].fillna(0).to_numpy()
    full = (part["seeds"] >= part["seeds"].max()).to_numpy()
    fell = (part["collapsed"] > 0).to_numpy()
    edge = x > x_hi
    below = (acc < lo) & ~fell
    line = full & ~fell & ~edge & ~below
    if line.any():
        h = ax.errorbar(x[line], acc[line], yerr=sd[line], capsize=1.5, elinewidth=0.7, color=kw["color"],
                        marker=kw["marker"], ls=kw["ls"], mfc=kw["color"], mec=kw["color"])
        handles.setdefault(lab, h)
    rnd = ~full & ~fell & ~edge & ~below
    if rnd.any():
        h = ax.plot(x[rnd], acc[rnd], ls="none", marker=kw["marker"], ms=2.8, mfc="white",
                    mec=kw["color"], mew=0.7)[0]
        fills = part["fill_in"].to_numpy(dtype=bool) if "fill_in" in part else np.zeros(len(part), bool)
        marks.append("fill" if (rnd & fills).any() else "round")
        handles.setdefault(lab, h)
    for m, sym in (("collapsed", fell & ~edge), ("below", below & ~edge)):
        lower += [(xi, m, kw["color"]) for xi in x[sym]]
    right += [(float(a), bool(f or b), kw["color"], _edge_text(v, axis.structured))
              for a, f, b, v in zip(acc[edge], fell[edge], below[edge], axis.of(part).to_numpy()[edge])]
    if (fell | below | edge).any():
        handles.setdefault(lab, ax.plot([], [], color=kw["color"], marker=kw["marker"], ls=kw["ls"])[0])


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
