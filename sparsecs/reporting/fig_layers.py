"""layers_page*: per-layer sparsity of the points figures.matched shows (mean over seeds of
each run's layers.csv, read by reporting/load.py:run_frames), the layers' share of the weights
as grey bars."""
import textwrap

import numpy as np

from . import style
from .figures import SP_CAND, WIDTHS, _groups, _legend, _plt, _record, _runs_of, _save, matched, pct, sp_x, ticks

# characters of an 8-pt title that fit the ~5.9 in between a 7 in page's two y axes (measured:
# 115 characters of it span 6.85 in)
TITLE_CHARS = 95


def _layers_mean(df, p, layer_frames):
    """(mean sparsity per layer over the point's runs, weights per layer, layer types or
    None), or None where a run has no layers.csv or it lacks per-layer counts."""
    import pandas as pd

    frames = [layer_frames.get(run) for run in _runs_of(df, p)["run"]]
    if not frames or any(f is None for f in frames):
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


def layers(df, pts, layer_frames, folder, titles=None, looks=None):
    """Per-layer sparsity of the points of `matched` (mean over seeds of layers.csv:
    `layer_frames`, {run: its layers.csv}), one panel per row; the grey bars show each
    layer's share of the weights."""
    plt = _plt()
    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    rows = [r for r in dict.fromkeys(pts["row"]) if matched(pts, r)
            and any(_layers_mean(df, p, layer_frames) is not None for role, p in matched(pts, r) if role != "dense")]
    paths = []
    for suffix, group in _groups(rows, "page", per=3):
        fig, axes = plt.subplots(len(group), 1, figsize=(WIDTHS["page"], 2.4 * len(group) + 0.35),
                                 squeeze=False, layout="constrained")
        handles = {}
        for ax, row in zip(axes[:, 0], group):
            sel = [(role, p) for role, p in matched(pts, row) if role != "dense"]
            got = _row_lines(ax, df, sel, layer_frames, looks, handles)
            if got is not None:
                _row_axes(ax, *got, titles.get(row, row))
        handles["share of the weights (right axis)"] = _bar_proxy()
        _legend(fig, handles, "page", ncol=2)
        stem = f"layers_page{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig)
    return paths


def _row_lines(ax, df, sel, layer_frames, looks, handles):
    """One row's per-layer lines; (layer names, types, the weights' share per layer, the
    overall sparsity texts), or None when no point has layers."""
    look = looks.figure([(p["method"], p["entry"]) for _, p in sel])
    names, types, overall, share = None, None, [], None
    for role, p in sel:
        got = _layers_mean(df, p, layer_frames)
        if got is None:
            continue
        sp, nw, ty = got
        if names is None:
            names, types = list(sp.index), (None if ty is None else list(ty.reindex(sp.index)))
        kw = look[(p["method"], p["entry"])]
        y = sp_x(sp.reindex(names).clip(upper=0.9999).to_numpy())
        lab = style.mpl(style.label(p["method"], p["entry"]))
        h = ax.plot(range(len(names)), y, color=kw["color"], ls=kw["ls"], marker=kw["marker"], ms=3, lw=0.9)[0]
        handles.setdefault(lab, h)
        overall.append(f"{lab} {pct(p['sparsity'])}")
        share = nw.reindex(names).to_numpy() / nw.sum()
    return None if names is None else (names, types, share, overall)


def _row_axes(ax, names, types, share, overall, title):
    """The weights' share as grey bars on a right axis, ticks, labels and the title."""
    ax2 = ax.twinx()
    ax2.bar(range(len(names)), 100 * share, color="0.6", alpha=0.25, width=0.8, zorder=0)
    ax2.set_ylabel("share of weights (%)", color="0.4")
    ax2.grid(False)
    ax2.tick_params(axis="y", colors="0.4")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    top = float(np.nanmax([line.get_ydata().max() for line in ax.get_lines()] + [1.0]))
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
    # the overall sparsities on lines of their own: in one line with the title they ran past
    # the 7 in page (four methods on ResNet-56 clipped at "soft threshold (LATS) 6")
    ax.set_title(title + "\n" + textwrap.fill("sparsity overall: " + ", ".join(overall), TITLE_CHARS))


def _bar_proxy():
    from matplotlib.patches import Patch

    return Patch(color="0.6", alpha=0.25)
