"""Sound comparisons between sparse-training methods: pure functions on per-seed numbers.

A method's curve is its sweep inside one row (one λ, D or target per point, several seeds
per point). Curves are compared at fixed sparsity levels, by interpolating each seed's
accuracy linearly against log(nonzero weights) between the two points of its sweep that
bracket the level, never outside the range the sweep covers (as sparse-training papers
report accuracy at 90/95/98/99%). Structured modes are compared at fixed fractions of
multiply-adds the same way. Points of two curves count as matched only within MATCH_TOL in
log nonzeros. Every comparison is a win, a loss, inconclusive or not measurable:

  * the noise of a mean accuracy has two parts: the spread over seeds (s^2 / n) and the test
    set's own sampling error, which every seed shares (all seeds are scored on the same N_test
    images, so the seed spread does not contain it). A difference of two means has both
    sides' seed parts in its variance, and a test-set part:
      - paired, where every run on both sides saved its per-image predictions: both sides are
        scored on the same images, so the test-set part is the sampling variance of the mean
        per-image difference, var(d) / N with d_i = (side a's mean score on image i) - (side
        b's): for two single models with correctness vectors c_a, c_b, d = c_a - c_b and
        var(d) = mean(d^2) - mean(d)^2, which only the images they disagree on (discordant
        pairs) make nonzero. A seed's score at a level is its accuracy along its sweep, so
        its per-image score is the same combination of its runs' correctness (an interpolated
        level: the two bracketing runs, weighted as the accuracies are): the paired variance
        is that of the very numbers compared, interpolated or not;
      - unpaired otherwise (runs from before predictions.npy): p_a(1 - p_a)/N + p_b(1 - p_b)/N,
        the two sides' binomial variances added as if independent (conservative: two models
        agree on most images, so the true variance of the difference is smaller);
  * a difference smaller than RESOLUTION standard errors of the test-set part alone is "not
    measurable at this scale" (the test set cannot tell it from zero, whatever the seeds say);
  * two or more seeds on both sides: a two-sided t-test of the difference with that variance
    (Welch-Satterthwaite degrees of freedom; the test-set terms count as known), at ALPHA after
    Holm's correction over the levels of one comparison; p is 0 only when the variance is;
  * fewer: the difference must exceed ONE_SEED_BAND (measured: the same config and seed on
    two machines differed by up to 2.4 pp at the 75th percentile), and the verdict is only
    "suggestive".
"""
import math

import numpy as np

from sparsecs.evidence import COVER_TOL, MATCH_TOL  # noqa: F401  (the tolerances sweeping aims by too)

SPARSITY_LEVELS = (0.9, 0.95, 0.98, 0.99, 0.995)    # fraction of weights that are zero
MAC_LEVELS = (0.5, 0.3, 0.2, 0.1)                    # fraction of dense multiply-adds kept
ALPHA = 0.05
ONE_SEED_BAND = 2.4      # pp; see the module docstring

RESOLUTION = 2.0         # standard errors of the test set's part below which a difference is unmeasurable

WIN, LOSS, INCONCLUSIVE = "win", "loss", "inconclusive"
UNMEASURABLE = "not measurable at this scale"
NOT_TESTABLE = "not testable at this budget"   # the runs are outside the claim's regime (papers.Regime)


def test_var(acc, n_test):
    """Variance (pp^2) of an accuracy measured on n_test images: p(1 - p) / N (0 if N unknown)."""
    if not n_test:
        return 0.0
    p = min(max(float(acc) / 100.0, 0.0), 1.0)
    return 1e4 * p * (1.0 - p) / n_test


def paired_var(d):
    """Variance (pp^2) of the mean of per-image differences `d` (fractions of an image, e.g.
    c_a - c_b of two correctness vectors): (mean(d^2) - mean(d)^2) / N."""
    d = np.asarray(d, float)
    if not len(d):
        return 0.0
    return 1e4 * max(float(np.mean(d * d)) - float(np.mean(d)) ** 2, 0.0) / len(d)


def resolution(mean_a, mean_b, n_test, paired=None):
    """The smallest difference (pp) the test set resolves between two mean accuracies
    (`paired`: the per-image differences, see paired_var)."""
    known = paired_var(paired) if paired is not None else test_var(mean_a, n_test) + test_var(mean_b, n_test)
    return RESOLUTION * math.sqrt(known)


def holm(pvalues):
    """Holm's step-down adjusted p-values (same order; NaN stays NaN)."""
    idx = [i for i, p in enumerate(pvalues) if p == p]
    order = sorted(idx, key=lambda i: pvalues[i])
    out, running, m = list(pvalues), 0.0, len(idx)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def interpolate(xs, ys, x, tol=COVER_TOL):
    """y at x on the polyline through (xs, ys) (any order), or NaN outside [min xs - tol,
    max xs + tol]; within tol of an end, the end's y (never extrapolated)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 0 or not (xs.min() - tol - 1e-12 <= x <= xs.max() + tol + 1e-12):
        return math.nan
    x = min(max(x, xs.min()), xs.max())
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    # equal x (two points of one seed at the same sparsity): average them
    ux = np.unique(xs)
    uy = np.array([ys[xs == u].mean() for u in ux])
    if len(ux) == 1:
        return float(uy[0])
    return float(np.interp(x, ux, uy))


def log_nnz(sparsity, n_weights):
    """log of the nonzero count; a fully sparse model gets half a weight (finite, leftmost)."""
    return math.log(max((1.0 - sparsity) * n_weights, 0.5))


def at_levels(points, levels, x_of_level):
    """Per level: the list of per-seed interpolated accuracies (seeds whose sweep covers it).

    points: iterable of (seed, x, acc) for one curve; x_of_level(level) -> x."""
    by_seed = {}
    for seed, x, acc in points:
        by_seed.setdefault(seed, []).append((x, acc))
    out = {}
    for level in levels:
        x = x_of_level(level)
        vals = [interpolate([p[0] for p in pts], [p[1] for p in pts], x) for pts in by_seed.values()]
        out[level] = [v for v in vals if not math.isnan(v)]
    return out


def verdict(a, b, band=ONE_SEED_BAND, alpha=ALPHA, n_test=0, paired=None):
    """Compare per-seed accuracies `a` with `b` (lists) measured on a test set of n_test images
    (0: unknown, only the seed spread counts). `paired`: the per-image differences of the two
    sides' seed-mean scores (fractions, N of them; their mean is diff / 100): the test-set
    part is then paired_var(paired) instead of the two binomial variances. Returns (outcome,
    strength, diff, p): outcome win/loss/inconclusive/not measurable for a against b,
    strength 'significant' (seeds) or 'suggestive' (one seed on a side), diff = mean(a) -
    mean(b), p the unadjusted two-sided p (NaN with one seed on a side). See the module
    docstring."""
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("verdict needs at least one value on each side")
    ma, mb = float(np.mean(a)), float(np.mean(b))
    diff = ma - mb
    measurable = abs(diff) >= resolution(ma, mb, n_test, paired)
    if len(a) >= 2 and len(b) >= 2:
        seed = [(float(np.var(v, ddof=1)) / len(v), len(v) - 1) for v in (a, b)]
        known = paired_var(paired) if paired is not None else test_var(ma, n_test) + test_var(mb, n_test)
        var = sum(v for v, _ in seed) + known
        if var == 0:
            p = 1.0 if diff == 0 else 0.0
        else:
            dof = var ** 2 / max(sum(v ** 2 / d for v, d in seed), 1e-300)
            p = float(2 * stats.t.sf(abs(diff) / math.sqrt(var), dof))
        outcome = (UNMEASURABLE if not measurable else
                   (WIN if diff > 0 else LOSS) if p < alpha else INCONCLUSIVE)
        return outcome, "significant", diff, p
    outcome = (UNMEASURABLE if not measurable else
               (WIN if diff > 0 else LOSS) if abs(diff) > band else INCONCLUSIVE)
    return outcome, "suggestive", diff, math.nan


def decide(diff, p_adj, outcome, alpha=ALPHA):
    """A level's outcome once its p is adjusted (Holm): only wins and losses can change."""
    if outcome in (WIN, LOSS) and p_adj == p_adj and p_adj >= alpha:
        return INCONCLUSIVE
    return outcome


def match_points(a_points, b_points, tol=MATCH_TOL, a_seeds=None, b_seeds=None):
    """Pairs (i, j, distance) of points of two curves within `tol` in log nonzeros, each
    point used once. a_points/b_points: lists of x = log(nnz); a_seeds/b_seeds: each point's
    seed count. Pairs whose fewer-seeded side has more seeds come first (a point every seed
    ran before a one-seed search round, whenever both are within `tol`), then the closest."""
    a_seeds = a_seeds or [1] * len(a_points)
    b_seeds = b_seeds or [1] * len(b_points)
    pairs = sorted((-min(a_seeds[i], b_seeds[j]), abs(xa - xb), i, j)
                   for i, xa in enumerate(a_points) for j, xb in enumerate(b_points))
    used_a, used_b, out = set(), set(), []
    for _, d, i, j in pairs:
        if d <= tol and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, d))
    return out


def combine(outcomes):
    """One row's verdict from its comparisons (levels or matched points): all decisive ones
    agree -> that outcome; wins and losses both -> 'mixed'; none decisive -> inconclusive;
    no comparison at all -> 'unmatched' (shown, not counted)."""
    if not outcomes:
        return "unmatched"
    wins, losses = outcomes.count(WIN), outcomes.count(LOSS)
    if wins and losses:
        return "mixed"
    if not wins and not losses and all(o == UNMEASURABLE for o in outcomes):
        return UNMEASURABLE
    return WIN if wins else LOSS if losses else INCONCLUSIVE


def claim_verdict(row_verdicts, strength):
    """A claim's verdict from its rows' verdicts (unmatched rows are not counted):
    supported when wins outnumber the other counted rows and none is a loss; refuted the
    other way round; else inconclusive. 'suggestive' when any side had one seed."""
    counted = [v for v in row_verdicts if v != "unmatched"]
    if not counted:
        return "no evidence at this scale"
    if all(v == UNMEASURABLE for v in counted):
        return UNMEASURABLE
    wins, losses = counted.count(WIN), counted.count(LOSS)
    rest = len(counted) - wins - losses
    if wins and not losses and wins >= rest:
        v = "supported"
    elif losses and not wins and losses >= rest:
        v = "refuted"
    else:
        v = "inconclusive"
    return f"{v} (suggestive only: one seed)" if strength == "suggestive" and v != "inconclusive" else v
