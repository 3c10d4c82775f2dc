"""Accuracy at each sparsity level against the training budget: a panel per level, the
budgets (epochs, log-spaced) on x, one line per method with its seed spread (mean ± std over
seeds), the dense model of each budget in black. A budget at which a method has no value at
the level (its search missed it, a seed stops short) is its marker, hollow, on the lower
edge. Methods stand side by side around each budget's tick (a small step in log-x) so that
coinciding points stay visible. Reads the frame reporting/budget.frame builds (never run folders); looks from
reporting/style.py, sizes and saving from reporting/figures.py."""
import numpy as np

from . import figures as F
from . import style


def figure(fr, folder, looks=None, name="budget"):
    """Write FOLDER/<name>_{col,page}.{png,pdf}; returns the paths ([] for an empty frame or
    one budget only: nothing to draw against)."""
    if fr is None or fr.empty or fr["epochs"].nunique() < 2:
        return []
    looks = looks or style.Looks(zip(fr["method"], fr["entry"]), dict(zip(fr["entry"], fr["role"])))
    return draw(fr, folder, looks, "page", name) + draw(fr, folder, looks, "col", name)


def draw(fr, folder, looks, width, name):
    plt = F._plt()
    lvls = sorted(fr["level"].unique())
    entries = list(dict.fromkeys(zip(fr["method"], fr["entry"])))
    look = looks.figure(entries)
    budgets = sorted(int(e) for e in fr["epochs"].unique())
    ncols = min(len(lvls), 2)
    n_marks = int(fr["acc"].isna().any())      # the legend's "level missed" entry
    fig, axes = F._figure(plt, len(lvls), width, F._legend_rows(len(entries) + n_marks, width), ncols=ncols)
    handles, missed = {}, []
    # side by side in log-x (a step of 4%): methods whose points coincide at a budget (xRDA and
    # the sine schedule at 98%, 32 epochs) stay visible; dense, one per budget, stays on its tick
    sparse = [e for e in entries if not _dense(fr, e)]
    dodge = {e: DODGE ** (sparse.index(e) - (len(sparse) - 1) / 2) if e in sparse else 1.0 for e in entries}
    for ax, lv in zip(axes, lvls):
        mine = fr[fr["level"] == lv]
        shown = mine[mine["acc"].notna()]
        for meth, entry in entries:
            part = shown[(shown["method"] == meth) & (shown["entry"] == entry)].sort_values("epochs")
            if part.empty:
                continue
            kw = look[(meth, entry)]
            dense = part["role"].iloc[0] == "dense"
            # a line joins only budgets with a value: a budget that missed the level is a gap
            h = ax.errorbar(part["epochs"] * dodge[(meth, entry)], part["acc"], yerr=part["sd"].fillna(0).to_numpy(), capsize=1.5,
                            elinewidth=0.7, color=kw["color"], marker=kw["marker"], mfc=kw["color"],
                            mec=kw["color"], ls=":" if dense else kw["ls"])
            handles.setdefault(style.mpl(style.label(meth, entry)), h)
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlim(budgets[0] / 1.3, budgets[-1] * 1.3)
        ys = np.concatenate([(shown["acc"] - shown["sd"].fillna(0)).to_numpy(),
                             (shown["acc"] + shown["sd"].fillna(0)).to_numpy()])
        ax.set_ylim(*(F._ylim(list(ys)) if len(ys) else (0.0, 100.0)))
        lo, hi = ax.get_ylim()
        gone = mine[mine["acc"].isna()]
        for _, r in gone.iterrows():   # the level missed: its own marker, hollow, on the lower edge
            e = (r["method"], r["entry"])
            kw = look[e]
            ax.plot([r["epochs"] * dodge[e]], [lo + 0.03 * (hi - lo)], marker=kw["marker"], ms=4, mfc="white",
                    mec=kw["color"], mew=1.0, ls="none", clip_on=False, zorder=5)
            missed.append((F.pct(lv), style.label(r["method"], r["entry"]), int(r["epochs"])))
        ax.set_xlabel("training epochs")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{F.pct(lv)} sparse")
    if missed:
        handles.update(F._mark_handles(plt, ["missed"]))
    F._legend(fig, handles, width)
    stem = f"{name}_{width}"
    paths = F._save(fig, folder, stem)
    F._record(stem, fig, entries=[(style.label(*e), look[e]["color"], look[e]["marker"]) for e in entries],
              missed=missed, dodge={style.label(*e): dodge[e] for e in entries})
    return paths


DODGE = 1.04


def _dense(fr, e):
    return (fr[(fr["method"] == e[0]) & (fr["entry"] == e[1])]["role"] == "dense").any()
