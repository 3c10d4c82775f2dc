"""threshold_col*: the soft threshold d_t over training (the `threshold` column of the
soft_threshold runs' per-epoch metrics), for each schedule its points nearest the report
levels. Each schedule's d and λ over its budget: threshold_figure.py (thresholds_page)."""
import math

import numpy as np

from . import compare as K
from . import style
from .fig_dynamics import _epoch_metrics
from .figures import FONT, _figure, _groups, _legend, _legend_rows, _mean_sd, _plt, _record, _runs_of, _save, pct


def threshold(df, pts, metrics, folder, titles=None, looks=None):
    """The soft threshold d_t over training (the threshold column of `metrics`, {run: its
    metrics.csv}), mean over seeds, one panel per row: per schedule (entry) its colour and
    marker, and of its points every seed ran the one nearest each report level
    (compare.SPARSITY_LEVELS); each curve names its final sparsity at its end, the legend the
    schedule and the knob it sets (λ or D)."""
    plt = _plt()
    titles = titles or {}
    looks = looks or style.Looks(zip(pts["method"], pts["entry"]))
    st = pts[(pts["method"] == "soft_threshold") & (pts["collapsed"] == 0)]
    st = st[st["seeds"] == st.groupby("entry")["seeds"].transform("max")]
    rows = [row for row in dict.fromkeys(st["row"])
            if any("threshold" in metrics[run].columns for run in _runs_of(df, st[st["row"] == row].iloc[0])["run"])]
    paths = []
    for suffix, group in _groups(rows, "col"):
        row = group[0]
        part = st[st["row"] == row]
        entries = list(dict.fromkeys(zip(part["method"], part["entry"])))
        look = looks.figure(entries)
        fig, (ax,) = _figure(plt, 1, "col", _legend_rows(len(entries), "col", 1), ncols=1)
        handles, ends = {}, []
        for (meth, entry), mine in part.groupby(["method", "entry"], sort=False):
            for _, p in _nearest_levels(mine).iterrows():
                _curve(ax, df, p, metrics, look[(meth, entry)], handles, ends)
        _axes(ax, ends, titles.get(row, row))
        _legend(fig, handles, "col", ncol=1)
        stem = f"threshold_col{suffix}"
        paths += _save(fig, folder, stem)
        _record(stem, fig, curves=len(ends), entries=[(style.label(*e), look[e]["color"], look[e]["marker"])
                                                      for e in entries])
    return paths


def _curve(ax, df, p, metrics, kw, handles, ends):
    """The point's d_t, mean over its seeds; its end (epoch, d, sparsity, colour) to `ends`."""
    frames = [m for m in _epoch_metrics(df, p, metrics) if "threshold" in m.columns]
    if not frames:
        return
    ep, thr, _ = _mean_sd(frames, "threshold")
    h = ax.plot(ep, thr, color=kw["color"], ls=kw["ls"], marker=kw["marker"], ms=2.5,
                markevery=max(1, len(ep) // 6))[0]
    handles.setdefault(f"{style.mpl(style.label(p['method'], p['entry']))} ({_knob(p)})", h)
    ends.append((float(ep[-1]), float(thr[-1]), pct(p["sparsity"]), kw["color"]))


def _axes(ax, ends, title):
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    _end_labels(ax, ends)
    ax.set_xlabel("epoch")
    ax.set_ylabel("threshold $d_t$ (log scale)")
    last = max((e[0] for e in ends), default=1)
    ax.set_xticks([t for t in MaxNLocator(integer=True, min_n_ticks=4).tick_values(1, last) if 1 <= t <= last])
    ax.set_title(f"{title}: soft threshold $d_t$,\nfinal sparsity at each curve's end")


def _nearest_levels(mine):
    """An entry's points nearest each report level (in log nonzeros), each point once."""
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
    ys = _spread([math.log10(e[1]) for e in ends], gap, hi - gap / 2)
    if ys[0] < lo + gap / 2:        # more labels than the panel holds: it grows downwards
        ax.set_ylim(bottom=10 ** (ys[0] - gap / 2))
    x = max(e[0] for e in ends)
    for (_, y, text, color), ly in zip(ends, ys):
        ax.annotate(text, (x, y), xytext=(x + 0.25, 10 ** ly), textcoords="data", fontsize=FONT - 2,
                    color=_readable(color), va="center", ha="left", annotation_clip=False)
    ax.set_xlim(right=x + 1.6)         # room for the labels inside the panel


def _spread(ys, gap, top):
    """Label heights near `ys` (ascending), at least `gap` apart and none above `top`: pushed
    up from the lowest, then down from `top` where the pile went past it."""
    out, prev = [], -math.inf
    for y in ys:
        prev = max(y, prev + gap)
        out.append(prev)
    nxt = math.inf
    for i in range(len(out) - 1, -1, -1):
        nxt = min(out[i], top, nxt - gap)
        out[i] = nxt
    return out


def _readable(color):
    """A light colour (Okabe-Ito yellow) darkened for text on white; others as they are."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return (r * 0.7, g * 0.7, b * 0.7) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.6 else color


def tables_swept(p):
    key = str(p["swept_key"]).split(".")[-1]
    sym = {"lam": "λ", "final_threshold": "D", "target": "target"}.get(key, key)
    try:
        return f"{sym} = {float(p['swept_value']):.3g}"
    except ValueError:
        return f"{sym} = {p['swept_value']}"
