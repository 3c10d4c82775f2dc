"""The λ search of a profile's `calibrate` on synthetic sparsity(λ) curves, and end to end
through the scheduler with train.py replaced by a stub that writes what a run would."""
import math

import pytest

import sweep
from tests.conftest import StandInLauncher


def search_until_done(curve, target, start=1e-3, tol=0.3, rounds=6):
    s = sweep.Search("optim.lam", start, tol, rounds, target)
    value = start
    while value is not None:
        value = s.record(value, curve(value))
    return s


def logistic(lam, mid=1e-3, k=1.2):
    """Nonzero fraction falls as a power of λ: log(1 - s) linear in log λ (a smooth curve)."""
    return 1.0 - 1.0 / (1.0 + (lam / mid) ** k)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99, 0.995])
@pytest.mark.parametrize("start", [1e-5, 1e-3, 1e-1])
def test_search_hits_the_tolerance_within_the_round_limit_and_keeps_every_round(target, start):
    s = search_until_done(logistic, target, start=start)
    assert not s.failed
    lam, sp = s.history[-1]
    assert s.within(sp) and abs((1 - sp) / (1 - target) - 1) <= 0.3
    assert s.best() == s.history[-1]
    assert 1 <= len(s.history) <= 6
    assert s.history[0][0] == start                     # every round is kept, in order
    assert len({v for v, _ in s.history}) == len(s.history)


def test_a_target_no_lambda_reaches_ends_with_a_clear_message():
    stuck = lambda lam: min(0.9, logistic(lam))         # saturates at 90% sparsity
    s = search_until_done(stuck, 0.99, rounds=8)
    assert s.done and (s.failed or s.note)
    why = s.failed or s.note
    assert "0.99" in why and ("not reachable" in why or "not reached" in why)
    assert s.best()[1] == pytest.approx(0.9)


def test_round_limit_keeps_the_closest_round():
    s = search_until_done(lambda lam: logistic(lam, k=0.05), 0.99, rounds=3)  # a very flat curve
    # the round limit is not a failure: the closest round is the calibrated point, with a note
    assert len(s.history) == 3 and not s.failed
    assert s.note.startswith("target sparsity 0.99 not reached within 3 rounds")
    yt = math.log(0.01)
    assert s.best() == min(s.history, key=lambda h: abs(math.log(1 - h[1]) - yt))


def test_bracketing_steps_at_most_tenfold_then_interpolates():
    s = sweep.Search("optim.lam", 1e-6, 0.3, 10, 0.99)
    nxt = s.record(1e-6, logistic(1e-6))
    assert nxt == pytest.approx(1e-5)                   # far below: the ×10 cap
    # once bracketed, the next value lies between the closest points on both sides
    s = sweep.Search("optim.lam", 1e-3, 0.3, 10, 0.9)
    s.history = [(1e-3, 0.5), (1e-1, 0.999)]
    v = s.next_value()
    assert 1e-3 < v < 1e-1
    # log-log interpolation: y = log(1-s) linear in log λ between the two points
    t = (math.log(0.1) - math.log(0.5)) / (math.log(0.001) - math.log(0.5))
    assert math.log(v) == pytest.approx(math.log(1e-3) + t * (math.log(1e-1) - math.log(1e-3)))


def FakeLauncher(results, curve):
    """Runs nothing: 'finishes' each run by writing what train.py would, with the sparsity a
    synthetic curve gives for its λ."""
    import runs

    def write(results, s):
        o = s.cfg["optim"]
        sp = curve(o["lam"]) if "lam" in o else o.get("target", 0.0)
        d = runs.run_dir(results, s.name)
        runs.save_json({"run": s.name, "sparsity": sp, **s.cfg["identity"]}, runs.path(d, runs.SUMMARY))
        open(runs.path(d, runs.MODEL), "wb").close()

    return StandInLauncher(results, write)


PROFILE = """
seeds: [0, 1, 2]
runs:
  - name: st
    config: {repo}/configs/quick/soft_threshold.yaml
    target_sparsity: [0.9, 0.99]
    calibrate: {{key: optim.lam, start: 1.0e-2, tolerance: 0.3, rounds: 6}}
"""


def run_profile(tmp_path, text, curve):
    """Write profile `text`, expand it and run it on the fake launcher."""
    prof = tmp_path / "p.yaml"
    prof.write_text(text)
    results = str(tmp_path / "results")
    specs = sweep.expand(str(prof))
    launcher = FakeLauncher(results, curve)
    return prof, results, specs, launcher, sweep.run_all(specs, results, launcher)


def test_scheduler_runs_rounds_then_the_other_seeds_at_the_calibrated_value(tmp_path, capsys):
    curve = lambda lam: logistic(lam, mid=0.05)
    prof, results, specs, launcher, state = run_profile(tmp_path, PROFILE.format(repo=sweep.REPO), curve)
    # both searches start at λ = 1e-2: one run, trained once, serves both
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    assert len(launcher.started) == len(set(launcher.started)) == len({s.name for s in specs})
    for target in (0.9, 0.99):
        mine = [s for s in specs if (s.search or s.after).target == target]
        rounds = [s for s in mine if s.search is not None]
        others = [s for s in mine if s.after is not None]
        assert [s.cfg["identity"]["calibration_round"] for s in rounds] == list(range(1, len(rounds) + 1))
        assert {s.seed for s in rounds} == {0} and sorted(s.seed for s in others) == [1, 2]
        final = rounds[-1].cfg["optim"]["lam"]
        assert rounds[0].search.within(curve(final))
        assert all(s.cfg["optim"]["lam"] == final for s in others)
        assert all(s.cfg["identity"]["swept_key"] == "optim.lam" and s.cfg["identity"]["entry"] == "st"
                   for s in mine)
        assert all(s.cfg["identity"]["calibration_target"] == target for s in mine[1:])
    # a rerun replays the same rounds from disk and starts nothing
    again = FakeLauncher(results, curve)
    state = sweep.run_all(sweep.expand(str(prof)), results, again)
    assert again.started == [] and all(st == "skipped" for st, _ in state.values())
    ready, waiting = sweep.known(sweep.expand(str(prof)), results)
    assert len(ready) == len(specs) and not waiting


def test_unreachable_target_blocks_the_other_seeds(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", "[0.99]"))
    results = str(tmp_path / "results")
    state = sweep.run_all(specs := sweep.expand(str(prof)), results,
                          FakeLauncher(results, lambda lam: min(0.5, logistic(lam, mid=0.05))))
    blocked = [s for s in specs if state[id(s)][0] == "blocked"]
    assert sorted(s.seed for s in blocked) == [1, 2]
    assert "0.99" in state[id(blocked[0])][1]


def test_target_from_a_calibrated_entry_matches_each_target_at_its_calibrated_round(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO) + f"""
  - name: gmp
    config: {sweep.REPO}/configs/quick/gmp.yaml
    target_from: st
""")
    results = str(tmp_path / "results")
    curve = lambda lam: logistic(lam, mid=0.05)
    specs = sweep.expand(str(prof))
    state = sweep.run_all(specs, results, FakeLauncher(results, curve))
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    gmp = [s for s in specs if s.entry == "gmp"]
    assert len(gmp) == 2 * 3                     # one run per target and seed
    for target in (0.9, 0.99):
        mine = [s for s in specs if s.entry == "st" and (s.search or s.after).target == target]
        lam = [s for s in mine if s.search is not None][-1].cfg["optim"]["lam"]
        # seed 0 at its calibrated round and seeds 1, 2 at the same λ: the mean of three
        expected = round(curve(lam), 6)
        got = {s.cfg["optim"]["target"] for s in gmp if s.point.get("target_sparsity") == target}
        assert got == {expected}


def test_with_one_seed_dependents_wait_for_the_whole_search(tmp_path):
    """One seed (the imagenet profile): the dependency is round 1 alone, and the dependents
    must still wait for the search to end and take its calibrated round, not round 1. A
    calibrated dependent (target_from + calibrate) searches for that sparsity."""
    curve = lambda lam: logistic(lam, mid=0.05)
    prof, results, specs, launcher, state = run_profile(tmp_path, PROFILE.format(repo=sweep.REPO).replace(
        "seeds: [0, 1, 2]", "seeds: [0]") + f"""
  - name: gmp
    config: {sweep.REPO}/configs/quick/gmp.yaml
    target_from: st
  - name: xrda
    config: {sweep.REPO}/configs/quick/xrda.yaml
    target_from: st
    calibrate: {{key: optim.lam, start: 1.0e-4, tolerance: 0.3, rounds: 6}}
""", curve)
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    for target in (0.9, 0.99):
        rounds = [s for s in specs if s.entry == "st" and s.search is not None and s.search.target == target]
        assert len(rounds) > 1                                  # a real search, not round 1 alone
        calibrated = round(curve(rounds[-1].cfg["optim"]["lam"]), 6)
        (g,) = [s for s in specs if s.entry == "gmp" and s.point.get("target_sparsity") == target]
        assert g.cfg["optim"]["target"] == calibrated
        assert launcher.started.index(g.name) > launcher.started.index(rounds[-1].name)
        x = [s for s in specs if s.entry == "xrda" and s.point.get("target_sparsity") == target]
        assert {s.search.target for s in x} == {calibrated}
    ready, waiting = sweep.known(sweep.expand(str(prof)), results)   # the dry run agrees
    assert {s.name for s in ready} == {s.name for s in specs} and not waiting
