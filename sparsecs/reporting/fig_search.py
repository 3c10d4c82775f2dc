"""search_col*: sparsity against the searched key for every λ search (seed 0's rounds, in
round order), one panel per row and key, the target sparsities as dotted lines."""
import math

import numpy as np

from . import style
from .figures import (FONT, SP_CAND, _few_log_labels, _figure, _groups, _legend, _legend_rows, _mark_handles, _plt,
                      _record, _save, pct, slug, sp_x, ticks)


# a searched config key in words: (axis label, short name in the title)
KNOBS = {"lam": ("ℓ₁ coefficient λ", "λ"), "final_threshold": ("final threshold D", "D"),
         "s_weight_decay": ("STR's threshold weight decay", "the threshold decay"),
         "target": ("target sparsity", "the target")}


def searches(df, folder, search_rows=(), titles=None, looks=None):
    """Sparsity against the searched key for every λ search (seed 0's rounds, in round
    order), one panel per row and key; the target sparsities as dotted lines."""
    plt = _plt()
    titles = titles or {}
    rounds = _rounds(df, search_rows)
    if not len(rounds):
        return []
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
        marks = ["round", "reached", "target"]
        _target_lines(ax, mine)
        handles = _draw_searches(ax, mine, look, reached, marks)
        _axes(ax, mine, key, titles.get(row, row))
        handles.update(_mark_handles(plt, marks))
        if "collapsed_round" in marks:
            from matplotlib.lines import Line2D
            handles["collapsed round"] = Line2D([], [], marker="x", ms=4, color="0.35", ls="none")
        _legend(fig, handles, "col")
        stem = f"search_col{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig)
    return paths


def _rounds(df, search_rows):
    """The search rounds to draw: seed 0's (each entry's first seed), not those on structural MACs."""
    rounds = df[(df["calibration_round"] > 0) & (df["calibration_target"] == df["calibration_target"])]
    # searches on structural MACs (target_metric) are not drawn on this sparsity axis
    on_macs = {r["entry"] for r in search_rows if r.get("metric", "sparsity") != "sparsity"}
    rounds = rounds[~rounds["entry"].isin(on_macs)]
    if not len(rounds):
        return rounds
    return rounds[rounds["seed"] == rounds.groupby("entry")["seed"].transform("min")]


def _target_lines(ax, mine):
    for t in sorted(set(mine["calibration_target"])):
        ax.axhline(float(sp_x(t)), color="0.35", ls=":", lw=0.8)
        # every target line says which it is (a tick may not sit on it)
        ax.annotate(f"target {pct(t)}", (1.0, float(sp_x(t))), xycoords=("axes fraction", "data"),
                    xytext=(-2, 1), textcoords="offset points", ha="right", va="bottom",
                    fontsize=FONT - 2, color="0.3")


def _draw_searches(ax, mine, look, reached, marks):
    """Each entry's searches, one line per target through its rounds (collapsed ones as x,
    the reached round filled); returns the legend handles, and adds to `marks` what it drew."""
    handles = {}
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
    return handles


def _axes(ax, mine, key, title):
    """Log x of the searched key, log-spaced sparsity spanning the rounds and targets, labels."""
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
    ax.set_title(f"{title}:\nsearches of {short} (seed 0)")   # two lines: a column's width
