"""dynamics_page*: test accuracy and sparsity per epoch of the points figures.matched shows,
mean and a band of ± std over seeds, on the total-epoch axis, from the per-epoch metrics
reporting/load.py:run_frames read (`metrics`: {run: its metrics.csv})."""
import numpy as np

from . import style
from .figures import FONT, SP_CAND, WIDTHS, _groups, _mean_sd, _plt, _record, _runs_of, _save, matched, pct, sp_x, ticks
from .load import parent_run


def _epoch_metrics(df, p, metrics):
    """Each seed's metrics on the total-epoch axis: a run that starts from another
    (init_from) is shifted by the epochs that run trained (total_epochs - epochs)."""
    out = []
    for _, r in _runs_of(df, p).iterrows():
        m = metrics[r["run"]]
        out.append(m.assign(epoch=m["epoch"] + int(r["total_epochs"] - r["epochs"])))
    return out


def _parent_metrics(df, p, metrics):
    """The metrics of the runs a point's runs start from (init_from), per seed, or []."""
    out = []
    for _, r in _runs_of(df, p).iterrows():
        if r["init_from"] and parent_run(r["init_from"]) in metrics:
            out.append(metrics[parent_run(r["init_from"])])
    return out


def dynamics(df, pts, metrics, folder, titles=None, looks=None):
    """Test accuracy and sparsity per epoch for the points of `matched`: a row of two panels
    per profile row. A run started from a trained dense model (init_from) is drawn from the
    epoch its budget starts at, its dense start as a thin line of the same colour."""
    plt = _plt()
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
            sel = matched(pts, row)
            marks, top, s_top = _row_curves(ax_a, ax_s, df, sel, metrics, looks, drawn)
            panels.append(drawn[-len(sel):])
            curves.append(_row_axes(ax_a, ax_s, sf, sel, marks, top, s_top, titles.get(row, row)))
        stem = f"dynamics_page{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, panels=panels, curves=curves)
    return paths


def _row_curves(ax_a, ax_s, df, sel, metrics, looks, drawn):
    """One row's curves (accuracy left, sparsity right); appends (label, colour) to `drawn`.
    Returns (the marks it used, the last epoch, the highest sparsity on the axis)."""
    marks, top, s_top = set(), 0, 1.0
    look = looks.figure([(p["method"], p["entry"]) for _, p in sel])
    for role, p in sel:
        kw = look[(p["method"], p["entry"])]
        frames = _epoch_metrics(df, p, metrics)
        ep, acc, sd = _mean_sd(frames, "test_acc")
        _, sp, _ = _mean_sd(frames, "sparsity")
        top = max(top, int(ep.max()))
        s_top = max(s_top, float(np.max(sp_x(np.clip(sp, 0, 0.9999)))))
        lab = style.mpl(style.label(p["method"], p["entry"]))
        lab += f" ({pct(p['sparsity'])})" if role != "dense" else " (0%)"
        ls = ":" if role == "dense" else kw["ls"]
        parent = _parent_metrics(df, p, metrics)
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
    return marks, top, s_top


def _row_axes(ax_a, ax_s, sf, sel, marks, top, s_top, title):
    """One row's title, legend (below its panels), ticks and limits; returns its curve count."""
    from matplotlib.ticker import MaxNLocator

    ref = sel[0][1]
    n_seeds = int(ref["seeds"])
    nb = sum(1 for role, _ in sel if role == "baseline")
    ax_a.set_title(f"{title}: xRDA at {pct(ref['sparsity'])} sparse"
                   + (f" and the nearest point of {nb} baseline{'s' if nb != 1 else ''}" if nb else "")
                   + (f" ({n_seeds} seeds)" if n_seeds > 1 else " (one seed)"))
    ax_a.set_ylabel("test accuracy (%)")
    handles = dict(zip(*ax_a.get_legend_handles_labels()[::-1]))
    n = len(handles)
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
    return n


def _dynamics_keys(marks):
    """Grey legend proxies for the band and the parent line, where a row draws them."""
    from matplotlib.lines import Line2D

    keys = {"band": ("± std over seeds (band)", dict(color="0.35", lw=6, alpha=0.2)),
            "parent": ("thin dashed: the dense run it starts from", dict(color="0.35", lw=0.6, ls="--"))}
    return {keys[m][0]: Line2D([], [], **keys[m][1]) for m in ("band", "parent") if m in marks}
