"""The report: sound comparisons on synthetic results with hand-computed answers, and the
selection rule (exactly the profile's complete runs; anything else left out and named).

Run folders are written by a stand-in launcher through sweep.run_all, so names and identity
are exactly what a real sweep gives; accuracy and sparsity follow formulas chosen here."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest

from sparsecs import criteria
from sparsecs import fileio
from sparsecs import paths
import report
from sparsecs import runindex
from sparsecs import summaries
import sweep
from sparsecs.reporting import claims as CL
from sparsecs.reporting import compare as K
from sparsecs.reporting.envelope import at_levels, collapse_note, frontier
from sparsecs.reporting.pointwise import point_pairs
from tests.conftest import StandInLauncher

N_WEIGHTS = 10_000


def fake_numbers(cfg):
    """(test accuracy, sparsity) of a synthetic run: dense 98 (+0.1 per seed); xRDA 97 at
    90% sparse, 1 pp lower per decade of nonzeros; GMP 2 pp below xRDA at the same sparsity."""
    seed, m = cfg["seed"], cfg["method"]
    if m == "sgd":
        return 98.0 + 0.1 * seed, 0.0
    if m == "xrda":
        sp = {1e-3: 0.9, 1e-2: 0.99}[cfg["optim"]["lam"]]
    else:
        sp = cfg["optim"]["target"]
    acc = 97.0 - (-math.log10(1 - sp) - 1.0) + 0.1 * seed
    return (acc - 2.0 if m == "gmp" else acc), sp


def write_run(results, name, cfg, numbers=fake_numbers):
    from sparsecs import final_eval

    acc, sp = numbers(cfg)
    d = paths.run_dir(results, name)
    nnz = round((1 - sp) * N_WEIGHTS)
    summary = {k: "" for k in summaries.SUMMARY_FIELDS if k not in summaries.OPTIONAL}
    summary.update({"run": name, "dataset": cfg["dataset"], "model": cfg["model"], "width": cfg["width"],
                    "method": cfg["method"], "mode": "dense" if cfg["method"] == "sgd" else "elementwise",
                    "seed": cfg["seed"], "epochs": cfg["epochs"], "lam": 0.0,
                    "total_epochs": cfg["epochs"] + final_eval.epochs_before(
                        paths.model_path(cfg["init_from"]) if cfg["init_from"] else ""),
                    "test_acc": acc, "test_loss": 0.1, "train_acc": 100.0, "train_loss": 0.01,
                    "sparsity": 1 - nnz / N_WEIGHTS, "sparsity_all": sp, "nnz": nnz,
                    "n_weights": N_WEIGHTS, "n_params": N_WEIGHTS + 100, "flops_dense": 1e6,
                    "flops_nonzero": 1e6 * nnz / N_WEIGHTS, "train_seconds": 1.0, "config_hash": "x",
                    "init_from": cfg["init_from"], **cfg["identity"], "threads": 1})
    if cfg["method"] == "soft_threshold":    # as SoftThreshold.summary() writes it
        summary["threshold_schedule"] = cfg["optim"]["threshold_schedule"]
    fileio.save_json(summary, paths.path(d, paths.SUMMARY))
    fileio.save_csv([{"epoch": e + 1, "test_acc": acc, "sparsity": sp} for e in range(cfg["epochs"])],
                  paths.path(d, paths.METRICS))
    fileio.save_csv([{"layer": "c", "type": "Conv2d", "kernels": 10, "zero_kernels": 0, "filters": 2,
                    "zero_filters": 0}], paths.path(d, paths.LAYERS))
    open(paths.path(d, paths.MODEL), "wb").close()
    runindex.upsert_row(os.path.join(results, paths.INDEX), summary)


def FakeLauncher(results, numbers=fake_numbers):
    return StandInLauncher(results, lambda results, s: write_run(results, s.name, s.cfg, numbers), slots=4)


PROFILE = """
evidence: {evidence}
seeds: {seeds}
overrides: [epochs=2, dataset=fashion_mnist]
runs:
  - name: sgd
    config: {repo}/configs/quick/sgd.yaml
{more}"""
SPARSE = """  - name: xrda
    config: {repo}/configs/quick/xrda.yaml
    grid: {{optim.lam: [1.0e-3, 1.0e-2]}}
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    target_from: xrda
"""


def make(tmp_path, evidence="small-scale", seeds="[0, 1, 2]", sparse=True, name="p"):
    prof = tmp_path / f"{name}.yaml"
    more = SPARSE.format(repo=sweep.REPO) if sparse else ""
    prof.write_text(PROFILE.format(evidence=evidence, seeds=seeds, repo=sweep.REPO, more=more))
    results = str(tmp_path / "results")
    state = sweep.run_all(sweep.expand(str(prof)), results, FakeLauncher(results))
    assert all(st == "finished" for st, _ in state.values())
    return str(prof), results


# ----------------------------------------------------------------------------- compare.py

def test_interpolation_is_linear_in_x_and_never_extrapolates():
    assert K.interpolate([0.0, 1.0], [90.0, 80.0], 0.25) == pytest.approx(87.5)
    assert K.interpolate([1.0, 0.0], [80.0, 90.0], 0.25) == pytest.approx(87.5)   # any order
    assert math.isnan(K.interpolate([0.0, 1.0], [90.0, 80.0], 1.5))
    assert math.isnan(K.interpolate([], [], 0.0))
    # along log nonzeros: 95% lies log(0.5)/log(0.1) = 0.30103 of the way from 90% to 99%
    pts = [(0, K.log_nnz(0.9, N_WEIGHTS), 95.0), (0, K.log_nnz(0.99, N_WEIGHTS), 85.0)]
    got = K.at_levels(pts, (0.95, 0.995), lambda lv: K.log_nnz(lv, N_WEIGHTS))
    assert got[0.95] == [pytest.approx(95.0 - 10.0 * math.log10(2.0))]
    assert got[0.995] == []


def test_points_match_only_within_the_tolerance_and_each_once():
    a = [math.log(1000), math.log(100)]
    b = [math.log(1080), math.log(150), math.log(1010)]
    pairs = K.match_points(a, b, tol=0.1)
    # 1000 pairs with 1010 (closest), not 1080; 100 vs 150 is |log 1.5| = 0.405 > 0.1: unmatched
    assert [(i, j) for i, j, _ in pairs] == [(0, 2)]
    # a point every seed ran is preferred to a one-seed search round that sits a hair closer,
    # when both are within the tolerance (fashion at 98%: GMP's 98.00% took xRDA's one-seed
    # round at 97.99% over its three-seed point at 98.03%)
    pairs = K.match_points(a, b, tol=0.1, a_seeds=[3, 3], b_seeds=[3, 3, 1])
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]
    assert pairs[0][2] == pytest.approx(math.log(1.08))
    # ... and outside the tolerance seeds do not help
    assert K.match_points(a, [math.log(1120), math.log(1010)], tol=0.1, a_seeds=[3, 3], b_seeds=[3, 1])[0][1] == 1


def test_verdicts_with_seeds_and_with_one_seed():
    out, strength, diff, p = K.verdict([97.0, 97.1, 97.2], [95.0, 95.1, 95.2])
    assert (out, strength) == ("win", "significant") and diff == pytest.approx(2.0) and p < 0.01
    out, strength, diff, p = K.verdict([97.0, 95.0, 96.0], [96.5, 95.5, 96.2])
    assert out == "inconclusive" and p > 0.05
    assert K.verdict([95.0, 95.1], [97.0, 97.2])[0] == "loss"
    # one seed: only a difference beyond the stated band counts, and only as suggestive
    assert K.verdict([97.0], [96.0])[:2] == ("inconclusive", "suggestive")
    assert K.verdict([97.0], [94.0])[:2] == ("win", "suggestive")


def test_the_test_sets_sampling_error_enters_every_verdict():
    # two zero-variance sides: with no test-set size only the seeds count (p = 0 is then true);
    # on 360 test images a 0.3 pp difference is far below the set's resolution
    out, _, diff, p = K.verdict([99.5] * 3, [99.2] * 3)
    assert out == "win" and p == 0.0
    out, _, _, p = K.verdict([99.5] * 3, [99.2] * 3, n_test=360)
    assert out == K.UNMEASURABLE and p > 0
    # resolution: 2 * sqrt(p(1-p)/N) for each side, summed in variance (hand-computed)
    r = K.resolution(90.0, 90.0, 10_000)
    assert r == pytest.approx(2 * math.sqrt(2 * 1e4 * 0.9 * 0.1 / 10_000))   # 0.8485 pp
    assert K.verdict([90.5, 90.5, 90.6], [90.0, 90.0, 90.1], n_test=10_000)[0] == K.UNMEASURABLE
    # 2 pp on 10,000 images with a tight seed spread: measurable and significant
    out, _, _, p = K.verdict([92.0, 92.1, 92.2], [90.0, 90.1, 90.2], n_test=10_000)
    assert out == "win" and p < 1e-4
    # the variance is the seeds' plus the test set's: p from the t distribution by hand
    from scipy import stats
    a, b = [92.0, 91.0, 93.0], [90.0, 90.5, 91.5]
    var = 1.0 / 3 + 0.5833333 / 3 + 1e4 * (0.92 * 0.08 + 0.9067 * 0.0933) / 10_000
    _, _, diff, p = K.verdict(a, b, n_test=10_000)
    t = diff / math.sqrt(var)
    dof = var ** 2 / ((1.0 / 3) ** 2 / 2 + (0.5833333 / 3) ** 2 / 2)
    assert p == pytest.approx(2 * stats.t.sf(t, dof), rel=2e-3)


def test_the_significance_level_is_pinned_at_005():
    # a p between 0.05 and 0.1 stays inconclusive (a verdict at alpha 0.1 would call it a win):
    # seeds 92.0/92.4/92.8 against 91.25/91.65/92.05, no test-set part: diff 0.75, each side's
    # seed variance 0.16 / 3, Welch dof (2 * 0.0533)^2 / (2 * 0.0533^2 / 2) = 4,
    # t = 0.75 / sqrt(0.10667) = 2.296 -> p = 0.083
    from scipy import stats
    a, b = [92.0, 92.4, 92.8], [91.25, 91.65, 92.05]
    p_hand = 2 * stats.t.sf(0.75 / math.sqrt(2 * 0.16 / 3), 4)
    assert p_hand == pytest.approx(0.083, abs=1e-3)
    out, _, diff, p = K.verdict(a, b)
    assert diff == pytest.approx(0.75) and p == pytest.approx(p_hand, rel=1e-6)
    assert out == K.INCONCLUSIVE
    # ... and once Holm-adjusted, a level at p 0.03 that adjusts to 0.06 is no longer a win
    assert K.decide(0.75, 0.06, K.WIN) == K.INCONCLUSIVE and K.decide(0.75, 0.049, K.WIN) == K.WIN


def test_holm_over_four_levels():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, previous)
    assert K.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert K.decide(1.0, 0.06, "win") == "inconclusive" and K.decide(1.0, 0.02, "win") == "win"
    nan = float("nan")
    out = K.holm([nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def _curve(rows):
    """A curve's runs as the report's table has them: (seed, swept value, sparsity, acc, collapsed)."""
    import pandas as pd
    return pd.DataFrame([{"seed": sd, "swept_value": str(v), "sparsity": sp, "acc": acc,
                          "collapsed": fell, "n_weights": N_WEIGHTS, "mac_frac": 1 - sp}
                         for sd, v, sp, acc, fell in rows])


def test_a_level_a_search_missed_says_where_each_seed_stops():
    """LATS's 99% in `fashion`: seed 0's search plateaus at 98.87%, its followers (seeds 1, 2)
    ran that λ and are marked 'not reached' though they reach 99.1%: the level has no value,
    and the cell says the search missed it and which seed stops where, not a bare '—'."""
    from sparsecs.reporting.envelope import missed_note
    from sparsecs.reporting.tables import _no_value
    rows = [(sd, 1, 0.95, 90.0, False) for sd in (0, 1, 2)]
    rows += [(0, 2, 0.9887, 84.0, False), (1, 2, 0.9913, 83.0, False), (2, 2, 0.9914, 82.0, False)]
    part = _curve(rows).assign(calibration_status=["", "", "", "not reached", "not reached", "not reached"],
                               calibration_target=[0.95] * 3 + [0.99] * 3)
    assert at_levels(part, "nnz")[0.99] == []
    assert missed_note(part, "nnz", 0.99) == "its search missed it; seed 0 stops at 98.87% sparse"
    assert missed_note(part, "nnz", 0.95) == ""          # reached: no note
    assert _no_value(part, "nnz", 0.99, "") == missed_note(part, "nnz", 0.99)
    # a collapse before the level says that instead; a level no search aimed at names the seed short of it
    fell = _curve([(sd, 1, 0.95, 90.0, False) for sd in (0, 1, 2)] + [(sd, 2, 0.98, 10.0, True) for sd in (0, 1, 2)])
    fell = fell.assign(calibration_status=[""] * 3 + ["not reached"] * 3, calibration_target=[0.95] * 3 + [0.99] * 3)
    assert _no_value(fell, "nnz", 0.99, "collapses at 98% sparse") == "collapses at 98% sparse"
    assert _no_value(part.assign(calibration_status=""), "nnz", 0.99, "") == "seed 0 stops at 98.87% sparse"
    # on MACs the seed that keeps the most multiply-adds bounds the level
    macs = part.assign(mac_frac=[0.6] * 3 + [0.121, 0.118, 0.119], calibration_target=[0.5] * 3 + [0.1] * 3)
    assert missed_note(macs, "macs", 0.1) == "its search missed it; seed 0 stops at 12.1% of the MACs"


def test_a_level_one_seed_misses_names_that_seed():
    """fashion8's LATS at 99%: seed 0 at 99.20%, seeds 1 and 2 at the same λ 98.89% and 98.95%;
    its prune + fine-tune at 99%: seed 2 collapsed (38%). Both lose the level; the cell says
    which seed, where, instead of '—'."""
    from sparsecs.reporting.envelope import short_note
    from sparsecs.reporting.tables import _no_value
    rows = [(sd, 1, 0.977, 88.0, False) for sd in (0, 1, 2)]
    rows += [(0, 2, 0.9920, 82.6, False), (1, 2, 0.9889, 84.9, False), (2, 2, 0.9895, 80.8, False)]
    part = _curve(rows)
    assert at_levels(part, "nnz")[0.99] == []
    # seed 2's 1.05% nonzeros are within COVER_TOL of 99% (it stands at the level): not named
    assert short_note(part, "nnz", 0.99) == "seed 1 stops at 98.89% sparse"
    assert _no_value(part, "nnz", 0.99, "") == short_note(part, "nnz", 0.99)
    assert short_note(part, "nnz", 0.995) == ""            # no seed spans it: outside the sweep, '—'
    ft = _curve([(sd, 1, 0.98, 78.0, False) for sd in (0, 1, 2)]
                + [(0, 2, 0.99, 66.2, False), (1, 2, 0.99, 66.7, False), (2, 2, 0.99, 38.5, True)])
    assert at_levels(ft, "nnz")[0.99] == []
    assert _no_value(ft, "nnz", 0.99, collapse_note(ft, "nnz")) == "seed 2 collapses at 99% sparse"
    # on MACs: a seed that keeps more multiply-adds than the level stops short of it
    macs = _curve([(sd, 1, 0.4, 90.0, False) for sd in (0, 1, 2)]
                  + [(0, 2, 0.75, 85.0, False), (1, 2, 0.72, 85.0, False), (2, 2, 0.66, 85.0, False)])
    assert short_note(macs, "macs", 0.3) == "seed 2 stops at 34% of the MACs"
    # 31% of the MACs is within COVER_TOL of 30% (log 31/30 = 0.033): that seed stands at it
    near = _curve([(sd, 1, 0.4, 90.0, False) for sd in (0, 1, 2)]
                  + [(0, 2, 0.75, 85.0, False), (1, 2, 0.72, 85.0, False), (2, 2, 0.69, 85.0, False)])
    assert len(at_levels(near, "macs")[0.3]) == 3


def test_curves_use_only_the_points_every_seed_ran_and_never_cross_a_collapse():
    rows = []
    for seed in (0, 1, 2):
        rows += [(seed, 1, 0.9, 95.0, False), (seed, 2, 0.99, 85.0, False)]
    # seed 0's extra search round at 95% (99.0%) must not bend seed 0's curve
    rows.append((0, 3, 0.95, 99.0, False))
    got = at_levels(_curve(rows), "nnz")
    want = 95.0 - 10.0 * math.log10(2.0)                     # 95% on the 90-99% line
    assert got[0.95] == [pytest.approx(want)] * 3
    # a collapsed run at 98% for seed 1: seed 1's frontier stops at 90%, so no level beyond 90%
    # has all seeds, and the table says where the curve collapses
    rows2 = [r for r in rows if r[0] != 1] + [(1, 1, 0.9, 95.0, False), (1, 1.5, 0.98, 10.0, True),
                                              (1, 2, 0.99, 85.0, False)]
    part = _curve(rows2)
    got = at_levels(part, "nnz")
    assert got[0.95] == [] and got[0.99] == [] and got[0.9] == [pytest.approx(95.0)] * 3
    assert collapse_note(part, "nnz") == "collapses at 98% sparse"
    # the same collapse as a search's overshoot (swept value past every healthy full point,
    # a far larger λ whose broken network ended at 98%): the curve is intact up to 99%
    rows_over = [r for r in rows2 if r[1] != 1.5] + [(1, 40, 0.98, 10.0, True)]
    got = at_levels(_curve(rows_over), "nnz")
    assert got[0.95] == [pytest.approx(want)] * 3 and got[0.99] == [pytest.approx(85.0)] * 3
    over = _curve(rows_over).assign(swept_key="optim.lam")
    assert collapse_note(over, "nnz") == "collapses at optim.lam ≥ 40, past its sparsest point"
    # ... and a swept value that is no number cannot be placed: the collapse bounds the curve
    rows_txt = [r for r in rows2 if r[1] != 1.5] + [(1, "x", 0.98, 10.0, True)]
    assert at_levels(_curve(rows_txt), "nnz")[0.99] == []
    # the Pareto frontier drops a denser point that is also less accurate
    assert frontier([(1.0, 90.0), (2.0, 89.0), (0.5, 80.0)]) == [(1.0, 90.0), (0.5, 80.0)]
    # ... and a level on the dense side of the frontier, inside what the seed ran, takes the
    # accuracy a sparser run of that seed reached (a noisy dense point does not end the curve)
    rows3 = [(seed, v, sp, acc, False) for seed in (0, 1, 2)
             for v, sp, acc in ((1, 0.8, 99.0), (2, 0.95, 99.5), (3, 0.99, 97.0))]
    got = at_levels(_curve(rows3), "nnz")
    assert got[0.9] == [pytest.approx(99.5)] * 3
    t = (K.log_nnz(0.98, N_WEIGHTS) - K.log_nnz(0.95, N_WEIGHTS)) / (
        K.log_nnz(0.99, N_WEIGHTS) - K.log_nnz(0.95, N_WEIGHTS))
    assert got[0.98] == [pytest.approx(99.5 + t * (97.0 - 99.5))] * 3


def test_row_and_claim_verdicts():
    assert K.combine([]) == "unmatched"
    assert K.combine(["win", "inconclusive", "win"]) == "win"
    assert K.combine(["win", "loss"]) == "mixed"
    assert K.combine(["inconclusive"]) == "inconclusive"
    assert K.claim_verdict(["win", "win", "unmatched"], "significant") == "supported"
    assert K.claim_verdict(["win", "loss"], "significant") == "inconclusive"
    assert K.claim_verdict(["loss", "inconclusive"], "significant") == "refuted"
    assert K.claim_verdict(["win", "inconclusive", "inconclusive"], "significant") == "inconclusive"
    assert K.claim_verdict(["unmatched"], "significant") == "no evidence at this scale"
    assert K.claim_verdict(["win"], "suggestive") == "supported (suggestive only: one seed)"
    assert K.combine([K.UNMEASURABLE, K.UNMEASURABLE]) == K.UNMEASURABLE
    assert K.combine([K.UNMEASURABLE, "win"]) == "win"
    assert K.claim_verdict([K.UNMEASURABLE], "significant") == K.UNMEASURABLE


# ----------------------------------------------------------------------------- end to end

def test_claims_from_a_synthetic_sweep(tmp_path):
    prof, results = make(tmp_path)
    from sparsecs.reporting import load

    df, left = load.load(prof, results)
    assert len(df) == 3 + 6 + 6 and not left["other"] and not left["missing"]
    assert set(df["role"]) == {"dense", "reference", "baseline"}
    verdicts = {num: (v, mine) for num, _, _, v, mine in CL.claim_verdicts(CL.comparisons(df))}
    v1, (c1,) = verdicts["1"]
    # xRDA is 2 pp above GMP at every level both sweeps cover (90-99%; 99.5% is outside)
    assert v1 == "supported" and c1["outcome"] == "win"
    assert [lv["level"] for lv in c1["levels"]] == [0.9, 0.95, 0.98, 0.99]
    assert all(lv["diff"] == pytest.approx(2.0) for lv in c1["levels"])
    # at 95%: 97 - log10(2) + 0.1*seed, interpolated per seed
    assert c1["levels"][1]["a"] == pytest.approx([97.0 - math.log10(2.0) + 0.1 * s for s in range(3)])
    # dense (98.1 mean) beats xRDA (97.1 at 90%, lower beyond): claim 4 is refuted
    v4, (c4,) = verdicts["4"]
    assert v4 == "refuted" and c4["outcome"] == "loss"
    assert verdicts["2"][0] == verdicts["3"][0] == "no evidence at this scale"


def test_report_covers_exactly_the_profile_and_names_stale_rows(tmp_path):
    prof, results = make(tmp_path)
    stale = "digits-resnet20-gmp-t0.744659-s0-deadbeef"
    runindex.upsert_row(os.path.join(results, paths.INDEX), {"run": stale, "test_acc": 10.0})
    # a round this profile once ran that its plan no longer names (a search that went another way)
    from sparsecs.reporting import load
    ours = load.load(prof, results)[0]["profile"].iloc[0]
    retired = "digits-resnet20-xrda-lam0.5-s0-cafef00d"
    runindex.upsert_row(os.path.join(results, paths.INDEX), {"run": retired, "profile": ours, "test_acc": 10.0})
    # a run of another profile: not this one's to retire, though this profile may share some of
    # that profile's runs (its rows then carry that profile's name)
    neighbour = "digits-resnet20-xrda-lam0.7-s0-0ddba11"
    runindex.upsert_row(os.path.join(results, paths.INDEX), {"run": neighbour, "profile": "neighbour", "test_acc": 10.0})
    index = os.path.join(results, paths.INDEX)
    first = next(csv.DictReader(open(index, newline="")))["run"]
    runindex.upsert_row(index, {"run": first, "profile": "neighbour"})
    summary = os.path.join(paths.run_dir(results, first), "summary.json")
    with open(summary) as f:
        js = json.load(f)
    with open(summary, "w") as f:
        json.dump(dict(js, profile="neighbour"), f)
    out = tmp_path / "rep"
    written, n, left = report.build(prof, results, str(out))
    assert n == 15 and left["retired"] == [retired]
    assert sorted(left["other"]) == sorted([stale, neighbour])
    text = (out / "REPORT.md").read_text()
    assert "**15 runs**" in text and "Left out: 2 other row(s)" in text and stale in text
    assert "Not used: 1 run(s) this profile asked for once but its plan no longer names" in text
    assert retired in text
    assert "**Verdict: supported.**" in text and "**Verdict: refuted.**" in text
    with open(out / "tables" / "points.csv", newline="") as f:
        pts = list(csv.DictReader(f))
    assert len(pts) == 1 + 2 + 2 and all(p["seeds"] == "3" for p in pts)
    assert all(p["collapsed"] == "0" for p in pts)       # how many of a point's seeds collapsed
    assert (out / "tables" / "levels_fashion_mnist-resnet20_methods.tex").read_text().count(r"\label{") == 1
    for f in ("tradeoff_col.png", "tradeoff_page.pdf", "dynamics_page.png"):
        assert (out / "figures" / f).stat().st_size > 1000
    # no ablation entry: no ablation figure (it would be xRDA alone, a part of the trade-off)
    assert not list((out / "figures").glob("ablation_*"))
    # the README block states the same verdicts and differences: xRDA 2 pp above GMP at every
    # level both cover (the synthetic sweep's construction), dense above xRDA
    block = (out / "tables" / "verdicts_readme.md").read_text().splitlines()
    a1 = next(ln for ln in block if ln.startswith("| A1. "))
    assert "**supported**" in a1 and "vs GMP: **win**" in a1
    assert [f"+2.00 at {lv}%" in a1 for lv in (90, 95, 98, 99)] == [True] * 4 and "99.5%" not in a1
    a4 = next(ln for ln in block if ln.startswith("| A4. "))
    assert "**refuted**" in a4 and "vs dense SGD: **loss**" in a4


def test_a_run_whose_metrics_were_cut_short_is_not_complete(tmp_path):
    prof, results = make(tmp_path, sparse=False)
    names = [r["run"] for r in csv.DictReader(open(os.path.join(results, paths.INDEX)))]
    m = paths.path(paths.run_dir(results, names[0]), paths.METRICS)
    with open(m) as f:
        head = f.readlines()[:2]
    open(m, "w").writelines(head)             # 1 of 2 epochs left
    from sparsecs.reporting import load

    df, left = load.load(prof, results)
    assert len(df) == 2 and left["missing"] == [names[0]]


def test_an_incomplete_evidence_profile_writes_no_verdict(tmp_path):
    """A run of the profile is not complete (its metrics cut short): the report shows what has
    finished but draws no verdict from a profile that has not finished."""
    prof, results = make(tmp_path)
    names = [r["run"] for r in csv.DictReader(open(os.path.join(results, paths.INDEX)))]
    m = paths.path(paths.run_dir(results, names[-1]), paths.METRICS)
    with open(m) as f:
        head = f.readlines()[:2]
    open(m, "w").writelines(head)
    out = tmp_path / "rep"
    report.build(prof, results, str(out))
    text = (out / "REPORT.md").read_text()
    assert "No verdict yet: the profile is incomplete" in text and "**Verdict:" not in text
    assert not (out / "tables" / "verdicts_readme.md").exists()
    assert "**14 runs**" in text


def test_pipeline_check_profile_writes_no_verdict(tmp_path):
    prof, results = make(tmp_path, evidence="none", seeds="[0]")
    out = tmp_path / "rep"
    report.build(prof, results, str(out))
    text = (out / "REPORT.md").read_text()
    assert "pipeline check" in text and "Verdict" not in text and "claims" not in text.lower()


def test_only_a_dense_run_and_a_single_run(tmp_path):
    prof, results = make(tmp_path, seeds="[0]", sparse=False)
    written, n, _ = report.build(prof, results, str(tmp_path / "rep"))
    assert n == 1
    text = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "no evidence at this scale" in text and "dense SGD" in text


@pytest.mark.parametrize("case", ["unknown profile", "no runs"])
def test_bad_input_gives_one_line_error(tmp_path, case):
    prof, results = make(tmp_path, seeds="[0]", sparse=False)
    if case == "unknown profile":
        argv = ["no_such_profile", "--results", results]
    else:
        argv = [prof, "--results", str(tmp_path / "empty")]
    p = subprocess.run([sys.executable, os.path.join(sweep.REPO, "report.py"), *argv],
                       capture_output=True, text=True, cwd=tmp_path)
    # exit codes as every tool's: a bad profile 2, results that are not there 1
    assert p.returncode == (2 if case == "unknown profile" else 1)
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_default_profiles_come_from_the_runs(tmp_path):
    prof, results = make(tmp_path, seeds="[0]", sparse=False, name="mine")
    from sparsecs.reporting import load

    assert load.profiles_in(results) == ["mine"]


def test_runs_csv_rebuilt_from_the_folders_equals_the_original(tmp_path):
    prof, results = make(tmp_path)
    index = os.path.join(results, paths.INDEX)
    with open(index, newline="") as f:
        before = sorted(csv.DictReader(f), key=lambda r: r["run"])
    open(index, "w").write("garbage,\x00\n")                  # damaged
    p = subprocess.run([sys.executable, os.path.join(sweep.REPO, "sweep.py"), "--reindex", "--results", results],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "15 runs" in p.stdout
    with open(index, newline="") as f:
        after = sorted(csv.DictReader(f), key=lambda r: r["run"])
    assert after == before


def test_a_claim_is_suggestive_only_when_no_comparison_rests_on_seeds():
    c = lambda out, st: {"claim": "1", "outcome": out, "strength": st}
    v = {n: verdict for n, _, _, verdict, _ in CL.claim_verdicts([c("win", "significant"), c("win", "suggestive")])}
    assert v["1"] == "supported"
    v = {n: verdict for n, _, _, verdict, _ in CL.claim_verdicts([c("win", "suggestive")])}
    assert v["1"] == "supported (suggestive only: one seed)"


# ----------------------------------------------------------------------------- paper B's claims

B_PROFILE = """
evidence: small-scale
claims: {claims}
seeds: [0, 1, 2]
overrides: [epochs=2, dataset=fashion_mnist]
runs:
  - name: sgd
    config: {repo}/configs/quick/sgd.yaml
  - name: xrda
    config: {repo}/configs/quick/xrda.yaml
    grid: {{optim.lam: [1.0e-3, 1.0e-2]}}
  - name: soft_threshold
    config: {repo}/configs/quick/soft_threshold.yaml
    grid: {{optim.lam: [1.0e-3, 1.0e-2]}}
  - name: soft_threshold_linear
    config: {repo}/configs/quick/soft_threshold.yaml
    overrides: [optim.threshold_schedule=linear, optim.lam=0]
    grid: {{optim.final_threshold: [0.1, 1.0]}}
  - name: soft_threshold_sine
    config: {repo}/configs/quick/soft_threshold.yaml
    overrides: [optim.threshold_schedule=sine, optim.lam=0]
    grid: {{optim.final_threshold: [0.1, 0.5]}}
  - name: str
    config: {repo}/configs/quick/str.yaml
    grid: {{optim.s_weight_decay: [1.0e-4, 1.0e-3]}}
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.9, 0.99]}}
  - name: sgd_half
    config: {repo}/configs/quick/sgd.yaml
    epochs_scale: 0.5
  - name: magnitude_finetune
    config: {repo}/configs/quick/magnitude_finetune.yaml
    epochs_scale: 0.5
    init_from: sgd_half
    grid: {{optim.target: [0.9, 0.99]}}
  - name: rigl
    config: {repo}/configs/quick/rigl.yaml
    epochs_scale: 0.5
    grid: {{optim.target: [0.9, 0.99]}}
"""

# sparsity of each swept value, per method (and threshold schedule)
B_SPARSITY = {("xrda", ""): ("lam", {1e-3: 0.9, 1e-2: 0.99}),
              ("soft_threshold", "lats"): ("lam", {1e-3: 0.9, 1e-2: 0.99}),
              ("soft_threshold", "linear"): ("final_threshold", {0.1: 0.9, 1.0: 0.99}),
              ("soft_threshold", "sine"): ("final_threshold", {0.1: 0.9, 0.5: 0.95}),   # reaches 95% only
              ("str", ""): ("s_weight_decay", {1e-4: 0.9, 1e-3: 0.99})}
# accuracy relative to LATS at the same sparsity (pp)
B_OFFSET = {("soft_threshold", "lats"): 0.0, ("soft_threshold", "linear"): -2.0,
            ("soft_threshold", "sine"): -2.0, ("str", ""): +0.3, ("gmp", ""): +2.5,
            ("magnitude_finetune", ""): -0.3, ("rigl", ""): 0.0, ("xrda", ""): +1.0}


def b_numbers(cfg):
    """Paper B's synthetic sweep: dense 98 (+0.1 per seed); LATS 97 at 90% sparse, 1 pp lower
    per decade of nonzeros (+0.1 per seed); every other method at B_OFFSET from LATS at the
    same sparsity."""
    seed, m, o = cfg["seed"], cfg["method"], cfg["optim"]
    if m == "sgd":
        return 98.0 + 0.1 * seed, 0.0
    key = (m, o.get("threshold_schedule", "") if m == "soft_threshold" else "")
    if key in B_SPARSITY:
        hp, table = B_SPARSITY[key]
        sp = table[o[hp]]
    else:
        sp = o["target"]
    return 97.0 - (-math.log10(1 - sp) - 1.0) + 0.1 * seed + B_OFFSET[key], sp


def make_b(tmp_path, claims="[A, B]"):
    prof = tmp_path / "pb.yaml"
    prof.write_text(B_PROFILE.format(claims=claims, repo=sweep.REPO))
    results = str(tmp_path / "results")
    state = sweep.run_all(sweep.expand(str(prof)), results, FakeLauncher(results, b_numbers))
    assert all(st == "finished" for st, _ in state.values())
    return str(prof), results


def test_paper_b_claims_from_a_synthetic_sweep(tmp_path):
    """B1 and B2 by hand. At 10,000 test images the test set resolves 2 * sqrt(2 * p(1-p) / N):
    0.48 pp at 97%, 0.55 pp at 96%, so the 0.3 pp differences are not measurable and the 2 and
    2.5 pp ones are (seeds 0.1 pp apart on both sides: p far below 0.05 after Holm)."""
    prof, results = make_b(tmp_path)
    from sparsecs.reporting import load

    df, _ = load.load(prof, results)
    comps = CL.comparisons(df, ["A", "B"])
    verdicts = {num: (v, mine) for num, _, _, v, mine in CL.claim_verdicts(comps, ["A", "B"])}
    assert [k for k in verdicts] == ["1", "2", "3", "4", "B1", "B2"]

    # B1: LATS against linear (2 pp above at 90-99%), sine (2 pp above where its sweep
    # reaches: 90 and 95%) and STR (0.3 pp below: not measurable) -> 2 wins, 1 other: supported
    v1, b1 = verdicts["B1"]
    got = {c["b"]["entry"]: c for c in b1}
    assert set(got) == {"soft_threshold_linear", "soft_threshold_sine", "str"}
    assert all(c["a"]["entry"] == "soft_threshold" for c in b1)        # LATS only is the reference
    lin, sine, st = got["soft_threshold_linear"], got["soft_threshold_sine"], got["str"]
    assert lin["outcome"] == "win" and [lv["level"] for lv in lin["levels"]] == [0.9, 0.95, 0.98, 0.99]
    assert all(lv["diff"] == pytest.approx(2.0) for lv in lin["levels"])
    assert sine["outcome"] == "win" and [lv["level"] for lv in sine["levels"]] == [0.9, 0.95]
    # at 95% both sides interpolate: LATS 97 - log10(2) + 0.1*seed; sine ran at 95% itself
    assert sine["levels"][1]["a"] == pytest.approx([97.0 - math.log10(2.0) + 0.1 * s for s in range(3)])
    assert sine["levels"][1]["b"] == pytest.approx([97.0 - math.log10(2.0) - 2.0 + 0.1 * s for s in range(3)])
    assert st["outcome"] == K.UNMEASURABLE
    assert all(lv["diff"] == pytest.approx(-0.3) and lv["outcome"] == K.UNMEASURABLE for lv in st["levels"])
    assert v1 == "supported"

    # B2: GMP 2.5 pp above LATS (loss), prune + fine-tune 0.3 pp below at its equal budget of
    # 1 + 1 epochs (not measurable), RigL at half the budget (unequal, not counted): refuted
    v2, b2 = verdicts["B2"]
    got = {c["b"]["entry"]: c for c in b2}
    assert set(got) == {"gmp", "magnitude_finetune", "rigl"}
    assert got["gmp"]["outcome"] == "loss" and all(lv["diff"] == pytest.approx(-2.5) for lv in got["gmp"]["levels"])
    assert got["magnitude_finetune"]["outcome"] == K.UNMEASURABLE and got["magnitude_finetune"]["b"]["epochs"] == 2
    assert got["rigl"]["outcome"] == "unequal budget" and got["rigl"]["levels"] == []
    assert v2 == "refuted"

    # paper A's claim 1 does not take paper B's schedule ablations as xRDA's baselines
    a1 = {c["b"]["entry"] for c in verdicts["1"][1]}
    assert a1 == {"soft_threshold", "str", "gmp", "magnitude_finetune", "rigl"}
    # claim 4 compares with the equal-budget dense model only, not prune + fine-tune's start
    assert [c["b"]["entry"] for c in verdicts["4"][1]] == ["sgd"]
    assert {c["paper"] for c in comps} == {"A", "B"}


def test_paper_b_point_table_matches_each_point_to_lats(tmp_path):
    """Paper B's point-by-point table by hand (B_SPARSITY, B_OFFSET): each point its claims
    compare is matched to the LATS point at the same sparsity (Δlog nnz 0) and tested per seed;
    sine's 95% point is log 2 = 0.69 in log nonzeros from LATS's nearest (90%): unmatched; RigL
    at half the epochs is no point against LATS. xRDA, dense and LATS itself are not rows."""
    from sparsecs.reporting import load
    from sparsecs.reporting import papers as PA

    prof, results = make_b(tmp_path)
    df, _ = load.load(prof, results)
    table = [t for t in PA.POINT_TABLES if t.key == "lats"][0]
    got = {(q["entry"], round(float(q["a"]["sparsity"]), 2)): q for q in point_pairs(df, CL.points(df), table)}
    want = {("soft_threshold_linear", 0.9): K.LOSS, ("soft_threshold_linear", 0.99): K.LOSS,   # 2 pp below
            ("soft_threshold_sine", 0.9): K.LOSS, ("soft_threshold_sine", 0.95): "unmatched",
            ("str", 0.9): K.UNMEASURABLE, ("str", 0.99): K.UNMEASURABLE,                  # 0.3 pp above
            ("gmp", 0.9): K.WIN, ("gmp", 0.99): K.WIN,                                    # 2.5 pp above
            ("magnitude_finetune", 0.9): K.UNMEASURABLE, ("magnitude_finetune", 0.99): K.UNMEASURABLE,
            ("rigl", 0.9): "unequal budget", ("rigl", 0.99): "unequal budget"}
    assert {k: q["outcome"] for k, q in got.items()} == want
    for (entry, sp), q in got.items():
        if q["ref"] is not None:    # matched to LATS at its own sparsity
            assert float(q["ref"]["sparsity"]) == pytest.approx(sp) and q["ref"]["entry"] == "soft_threshold"
    assert got[("rigl", 0.9)]["match"] == "unequal budget (1 against 2 epochs)"
    # in the report, under paper B only where the profile declares it
    out = tmp_path / "rep"
    report.build(prof, results, str(out))
    text = (out / "REPORT.md").read_text()
    assert "### Paper B's comparisons against LATS, point by point" in text
    assert "| LATS point | LATS acc (%) |" in (out / "tables" / "pairs_lats.md").read_text()
    only_a = tmp_path / "pa.yaml"
    only_a.write_text(open(prof).read().replace("claims: [A, B]\n", ""))
    out_a = tmp_path / "rep_a"
    report.build(str(only_a), results, str(out_a))
    assert "against LATS, point by point" not in (out_a / "REPORT.md").read_text()
    assert not (out_a / "tables" / "pairs_lats.md").exists()


def test_the_report_has_a_section_per_declared_paper(tmp_path):
    prof, results = make_b(tmp_path)
    out = tmp_path / "rep"
    report.build(prof, results, str(out))
    text = (out / "REPORT.md").read_text()
    a, b = text.index("## Paper A: xRDA"), text.index("## Paper B: soft-threshold pruning")
    assert a < text.index("### 1. ") < b < text.index("### B1. ") < text.index("### B2. ")
    b1 = text[text.index("### B1. "):text.index("### B2. ")]
    assert "**Verdict: supported.**" in b1 and "soft threshold, sine schedule" in b1 and "(LATS) (sine)" not in b1
    assert "**Verdict: refuted.**" in text[text.index("### B2. "):]
    assert "Seeds: 3 (0, 1, 2)" in text
    with open(out / "tables" / "comparisons.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["paper"] for r in rows} == {"A", "B"}
    # the Holm-adjusted p of each level (over its comparison's levels) and the test it used:
    # these runs saved no predictions, so every one is unpaired
    assert {r["test"] for r in rows} == {"unpaired"}
    by = {}
    for r in rows:
        by.setdefault((r["claim"], r["a"], r["b"]), []).append(r)
    for levels in by.values():
        ps = [float(r["p"]) for r in levels]
        assert [float(r["p_holm"]) for r in levels] == pytest.approx(K.holm(ps), nan_ok=True)
    assert "(several seeds a side; unpaired test)" in text
    # the same runs under a profile that speaks to paper A only (the default): no paper B
    only_a = tmp_path / "pa.yaml"
    only_a.write_text(open(prof).read().replace("claims: [A, B]\n", ""))
    report.build(str(only_a), results, str(tmp_path / "rep_a"))
    text = (tmp_path / "rep_a" / "REPORT.md").read_text()
    assert "## Paper A: xRDA" in text and "Paper B" not in text and "### B1" not in text


def test_one_seed_is_said_in_the_report(tmp_path):
    prof, results = make(tmp_path, seeds="[0]")
    report.build(prof, results, str(tmp_path / "rep"))
    text = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "Seeds: 1 (0)" in text and "**One seed**" in text


@pytest.mark.parametrize("value", ["[A, b]", "[A, C]", "A", "[]", "[A, A]"])
def test_a_bad_claims_key_is_a_one_line_error(tmp_path, capsys, value):
    from sparsecs.sweeping import profile as P

    prof = tmp_path / "bad.yaml"
    prof.write_text(B_PROFILE.format(claims=value, repo=sweep.REPO))
    with pytest.raises(P.ProfileError) as e:
        P.load_profile(str(prof))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("bad.yaml: claims must be a list of papers") and "A, B" in msg
    assert report.main([str(prof), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "claims must be" in err


def test_every_declared_claim_belongs_to_a_paper_a_profile_can_name():
    from sparsecs.reporting import papers as PA
    from sparsecs.sweeping import profile as P

    assert {c.paper for c in PA.CLAIMS} == set(P.PAPERS) == set(PA.PAPERS)
    assert len({c.id for c in PA.CLAIMS}) == len(PA.CLAIMS)
    assert all(c.axis in ("nnz", "macs", "mode") for c in PA.CLAIMS)
    for name in ("fashion", "imagenet"):
        assert P.load_profile(sweep.find_profile(name))["claims"] == ["A", "B"]


def test_a_point_within_five_percent_of_the_nonzeros_stands_at_the_level():
    """GMP told 90% keeps 6,721 of 67,208 weights (89.9997% sparse): it stands at the 90% level,
    as does a seed at 90.4% (4.1% fewer nonzeros, COVER_TOL = MATCH_TOL / 2); a point 6.3% of
    the nonzeros away (89.35%) does not (never extrapolated)."""
    n = 67208
    x90 = K.log_nnz(0.9, n)
    assert K.interpolate([K.log_nnz(0.89999702, n)], [91.3], x90) == pytest.approx(91.3)
    assert K.interpolate([K.log_nnz(0.904, n)], [91.3], x90) == pytest.approx(91.3)
    assert math.isnan(K.interpolate([K.log_nnz(0.8935, n)], [91.3], x90))
    # inside the tolerance the nearest end's accuracy, not a line extended past it
    xs, ys = [K.log_nnz(0.8999, n), K.log_nnz(0.85, n)], [91.0, 92.0]
    assert K.interpolate(xs, ys, x90) == pytest.approx(91.0)


def test_the_training_time_is_split_by_the_machine_each_run_trained_on():
    import pandas as pd
    from sparsecs.reporting import document as D
    df = pd.DataFrame({"device_name": ["fast", "slow", "fast", "slow", None],
                       "epochs": [8, 8, 4, 8, 2],
                       "train_seconds": [400.0, 1000.0, 240.0, 1040.0, float("nan")]})
    text, _, table, _ = D.compute(df)
    # 400 + 1000 + 240 + 1040 s = 0.7333 h; the run with no time is left out
    assert "Training time: 0.7 run-hours over 4 runs" in text
    lines = table.splitlines()
    # fast: 640 s = 0.18 h, 50 and 60 s an epoch; slow: 2040 s = 0.57 h, 125 and 130 s
    assert lines[2] == "| fast | 2 | 0.18 | 55 | 50–60 |"
    assert lines[3] == "| slow | 2 | 0.57 | 128 | 125–130 |"
    assert len(lines) == 4
    assert D.compute(df.drop(columns=["train_seconds"])) == []


def test_points_calibrated_to_the_same_target_meet_before_a_nearer_one_seed_round():
    """The linear schedule's 90% search ended on its round at 88.91% (3 seeds) after a round at
    90.18% (seed 0 only); LATS's 90% point is at 89.57%. Nearest in log nonzeros, the one-seed
    round wins by 0.001 and the calibrated point is left unmatched; calibrated to the same
    target by the same rule, the two searches' all-seed points are compared."""
    import pandas as pd
    from sparsecs.reporting import papers as PA
    n_w = 100_000
    rows = []

    def add(entry, sched, value, sparsity, target, rnd, seeds, acc, train_acc=95.0):
        key = "optim.lam" if sched == "lats" else "optim.final_threshold"
        for s in seeds:
            rows.append({"row": "r", "entry": entry, "mode": "elementwise", "swept_value": value,
                         "method": "soft_threshold", "role": "baseline", "model": "resnet20", "width": 0.5,
                         "swept_key": key, "total_epochs": 8, "seed": s, "acc": acc + 0.05 * s,
                         "sparsity": sparsity, "nnz": (1 - sparsity) * n_w, "n_weights": n_w,
                         "compression": 1 / (1 - sparsity), "mac_frac": 1 - sparsity, "filter_sparsity": 0.0,
                         "kernel_sparsity": 0.0, "train_acc": train_acc,
                         "collapsed": train_acc < 55.0,
                         "calibration_target": target, "calibration_round": rnd if s == 0 else 0,
                         "init_from": "", "run": f"{entry}-{value}-s{s}", "threshold_schedule": sched,
                         "n_test": 10_000})

    add("soft_threshold", "lats", "0.00177", 0.8957, 0.9, 2, (0, 1, 2), 91.6)
    add("soft_threshold", "lats", "0.001", 0.8235, 0.9, 1, (0,), 91.9)
    add("soft_threshold_linear", "linear", "0.171", 0.9018, 0.9, 3, (0,), 90.7)
    add("soft_threshold_linear", "linear", "0.161", 0.8891, 0.9, 4, (0, 1, 2), 90.7)
    # at 99%: LATS's nearest round collapsed (train acc 39%, under chance + half the way to
    # 100%), its other one is 0.9886 -> 0.9890: |ln(0.0110 / 0.0114)| = 0.04; the linear
    # schedule's collapsed round is no point either
    add("soft_threshold", "lats", "0.0079", 0.9889, 0.99, 3, (0,), 40.0, train_acc=39.0)
    add("soft_threshold", "lats", "0.0299", 0.9886, 0.99, 2, (0,), 83.4)
    add("soft_threshold_linear", "linear", "0.4", 0.9890, 0.99, 2, (0,), 76.8)
    add("soft_threshold_linear", "linear", "0.6", 0.9950, 0.99, 3, (0,), 10.0, train_acc=10.0)
    df = pd.DataFrame(rows)
    table = [t for t in PA.POINT_TABLES if t.key == "lats"][0]
    got = {q["a"]["swept_value"]: q for q in point_pairs(df, CL.points(df), table)}
    # by hand: |ln(0.1109 / 0.1043)| = 0.061, |ln(0.0982 / 0.1043)| = 0.060
    cal, rnd = got["0.161"], got["0.171"]
    assert cal["ref"]["swept_value"] == "0.00177" and cal["match"] == "target 90%, Δlog nnz 0.06"
    assert cal["outcome"] == K.LOSS                       # 0.9 pp below at 3 seeds, 0.05 pp apart
    # the one-seed round takes no reference point from it; LATS's own round (82.35%) is
    # |ln(0.0982 / 0.1765)| = 0.59 away: unmatched
    assert rnd["ref"] is None and rnd["outcome"] == "unmatched"
    high, dead = got["0.4"], got["0.6"]
    assert high["ref"]["swept_value"] == "0.0299" and high["match"] == "target 99%, Δlog nnz 0.04"
    assert dead["ref"] is None and dead["match"] == "collapsed: not compared"
    assert all(q["ref"] is None or q["ref"]["swept_value"] != "0.0079" for q in got.values())


def test_starts_line_tells_which_version_of_the_start_run_a_follower_pruned():
    import pandas as pd

    from sparsecs.reporting import document as DOC

    a, b = "a" * 64, "b" * 64
    rows = [dict(run="dense-s0", entry="sgd_half", init_from="", model_sha256=a, init_sha256=""),
            dict(run="dense-s1", entry="sgd_half", init_from="", model_sha256=b, init_sha256=""),
            # started from dense-s0 as it is now
            dict(run="pft-s0", entry="magnitude_finetune", init_from="results/runs/dense-s0/model.pt",
                 model_sha256="c" * 64, init_sha256=a),
            # started from dense-s1 before it was trained again (its sha then: a)
            dict(run="pft-s1", entry="magnitude_finetune", init_from="results/runs/dense-s1",
                 model_sha256="d" * 64, init_sha256=a),
            # trained before the field existed
            dict(run="fd-s0", entry="xrda_from_dense", init_from="results/runs/dense-s0/model.pt",
                 model_sha256="e" * 64, init_sha256=float("nan"))]
    text = DOC.starts_line(pd.DataFrame(rows))[0]
    assert text.startswith("3 runs start from another run's weights")
    assert "1 started from the weights their start run holds now (magnitude_finetune: 1)" in text
    assert "**1 from an earlier version of it** (magnitude_finetune: 1)" in text
    assert "1 do not say which version (xrda_from_dense: 1" in text
    assert DOC.starts_line(pd.DataFrame(rows[:2])) == []   # nothing starts from another run


def test_collapse_line_counts_runs_by_the_measure_that_judged_them():
    import pandas as pd

    from sparsecs.reporting import document as DOC

    # 10 classes: collapsed below 10 + 0.5 * 90 = 55%
    rows = [dict(dataset="fashion_mnist", train_acc=88.5, train_acc_final=48.98),   # broken at the end
            dict(dataset="fashion_mnist", train_acc=90.0, train_acc_final=83.52),
            dict(dataset="fashion_mnist", train_acc=57.1, train_acc_final=float("nan")),  # older run
            dict(dataset="fashion_mnist", train_acc=32.2, train_acc_final=float("nan"))]  # older, collapsed
    df = pd.DataFrame(rows)
    df["collapsed"] = [criteria.collapsed(r) for r in rows]
    df["collapse_measure"] = [criteria.collapse_measure(r)[1] for r in rows]
    assert df["collapsed"].tolist() == [True, False, False, True]
    text = DOC.collapse_line(df)[0]
    assert text.startswith("2 run(s) collapsed (the final weights' accuracy on the first 10,000 training images, "
                           "all of a smaller training set, below")
    assert "2 of the 4 runs are judged by their last epoch's average training accuracy" in text
    newer = df.iloc[:2]
    assert "judged by their last epoch's average" not in DOC.collapse_line(newer)[0]
    assert DOC.collapse_line(newer.iloc[1:]) == []   # nothing collapsed, nothing judged the old way
