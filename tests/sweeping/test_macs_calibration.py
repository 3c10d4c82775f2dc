"""Calibration on structural MACs (issue 33): a search whose target is a fraction of the dense
structural multiply-adds (target_metric: macs_structural_fraction), larger λ or filter
fraction giving fewer MACs; hand-computed rounds on synthetic responses, and the fashion
profile's structured entries planned and run through the scheduler on a stand-in launcher."""
import math

import pytest

from sparsecs import fileio
from sparsecs import paths
import sweep
from sparsecs.sweeping.search import Search, internal
from tests.conftest import StandInLauncher

MACS = "macs_structural_fraction"


def macs_search(level, start, side=0, scale="log", rounds=5, key="optim.lam"):
    return Search(key, start, 0.3, rounds, internal(level, MACS), side=side, metric=MACS, scale=scale)


def test_rounds_by_hand_on_a_falling_macs_response():
    """MACs kept m(λ) = 0.5 (λ / 1e-3)^-log(2.5)/log(5) ... given point by point: round 1 at
    1e-3 keeps 0.5 of the MACs; with one round the slope guess is -1 in log MACs against
    log λ, so round 2 is at 1e-3 * 0.5 / 0.1 = 5e-3; there 0.2 is kept, and the secant through
    (log 1e-3, log 0.5), (log 5e-3, log 0.2) reaches log 0.1 at 5e-3 * 5^(log 0.5 / log 0.4)."""
    s = macs_search(0.1, 1e-3, side=+1)          # the entry's fewest-MACs level: reached from below
    assert s.target == pytest.approx(0.9) and s.level == pytest.approx(0.1)
    nxt = s.record(1e-3, internal(0.5, MACS))
    assert nxt == pytest.approx(5e-3)
    nxt = s.record(5e-3, internal(0.2, MACS))
    assert nxt == pytest.approx(5e-3 * 5 ** (math.log(0.5) / math.log(0.4)))
    # within ±30% of the MACs but 4% above the level, on the inner side of the entry's last
    # level: not calibrated (log 1.04 = 0.039 > SIDE_TOL), the search goes on past it
    assert s.record(nxt, internal(0.104, MACS)) is not None and s.status == "searching"
    assert s.record(0.02, internal(0.095, MACS)) is None and s.status == "reached"
    assert s.value() == 0.02
    # the tolerance is ±30% of the level's MACs, as it is ±30% of a sparsity's nonzeros
    assert s.near(internal(0.129, MACS)) and not s.near(internal(0.131, MACS))
    assert s.near(internal(0.071, MACS)) and not s.near(internal(0.069, MACS))


def test_the_lowest_macs_level_is_reached_from_its_more_macs_side():
    s = macs_search(0.5, 1e-3, side=-1)
    assert not s.within(internal(0.45, MACS))          # fewer MACs than 50%: the inner side
    assert s.within(internal(0.55, MACS)) and s.within(internal(0.4975, MACS))   # SIDE_TOL 0.01


def test_a_macs_search_takes_the_rounds_of_the_sparsity_search_on_one_minus_macs():
    kept = lambda lam: 1 / (1 + (lam / 2e-3) ** 1.3)
    for level in (0.5, 0.3, 0.2, 0.1):
        a, b = macs_search(level, 1e-4), Search("optim.lam", 1e-4, 0.3, 5, 1 - level)
        va = vb = 1e-4
        while va is not None:
            assert va == vb
            va, vb = a.record(va, internal(kept(va), MACS)), b.record(vb, 1 - kept(vb))
        assert vb is None and a.history == b.history and a.status == b.status == "reached"


def test_a_macs_plateau_is_said_in_macs():
    s = macs_search(0.1, 1e-3)
    v = 1e-3
    while v is not None:
        v = s.record(v, internal(max(0.3, 0.5 * (1e-3 / v) ** 0.5), MACS))   # never below 30%
    assert s.why == "plateau" and s.reason.startswith("plateau: fewest MACs 0.3000 at optim.lam=")
    assert "the MACs fraction stays at MACs 0.3000 (above the target)" in s.reason


def test_a_fraction_key_steps_in_log_of_minus_log_one_minus_it_and_stays_below_one():
    """Filter pruning: MACs kept (1 - f)^2 by hand. Round 1 at f = 0.4 keeps 0.36; with the
    slope guess -1 in log(-log(1 - f)) the step is log(0.36 / 0.1): u = -log(0.6) times 3.6,
    f = 1 - exp(-3.6 * -log 0.6) = 1 - 0.6^3.6."""
    s = macs_search(0.1, 0.4, side=+1, scale="fraction", rounds=8, key="optim.target")
    f = s.record(0.4, internal(0.36, MACS))
    assert f == pytest.approx(1 - 0.6 ** 3.6)
    while f is not None:
        assert 0 < f < 1
        f = s.record(f, internal((1 - f) ** 2, MACS))
    best = s.value()
    assert s.status == "reached" and 0.7 * 0.1 <= (1 - best) ** 2 <= 0.1 * math.exp(0.01)


# ----------------------------------------------------------------------------- the profile

def structured_specs():
    specs = sweep.expand(sweep.find_profile("fashion"))
    return [s for s in specs if s.entry in ("xrda_channel", "filter_prune")]


def test_fashion_calibrates_its_structured_entries_on_the_claims_macs_levels():
    from sparsecs.reporting import compare
    specs = structured_specs()
    for entry, key, start in (("xrda_channel", "optim.lam", 1e-5), ("filter_prune", "optim.target", 0.4)):
        mine = [s for s in specs if s.entry == entry]
        searches = [s.search for s in mine if s.search is not None]
        assert [x.level for x in searches] == pytest.approx([0.5, 0.3, 0.2, 0.1])   # chained, most MACs first
        assert sorted(x.level for x in searches) == pytest.approx(sorted(compare.MAC_LEVELS))
        assert all(x.metric == MACS and x.key == key for x in searches)
        assert [x.side for x in searches] == [-1, 0, 0, 1]
        assert searches[0].specs[0].overrides[-1] == f"{key}={start!r}"
        assert [s.point["target_macs"] for s in mine if s.search] == [0.5, 0.3, 0.2, 0.1]
        assert sorted(s.seed for s in mine) == sorted([0, 1, 2] * 4)      # round 1 + 2 followers each
    assert {x.scale for s in specs if s.entry == "filter_prune" for x in [s.search or s.after]} == {"fraction"}
    # --levels reads the MACs levels too (with round 1 of the earlier levels, which the chain needs)
    picked = sweep.select(sweep.expand(sweep.find_profile("fashion")), entries=["filter_prune"], levels=[0.1])
    assert sorted(s.seed for s in picked if s.point["target_macs"] == 0.1) == [0, 1, 2]
    assert all(s.seed == 0 and s.search for s in picked if s.point["target_macs"] != 0.1)


def test_fashion_structured_entries_run_to_their_levels_on_a_stand_in(tmp_path):
    """Both entries' searches run through the scheduler on stand-in runs whose summary holds
    the MACs a synthetic response gives: every level reached, followers at the calibrated
    value, each run told its level (calibration_target) in MACs."""
    kept = {"lam": lambda v: 1 / (1 + (v / 2e-5) ** 1.5), "target": lambda f: (1 - f) ** 2}

    def write(results, s):
        o = s.cfg["optim"]
        key = "target" if s.cfg["method"] == "filter_prune" else "lam"
        m = kept[key](o[key])
        d = paths.run_dir(results, s.name)
        fileio.save_json({"run": s.name, "sparsity": 1 - m, "macs_structural": 1e6 * m, "flops_dense": 1e6,
                        "train_acc": 90.0, "dataset": s.cfg["dataset"], **s.cfg["identity"]},
                       paths.path(d, paths.SUMMARY))
        open(paths.path(d, paths.MODEL), "wb").close()

    results = str(tmp_path / "results")
    specs = sweep.select(sweep.expand(sweep.find_profile("fashion")), entries=["xrda_channel", "filter_prune"])
    state = sweep.run_all(specs, results, StandInLauncher(results, write))
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    for entry, key in (("xrda_channel", "lam"), ("filter_prune", "target")):
        for level in (0.5, 0.3, 0.2, 0.1):
            mine = [s for s in specs if s.entry == entry and (s.search or s.after).level == level]
            search = next(s.search for s in mine if s.search is not None)
            assert search.status == "reached"
            m = kept[key](search.value())
            assert abs(m / level - 1) <= 0.3
            if level in (0.5, 0.1):          # the end levels: on their outer side
                assert (m >= level * math.exp(-0.01)) if level == 0.5 else (m <= level * math.exp(0.01))
            followers = [s for s in mine if s.after is not None]
            assert sorted(s.seed for s in followers) == [1, 2]
            assert all(s.cfg["optim"][key] == search.value() for s in followers)
            assert all(s.cfg["identity"]["calibration_target"] == level for s in mine)


def test_a_macs_target_needs_targets_and_a_search(tmp_path):
    base = ("runs:\n  - name: fp\n    config: {repo}/configs/quick/filter_prune.yaml\n"
            "    target_metric: macs_structural_fraction\n").format(repo=sweep.REPO)
    for extra, msg in (("    target_sparsity: [0.5]\n    calibrate: {key: optim.target, start: 0.4}\n",
                        "give the targets in its units as targets"),
                       ("    grid: {optim.target: [0.5]}\n", "read by a calibrated entry's search only"),
                       ("    targets: [0.5]\n    calibrate: {key: optim.target, start: 0.4, scale: frac}\n",
                        "calibrate.scale must be one of log, fraction"),
                       ("    targets: [0.5]\n    calibrate: {key: optim.target, start: 2, scale: fraction}\n",
                        "start must be a fraction")):
        p = tmp_path / "p.yaml"
        p.write_text(base + extra)
        with pytest.raises(sweep.ProfileError, match=msg):
            sweep.expand(str(p))
