"""What each threshold schedule does over training (paper B): the soft threshold d and the ℓ1
coefficient it implies, from the per-epoch curves reporting/thresholds.py computes (reporting/load.py reads the runs).

Paper B reads one SGD step on θ followed by re-thresholding as one ISTA step on
L(w) + λ_t‖w‖₁ with λ_t = (d_t − d_{t−1}) / η_t. Per epoch e of a run (d_0 = 0):

    λ_e = (d_e − d_{e−1}) / Σ_{steps s of epoch e} η_s

LATS keeps it constant (d_t = λ Σ η_s); the linear and sine schedules make it grow as the
learning rate falls. metrics.csv holds the threshold after every epoch (`threshold`, written by
SoftThreshold.end_epoch) but only the last learning rate of each epoch, so the epoch's Σ η_s
is recomputed from the run's config.yaml with the schedule the run used (optim/schedules.py:
base lr × lr_scale, warm-up, milestones; steps per epoch from the data set's training images,
train_subset and batch_size), then scaled so that the whole run's Σ η_s is the one its
summary implies (final threshold / λ), should the data set's nominal size differ from the
folder's.

    thresholds_page.{png,pdf}   per row: d / D against epoch (left) and λ_e over its
                                lr-weighted mean D / Σ η (right, log scale: 1 throughout is a
                                constant λ); one run per entry (its first point, lowest seed:
                                both curves are the same for every D of a schedule)

STR's learned thresholds (one per layer, threshold_min / threshold_max in its metrics.csv)
have no one λ and are not drawn.
"""
import math

import numpy as np

from . import figures as F
from . import style
from .thresholds import METHOD


def _runs(df):
    """One (row, entry, schedule, run) per soft_threshold entry: its first point, lowest seed."""
    if "method" not in df.columns:
        return []
    mine = df[df["method"] == METHOD]
    out = []
    for (row, entry), part in mine.groupby(["row", "entry"], sort=False):
        first = part[part["swept_value"] == part["swept_value"].iloc[0]]
        r = first.sort_values("seed").iloc[0]
        sched = r.get("threshold_schedule", "")
        out.append((row, entry, str(sched) if sched == sched and sched else "lats", r))
    return out


CONSTANT = 1e-6      # relative range under which a curve is a constant (rounding noise, not a result)


def flat(values):
    """`values` as drawn: a curve whose relative range is under CONSTANT is its mean, exactly."""
    v = np.asarray(values, dtype=float)
    ok = v[np.isfinite(v)]
    if len(ok) and np.ptp(ok) <= CONSTANT * max(abs(ok).max(), 1e-300):
        return np.where(np.isfinite(v), ok.mean(), v)
    return v


def _lambda_axis(ax, curves):
    """Log scale only where the drawn values span more than a factor 3; a linear axis from 0
    otherwise (a constant λ: one flat line at 1, no '1×10⁰' ticks over a range of 1e-5)."""
    vals = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in curves]) if curves else np.array([])
    if len(vals) and vals.max() / vals.min() > 3:
        ax.set_yscale("log")
        F._few_log_labels(ax.yaxis, (vals.min() / 1.3, vals.max() * 1.3))
    else:
        ax.set_ylim(0, max(2.0, 1.2 * float(vals.max()) if len(vals) else 2.0))


def figure(df, curves, folder, titles=None, looks=None):
    """thresholds_page.{png,pdf} from the soft_threshold runs of the report's table `df`
    (reporting.load.load) and their curves ({run: reporting.thresholds.implied}, read by
    reporting.load.run_frames), at most three rows a file (thresholds_page_2, ...); [] when
    there is none with a threshold. Colours: the report's `looks` (style.Looks)."""
    picked = [(row, entry, sched, r, curves.get(r["run"])) for row, entry, sched, r in _runs(df)]
    picked = [p for p in picked if p[4] is not None]
    if not picked:
        return []
    plt = F._plt()
    titles = titles or (style.row_titles(df) if {"model", "width", "dataset"} <= set(df.columns) else {})
    looks = looks or style.Looks((METHOD, p[1]) for p in picked)
    rows = list(dict.fromkeys(p[0] for p in picked))
    paths = []
    for suffix, group in F._groups(rows, "page", per=3):
        mine = [p for p in picked if p[0] in group]
        fig, axes = F._figure(plt, 2 * len(group), "page", F._legend_rows(len(mine), "page", 1), ncols=2)
        look = looks.figure([(METHOD, p[1]) for p in mine])
        handles = {}
        for i, row in enumerate(group):
            # with several rows a page, the legend names each curve's row: one colour is one
            # method, and its D differs from row to row
            _panel_row(axes[2 * i], axes[2 * i + 1], [p for p in mine if p[0] == row], look, handles,
                       titles.get(row, row), with_row=len(group) > 1)
        F._legend(fig, handles, "page", ncol=1)
        stem = f"thresholds_page{suffix}"
        paths += F._save(fig, folder, stem)
        F._record(stem, fig)
    return paths


def _panel_row(ax_d, ax_l, mine, look, handles, title, with_row=False):
    """One row: d / D against epoch (left), λ_e over its lr-weighted mean (right)."""
    drawn = []
    for _, entry, sched, r, c in mine:
        kw = dict(look[(METHOD, entry)], markevery=max(1, len(c) // 6))
        D = c.attrs["D"]
        mean = D / c["lr_sum"].sum() if c["lr_sum"].sum() > 0 else math.nan
        lab = f"{style.mpl(style.label(METHOD, entry, sched))}: D = {D:.3g}, mean λ = {mean:.3g}"
        lab = f"{title}, {lab}" if with_row else lab
        h = ax_d.plot([0, *c["epoch"]], [0.0, *(c["threshold"] / D)], **kw)[0]      # d_0 = 0
        handles.setdefault(lab, h)
        drawn.append(flat(c["lam"] / mean))
        ax_l.plot(c["epoch"], drawn[-1], **kw)
    ax_d.set_title(f"{title}: the threshold")
    ax_d.set_ylabel("threshold d / final D")
    ax_l.set_title(r"implied $\ell_1$ coefficient $\lambda_e = \Delta d\,/\,\Sigma\eta$ of the epoch")
    ax_l.set_ylabel(r"$\lambda_e$ / (D / $\Sigma\eta$)")
    _lambda_axis(ax_l, drawn)
    ax_l.axhline(1.0, color="#555555", lw=0.6, ls=":")
    for ax in (ax_d, ax_l):
        ax.set_xlabel("epoch")
