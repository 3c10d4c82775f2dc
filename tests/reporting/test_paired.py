"""The paired test (reporting/compare.py): both sides scored on the same test images, so the
test set's part of the variance of a difference comes from the images the two disagree on.
Hand-computed cases, the weights that carry a level's interpolation to per-image scores, and
a simulation whose true difference is known."""
import math

import numpy as np
import pandas as pd
import pytest

from sparsecs.reporting import claims as CL
from sparsecs.reporting import compare as K
from sparsecs.reporting.envelope import at_levels, level_weights


def correctness(n, both, a_only, b_only):
    """Two correctness vectors on n images: both right on `both`, a alone on `a_only`, b alone
    on `b_only` (discordant pairs), both wrong on the rest."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both + a_only] = True
    b[:both] = True
    b[both + a_only:both + a_only + b_only] = True
    return a, b


def test_ten_images_by_hand():
    # a right on 8, b on 6; discordant: 3 images a alone, 1 image b alone
    a, b = correctness(10, 5, 3, 1)
    assert (a.mean(), b.mean()) == (0.8, 0.6)
    d = a.astype(float) - b
    # mean d = (3 - 1)/10 = 0.2, mean d^2 = (3 + 1)/10 = 0.4: var = 0.4 - 0.04 = 0.36, of the
    # mean 0.036 (fractions^2) = 360 pp^2; unpaired it would be (0.8*0.2 + 0.6*0.4)/10 = 400 pp^2
    assert K.paired_var(d) == pytest.approx(360.0)
    assert K.test_var(80.0, 10) + K.test_var(60.0, 10) == pytest.approx(400.0)
    assert K.resolution(80.0, 60.0, 10, paired=d) == pytest.approx(2 * math.sqrt(360.0))
    # two seeds a side that agree exactly: no seed spread, the t's dof is unbounded (normal):
    # p = erfc(z / sqrt 2), z = 20 / sqrt(360) = 1.0541 -> p = 0.2918
    out, _, diff, p = K.verdict([80.0, 80.0], [60.0, 60.0], n_test=10, paired=d)
    assert diff == pytest.approx(20.0)
    assert p == pytest.approx(math.erfc(20.0 / math.sqrt(360.0) / math.sqrt(2)), rel=1e-6)
    assert p == pytest.approx(0.2918, abs=1e-4)
    assert out == K.UNMEASURABLE            # 20 pp < 2 * 18.97 pp: ten images cannot tell
    # agreement on every image: no discordant pair, no test-set variance
    assert K.paired_var(np.zeros(10)) == 0.0


def test_a_thousand_images_the_paired_test_decides_where_the_unpaired_cannot():
    # both right on 850, a alone on 30, b alone on 10, both wrong on 110: 88% against 86%
    a, b = correctness(1000, 850, 30, 10)
    d = a.astype(float) - b
    # mean d = 0.02, mean d^2 = 0.04: (0.04 - 0.0004)/1000 = 3.96e-5 = 0.396 pp^2 (sd 0.629 pp)
    assert K.paired_var(d) == pytest.approx(0.396)
    out, _, diff, p = K.verdict([88.0, 88.0], [86.0, 86.0], n_test=1000, paired=d)
    z = 2.0 / math.sqrt(0.396)                                       # 3.178
    assert (out, diff) == (K.WIN, pytest.approx(2.0)) and p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-6)
    assert p == pytest.approx(0.00148, abs=1e-5)
    # unpaired: (0.88*0.12 + 0.86*0.14)/1000 = 2.26 pp^2, z = 2/1.503 = 1.330, p = 0.183, and 2 pp
    # is under its resolution 2 * 1.503 pp: "not measurable"
    out_u, _, _, p_u = K.verdict([88.0, 88.0], [86.0, 86.0], n_test=1000)
    assert out_u == K.UNMEASURABLE and p_u == pytest.approx(math.erfc(2.0 / math.sqrt(2.26) / math.sqrt(2)), rel=1e-6)
    # the seed spread still counts: the seeds' variances are added to the paired part
    _, _, _, p_s = K.verdict([87.0, 89.0], [86.0, 86.0], n_test=1000, paired=d)
    assert p_s > p


def _curve(rows):
    """(run, seed, swept value, sparsity, acc) rows as the report's table has them."""
    return pd.DataFrame([{"run": r, "seed": sd, "swept_value": str(v), "sparsity": sp, "acc": acc,
                          "collapsed": False, "n_weights": 10_000, "mac_frac": 1 - sp}
                         for r, sd, v, sp, acc in rows])


def test_a_levels_weights_reproduce_its_interpolated_accuracy():
    # per seed: runs at 90%, 95% (a frontier point) and 99%; 98% lies between 95% and 99% along
    # log nonzeros, 90% is an actual run, and the weights give back the very accuracy compared
    rows = [(f"r{s}{v}", s, v, sp, acc + s) for s in (0, 1)
            for v, sp, acc in ((1, 0.9, 95.0), (2, 0.95, 93.0), (3, 0.99, 85.0))]
    part = _curve(rows)
    vals, ws = at_levels(part, "nnz"), level_weights(part, "nnz")
    acc = dict(zip(part["run"], part["acc"]))
    for lv in (0.9, 0.95, 0.98, 0.99):
        assert [sum(w * acc[r] for r, w in wt.items()) for wt in ws[lv]] == pytest.approx(vals[lv])
    assert ws[0.9] == [{"r01": 1.0}, {"r11": 1.0}]
    t = math.log(0.02 / 0.05) / math.log(0.01 / 0.05)                # 0.569 of the way to 99%
    assert ws[0.98][0] == pytest.approx({"r02": 1 - t, "r03": t})
    assert ws[0.995] == []


def test_compare_curves_pairs_only_where_every_run_has_predictions():
    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.9
    rows_a = [(f"a{s}", s, 1, 0.9, 0.0) for s in range(3)]
    rows_b = [(f"b{s}", s, 1, 0.9, 0.0) for s in range(3)]
    a, b = _curve(rows_a), _curve(rows_b)
    ca = [truth ^ (rng.random(2000) < 0.02) for _ in range(3)]
    cb = [truth ^ (rng.random(2000) < 0.05) for _ in range(3)]
    a["acc"], b["acc"] = [100 * c.mean() for c in ca], [100 * c.mean() for c in cb]
    a["n_test"] = b["n_test"] = 2000
    a["correct"], b["correct"] = ca, cb
    _, _, rows = CL.compare_curves(a, b, "nnz")
    lv = rows[0]
    assert lv["test"] == "paired"
    d = np.mean(ca, axis=0) - np.mean(cb, axis=0)
    assert lv["diff"] == pytest.approx(100 * d.mean())
    assert lv["p"] == pytest.approx(K.verdict(lv["a"], lv["b"], n_test=2000, paired=d)[3])
    b["correct"] = [cb[0], None, cb[2]]                               # one run from before predictions
    _, _, rows = CL.compare_curves(a, b, "nnz")
    assert rows[0]["test"] == "unpaired"
    assert rows[0]["p"] == pytest.approx(K.verdict(lv["a"], lv["b"], n_test=2000)[3])


def _simulate(delta, trials, rng, n=10_000, seeds=3):
    """(paired rejections, unpaired rejections) over `trials` test sets of n images: two
    methods that agree on most images (both right on 85%, both wrong on 5%), a alone right on
    5% + delta/2, b alone on 5% - delta/2 (true difference `delta`); each seed flips a random
    0.5% of its method's images (seed noise)."""
    hits_p = hits_u = 0
    for _ in range(trials):
        u = rng.random(n)
        both, a_only = u < 0.85, (u >= 0.85) & (u < 0.90 + delta / 2)
        b_only = (u >= 0.90 + delta / 2) & (u < 0.95)
        ca = [(both | a_only) ^ (rng.random(n) < 0.005) for _ in range(seeds)]
        cb = [(both | b_only) ^ (rng.random(n) < 0.005) for _ in range(seeds)]
        va, vb = [100 * c.mean() for c in ca], [100 * c.mean() for c in cb]
        d = np.mean(ca, axis=0) - np.mean(cb, axis=0)
        hits_p += K.verdict(va, vb, n_test=n, paired=d)[0] in (K.WIN, K.LOSS)
        hits_u += K.verdict(va, vb, n_test=n)[0] in (K.WIN, K.LOSS)
    return hits_p / trials, hits_u / trials


def test_simulation_false_positives_near_alpha_and_more_power_than_unpaired():
    rng = np.random.default_rng(33)
    fp_p, fp_u = _simulate(0.0, 600, rng)
    # the null: about alpha (sd of the estimate sqrt(.05 * .95 / 600) = 0.009); the unpaired
    # test counts two models' binomial variances as if independent: far below alpha
    assert 0.02 <= fp_p <= 0.08
    assert fp_u < fp_p
    power_p, power_u = _simulate(0.01, 300, rng)                      # a 1 pp true difference
    assert power_p >= 0.7 and power_p > power_u + 0.15
