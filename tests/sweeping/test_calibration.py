"""The λ search of a profile's `calibrate` on synthetic sparsity(λ) curves, and end to end
through the scheduler with train.py replaced by a stub that writes what a run would."""
import math

import pytest

import sweep
from sparsecs.sweeping.search import SIDE_TOL, WHY
from tests.conftest import StandInLauncher


def search_until_done(curve, target, start=1e-3, tol=0.3, rounds=6, collapse=lambda lam: False):
    s = sweep.Search("optim.lam", start, tol, rounds, target)
    value = start
    while value is not None:
        value = s.record(value, curve(value), collapse(value))
    return s


def logistic(lam, mid=1e-3, k=1.2):
    """Nonzero fraction falls as a power of λ: log(1 - s) linear in log λ (a smooth curve)."""
    return 1.0 - 1.0 / (1.0 + (lam / mid) ** k)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99, 0.995])
@pytest.mark.parametrize("start", [1e-5, 1e-3, 1e-1])
def test_search_hits_the_tolerance_within_the_round_limit_and_keeps_every_round(target, start):
    s = search_until_done(logistic, target, start=start)
    assert not s.failed and s.status == "reached" and not s.reason
    lam, sp, fell = s.history[-1]
    assert s.within(sp) and abs((1 - sp) / (1 - target) - 1) <= 0.3 and not fell
    assert s.best() == s.history[-1] and s.value() == lam
    assert 1 <= len(s.history) <= 6
    assert s.history[0][0] == start                     # every round is kept, in order
    assert len({v for v, _, _ in s.history}) == len(s.history)


def test_a_plateau_below_the_target_ends_not_reached_and_runs_no_followers():
    stuck = lambda lam: min(0.9, logistic(lam))         # saturates at 90% sparsity
    s = search_until_done(stuck, 0.99, rounds=8)
    assert s.done and s.status == "not reached" and not s.failed
    assert s.why == "plateau" and s.reason.startswith("plateau: highest 0.9000 at optim.lam=")
    assert "sparsity stays at 0.9000 (below the target)" in s.reason
    assert s.best()[1] == pytest.approx(0.9)            # shown ...
    assert s.value() is None                            # ... never a matched point
    assert len(s.history) < 8                           # detected, not run to the round limit


def test_a_plateau_above_the_target_ends_not_reached():
    # every λ tried gives 99.5% or more (a method that cannot be made denser than that)
    s = search_until_done(lambda lam: max(0.995, logistic(lam)), 0.9, start=1e-2, rounds=8)
    assert s.status == "not reached" and "(above the target)" in s.reason and s.value() is None


def test_rounds_exhausted_is_not_reached_and_the_closest_round_is_only_shown():
    s = search_until_done(lambda lam: logistic(lam, k=0.05), 0.99, rounds=3)  # a very flat curve
    assert len(s.history) == 3 and not s.failed and s.status == "not reached"
    assert s.why == "rounds exhausted" and s.reason.startswith("rounds exhausted: highest ")
    yt = math.log(0.01)
    assert s.best() == min(s.history, key=lambda h: abs(math.log(1 - h[1]) - yt))
    assert s.value() is None and s.note == f"not reached: {s.reason}"


def test_on_miss_closest_lets_followers_run_at_the_closest_round():
    s = sweep.Search("optim.lam", 1e-3, 0.3, 3, 0.99, on_miss="closest")
    v = 1e-3
    while v is not None:
        v = s.record(v, logistic(v, k=0.05), False)
    assert s.status == "not reached" and s.value() == s.best()[0]


def test_a_collapsed_round_is_an_upper_bracket_never_the_calibrated_point():
    # healthy up to λ = 2e-3, collapsed beyond: the target 99.5% (λ ≈ 8e-2 on this curve) lies
    # in the collapse, so the search narrows onto the edge and ends not reached
    curve = lambda lam: logistic(lam, mid=1e-4, k=1.0)
    s = search_until_done(curve, 0.9995, start=1e-3, rounds=8, collapse=lambda lam: lam > 2e-3)
    assert s.status == "not reached" and "collapses at optim.lam >=" in s.reason
    assert all(not fell for v, sp, fell in s.history if v <= 2e-3)
    assert s.value() is None and not s.best()[2]         # the closest shown is a healthy round
    # a round within tolerance that collapsed does not end the search: a smaller λ can still
    # reach the target healthy (here λ in (1e-3, 2e-3) gives 90.9-95.2%, the target 93%)
    s = search_until_done(curve, 0.93, start=5e-3, rounds=8, collapse=lambda lam: lam > 2e-3)
    assert s.status == "reached" and not s.history[-1][2] and s.history[0][2]


def test_a_non_monotone_response_is_bisected_inside_its_bracket():
    # sparsity rises with λ, dips between 1e-3 and 3e-3, then rises again: the search must stay
    # inside a bracket (a round below and a round above the target, adjacent in λ)
    def bumpy(lam):
        base = logistic(lam)
        return base - 0.3 * math.exp(-((math.log(lam) - math.log(2e-3)) / 0.3) ** 2)
    s = search_until_done(bumpy, 0.8, start=1e-4, rounds=10)
    assert s.status == "reached"
    lam, sp, _ = s.history[-1]
    assert s.within(sp)


def test_bracketing_steps_at_most_tenfold_then_interpolates_inside_the_bracket():
    s = sweep.Search("optim.lam", 1e-6, 0.3, 10, 0.99)
    nxt = s.record(1e-6, logistic(1e-6))
    assert nxt == pytest.approx(1e-5)                   # far below: the ×10 cap
    # once bracketed: the secant in log-log between the bracket's ends, kept inside its
    # middle 60% (t in [0.2, 0.8])
    s = sweep.Search("optim.lam", 1e-3, 0.3, 10, 0.9)
    s.history = [(1e-3, 0.5, False), (1e-1, 0.999, False)]
    v = s.next_value()
    t = (math.log(0.1) - math.log(0.5)) / (math.log(0.001) - math.log(0.5))
    t = min(max(t, 0.2), 0.8)
    assert math.log(v) == pytest.approx(math.log(1e-3) + t * (math.log(1e-1) - math.log(1e-3)))
    # a collapsed upper end: plain bisection in log λ
    s.history = [(1e-3, 0.5, False), (1e-1, 0.999, True)]
    assert s.next_value() == pytest.approx(1e-2)


def test_a_bracket_that_cannot_shrink_says_the_response_jumps():
    s = sweep.Search("optim.lam", 1e-3, 0.3, 10, 0.9)
    s.history = [(1.00e-3, 0.5, False), (1.04e-3, 0.999, False)]
    assert s.next_value() is None and s.status == "not reached"
    assert s.why == "jump" and "the response jumps from 0.5000" in s.reason


def FakeLauncher(results, curve):
    """Runs nothing: 'finishes' each run by writing what train.py would, with the sparsity a
    synthetic curve gives for its λ."""
    from sparsecs import fileio
    from sparsecs import paths

    def write(results, s):
        o = s.cfg["optim"]
        sp = curve(o["lam"]) if "lam" in o else o.get("target", 0.0)
        d = paths.run_dir(results, s.name)
        fileio.save_json({"run": s.name, "sparsity": sp, "train_acc": 90.0, "dataset": s.cfg["dataset"],
                        **s.cfg["identity"]}, paths.path(d, paths.SUMMARY))
        open(paths.path(d, paths.MODEL), "wb").close()

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


def test_unreachable_target_runs_no_followers_and_is_not_a_failure(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", "[0.99]"))
    results = str(tmp_path / "results")
    state = sweep.run_all(specs := sweep.expand(str(prof)), results,
                          FakeLauncher(results, lambda lam: min(0.5, logistic(lam, mid=0.05))))
    not_run = [s for s in specs if state[id(s)][0] == "not run"]
    assert sorted(s.seed for s in not_run) == [1, 2]
    assert "not reached" in state[id(not_run[0])][1]
    assert not [s for s in specs if state[id(s)][0] in ("failed", "blocked")]


def test_followers_of_a_missed_search_are_settled_not_waiting(tmp_path, capsys, monkeypatch):
    """The seeds that follow a search that missed its target, and a run that takes its target
    from it, never run: the dry run and the report count them apart from runs still to come,
    so that they do not hold the profile's verdicts back for ever."""
    from sparsecs.reporting import load
    from sparsecs.sweeping import plan

    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", "[0.99]") + f"""
  - name: gmp
    config: {sweep.REPO}/configs/quick/gmp.yaml
    target_from: st
""")
    results = str(tmp_path / "results")
    curve = lambda lam: min(0.5, logistic(lam, mid=0.05))
    sweep.run_all(sweep.expand(str(prof)), results, FakeLauncher(results, curve))
    ready, waiting = sweep.known(sweep.expand(str(prof)), results)
    why = {(s.entry, s.seed): plan.never_runs(s) for s in waiting}
    # st seeds 1-2 follow the missed search; gmp's 3 seeds take their target from it
    assert sorted(why) == [("gmp", 0), ("gmp", 1), ("gmp", 2), ("st", 1), ("st", 2)]
    assert all(why[("st", k)].startswith("its λ search did not reach its target (not reached:") for k in (1, 2))
    assert all("whose λ search did not reach its target" in why[("gmp", k)] for k in range(3))
    n_rounds = len(ready)
    assert sweep.dry_run(sweep.expand(str(prof)), results) == 0
    out = capsys.readouterr().out
    assert (f"{n_rounds + 5} runs: {n_rounds} finished, 0 to run, 0 waiting on a dependency or a λ search, "
            f"5 never run (their λ search did not reach its target)") in out
    assert "cost: nothing left to train" in out
    # the fake runs' summaries hold no metrics: count a run done as the sweep does
    monkeypatch.setattr(load, "_complete", lambda cfg, res: plan.is_finished(cfg, res))
    names, n_waiting, n_not_run = load.expected(str(prof), results)
    assert len(names) == n_rounds and (n_waiting, n_not_run) == (0, 5)


def test_a_search_still_running_keeps_its_followers_waiting(tmp_path):
    from sparsecs.sweeping import plan

    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", "[0.99]"))
    ready, waiting = sweep.known(sweep.expand(str(prof)), str(tmp_path / "results"))
    assert len(ready) == 1 and len(waiting) == 2 and not any(plan.never_runs(s) for s in waiting)


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


def test_a_chained_search_starts_from_the_previous_targets_rounds(tmp_path):
    """calibrate.chain: the search for 0.99 waits for the one for 0.9 and starts where its
    rounds point, so it needs fewer rounds than from the fixed start; the dry run agrees."""
    curve = lambda lam: logistic(lam, mid=0.05)
    text = PROFILE.format(repo=sweep.REPO).replace("rounds: 6}", "rounds: 6, chain: true}")
    prof, results, specs, launcher, state = run_profile(tmp_path, text, curve)
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    first = [s for s in specs if s.search is not None and s.search.target == 0.9]
    second = [s for s in specs if s.search is not None and s.search.target == 0.99]
    assert second[0].search.chain is first[0].search
    # round 1 of the second search ran after the first search's last round, at the value the
    # first search's rounds give for 0.99 (not at `start`)
    assert launcher.started.index(second[0].name) > launcher.started.index(first[-1].name)
    assert second[0].cfg["optim"]["lam"] == pytest.approx(second[0].search.first_value())
    assert second[0].cfg["optim"]["lam"] != 1e-2
    assert second[0].search.status == "reached"
    ready, waiting = sweep.known(sweep.expand(str(prof)), results)
    assert {s.name for s in ready} == {s.name for s in specs} and not waiting


# --- the end targets of an entry calibrate on their outer side (Search.side) ---------------

from sparsecs.reporting import compare as K


def lam_for(sparsity, mid=1e-3, k=1.2):
    """The λ at which logistic() gives this sparsity (its inverse)."""
    return mid * (1.0 / (1.0 - sparsity) - 1.0) ** (1.0 / k)


def gap(sparsity, target):
    """log nonzeros of a round minus the target's: > 0, less sparse than the target."""
    return math.log(1 - sparsity) - math.log(1 - target)


@pytest.mark.parametrize("target, side, inner", [(0.9, -1, 0.915), (0.99, 1, 0.988)])
def test_an_end_target_goes_on_past_a_round_within_tolerance_on_its_inner_side(target, side, inner):
    start = lam_for(inner)
    plain = sweep.Search("optim.lam", start, 0.3, 6, target)
    assert plain.record(start, logistic(start)) is None and plain.status == "reached"  # ±30% alone
    s = sweep.Search("optim.lam", start, 0.3, 6, target, side=side)
    nxt = s.record(start, logistic(start))
    assert nxt is not None and not s.done and s.settled()       # near: a later target may start
    # more penalty for the lowest target is wrong: it asks for less; for the highest, more
    assert (nxt < start) == (side == -1)
    while nxt is not None:
        nxt = s.record(nxt, logistic(nxt))
    assert s.status == "reached" and s.history[0][0] == start    # the inner round is kept
    lam, sp, _ = s.best()
    assert s.value() == lam and abs((1 - sp) / (1 - target) - 1) <= 0.3
    assert side * gap(sp, target) <= SIDE_TOL + 1e-12          # on the outer side (or at it)


@pytest.mark.parametrize("side, target", [(-1, 0.9), (1, 0.99)])
def test_within_cover_tol_of_an_end_target_counts_from_either_side(side, target):
    s = sweep.Search("optim.lam", 1e-3, 0.3, 6, target, side=side)
    at = 1 - (1 - target) * math.exp(side * 0.5 * SIDE_TOL)     # inner side, half the tolerance
    off = 1 - (1 - target) * math.exp(side * 2 * SIDE_TOL)      # inner side, twice it
    assert abs(gap(at, target)) == pytest.approx(0.5 * SIDE_TOL) and s.within(at)
    assert not s.within(off) and s.near(off)
    assert sweep.Search("optim.lam", 1e-3, 0.3, 6, target, side=-side).within(off)   # the other end: outer


def test_the_next_targets_chain_start_ignores_the_rounds_after_the_first_near_one():
    prev = sweep.Search("optim.lam", 1e-3, 0.3, 6, 0.9, side=-1)
    nxt = sweep.Search("optim.lam", 1e-3, 0.3, 6, 0.95, chain=prev)
    lo = lam_for(0.5)
    prev.record(lo, logistic(lo))
    assert not prev.settled()
    inner = lam_for(0.915)
    prev.record(inner, logistic(inner))
    assert prev.settled() and not prev.done
    before = nxt.first_value()
    # what a plain search with the same two rounds gives the next target (the old rule)
    ref = sweep.Search("optim.lam", 1e-3, 0.3, 6, 0.9)
    ref.record(lo, logistic(lo)); ref.record(inner, logistic(inner))
    assert ref.done and before == sweep.Search("optim.lam", 1e-3, 0.3, 6, 0.95, chain=ref).first_value()
    far = lam_for(0.885)
    assert prev.record(far, logistic(far)) is None and prev.status == "reached"
    assert nxt.first_value() == before                           # the extra round moved nothing


def _sides(tmp_path, targets, chain):
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", str(targets))
                    .replace("rounds: 6}", f"rounds: 6, chain: {str(chain).lower()}}}"))
    return {s.search.target: s.search.side for s in sweep.expand(str(prof)) if s.search is not None}


def test_the_profile_gives_the_lowest_and_highest_targets_their_side(tmp_path):
    assert _sides(tmp_path, [0.95, 0.9, 0.99], True) == {0.9: -1, 0.95: 0, 0.99: 1}
    assert _sides(tmp_path, [0.95, 0.9, 0.99], False) == {0.9: -1, 0.95: 0, 0.99: 1}
    assert _sides(tmp_path, [0.9], True) == {0.9: 0}            # one point: nothing to bracket


def test_every_seeds_curve_reaches_both_end_levels(tmp_path):
    """The scheduler end to end, round 1 landing inside the lowest target (91.5% for 90%):
    the followers run at the outer round, so each seed's own curve covers 90% and 99%."""
    curve = logistic
    text = (PROFILE.format(repo=sweep.REPO).replace("rounds: 6}", "rounds: 6, chain: true}")
            .replace("start: 1.0e-2", f"start: {lam_for(0.915)!r}"))
    prof, results, specs, launcher, state = run_profile(tmp_path, text, curve)
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    low = [s for s in specs if s.search is not None and s.search.target == 0.9]
    assert len(low) >= 2 and curve(low[0].cfg["optim"]["lam"]) == pytest.approx(0.915)
    pts = [(s.seed, K.log_nnz(curve(s.cfg["optim"]["lam"]), 1e6), 90.0) for s in specs]
    got = K.at_levels(pts, (0.9, 0.99), lambda lv: K.log_nnz(lv, 1e6))
    assert {lv: len(v) for lv, v in got.items()} == {0.9: 3, 0.99: 3}
    # under the old rule (no side) seeds 1 and 2 would stand at 91.5% only: 90% not covered
    plain = [(seed, K.log_nnz(0.915, 1e6), 90.0) for seed in (1, 2)]
    assert K.at_levels(plain, (0.9,), lambda lv: K.log_nnz(lv, 1e6))[0.9] == []


class OneAtATime(StandInLauncher):
    """Runs end one at a time, oldest first; records the most that ran at once."""

    def __init__(self, results, write, slots=2):
        super().__init__(results, write, slots)
        self.most = 0

    def wait(self, handles):
        self.most = max(self.most, len(handles))
        h = next(iter(handles))
        return [(handles[h], 0, "")]


def test_a_resumed_search_fills_the_free_slot_while_another_run_trains(tmp_path):
    """A sweep resumed with a search's rounds on disk replays them one scheduler pass per
    round; those passes must not wait for the run already training (one slot sat idle until
    it ended: seen resuming the fashion profile)."""
    curve = lambda lam: logistic(lam, mid=0.05)
    text = PROFILE.format(repo=sweep.REPO) + f"""
  - name: gmp
    config: {sweep.REPO}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.5]}}
"""
    prof, results, specs, launcher, state = run_profile(tmp_path, text, curve)
    from sparsecs import paths
    import shutil
    followers = [s for s in specs if s.after is not None]
    gmp = [s for s in specs if s.entry == "gmp"]
    assert len(followers) == 4 and len(gmp) == 3
    for s in followers[:1] + gmp[:1]:           # one follower and one gmp run to train again
        shutil.rmtree(paths.run_dir(results, s.name))
    write = lambda results, s: FakeLauncher(results, curve).write(results, s)
    again = OneAtATime(results, write)
    state = sweep.run_all(sweep.expand(str(prof)), results, again)
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    assert sorted(again.started) == sorted([followers[0].name, gmp[0].name])
    assert again.most == 2                       # both trained at once


def test_the_report_says_why_an_end_search_within_tolerance_goes_on():
    from sparsecs.reporting import load
    s = sweep.Search("optim.lam", 1e-3, 0.3, 6, 0.9, label="st", side=-1)
    inner = lam_for(0.915)
    s.record(inner, logistic(inner))
    (row,) = load.search_rows([("st", s)])
    assert row["status"] == "searching" and row["sparsity"] == pytest.approx(0.915)
    assert row["reason"].startswith("the entry's lowest target: within tolerance but on its inner side")
    far = lam_for(0.885)
    s.record(far, logistic(far))
    (row,) = load.search_rows([("st", s)])
    assert row["status"] == "reached" and row["reason"] == ""


# ------------------------------------------------------------------ issue 33: turn-over, cover

def searched(target, history, side=0, rounds=5):
    """A search with these rounds recorded (no replay): next_value() is what it asks next."""
    s = sweep.Search("optim.lam", history[0][0], 0.3, rounds, target, side=side)
    s.history = [(float(v), float(sp), bool(c)) for v, sp, c in history]
    return s


def test_a_turn_over_is_bisected_between_the_best_round_and_it_never_beyond():
    # xRDA's committed 99% rounds (fashion): 1.67e-4 -> 98.50%, 2.5e-4 -> 96.88% (a larger λ,
    # less sparse). The old rule extrapolated ×10 from the largest λ (2.5e-3), then bisected
    # toward the collapse at 0.025; the answer lies between the first two rounds.
    s = searched(0.99, [(1.67049e-4, 0.98499, False), (2.50792e-4, 0.96883, False)], side=1)
    assert s.next_value() == pytest.approx(math.sqrt(1.67049e-4 * 2.50792e-4))   # 2.0468e-4
    # with the old path's later rounds on record too (a collapse beyond the turn-over), still
    # inside the turn-over bracket
    s = searched(0.99, [(1.67049e-4, 0.98499, False), (2.50792e-4, 0.96883, False),
                        (2.50792e-3, 0.96570, False), (2.50792e-2, 0.94727, True)], side=1)
    assert s.next_value() == pytest.approx(2.0468172e-4)


def test_a_response_that_peaks_below_the_target_ends_at_its_ceiling():
    # sparsity peaks at 98.5% at λ = 1e-3 and falls on both sides (in log λ): 99% is out of reach
    peak = lambda lam: 0.985 - 0.02 * (math.log10(lam) + 3) ** 2
    s = search_until_done(peak, 0.99, start=5e-4, rounds=12)
    assert s.status == "not reached" and s.why == "ceiling" and s.value() is None
    first_less = next(v for v, sp, _ in s.history if v > 1e-3 and sp < max(h[1] for h in s.history))
    assert max(v for v, _, _ in s.history) == first_less        # nothing beyond the turn-over
    top = max(s.history, key=lambda h: h[1])
    assert s.reason.startswith(f"ceiling: highest {top[1]:.4f} at optim.lam={top[0]:g}; a larger optim.lam gives less")


def test_a_plateau_after_the_best_round_ends_the_search():
    # LATS's committed 99% rounds: 98.77, 98.87, 98.83% while λ grows ×2.66 (Δ log nonzeros 0.086):
    # the old rule stepped ×10 to λ 0.53 (collapsed), then 0.17 (collapsed)
    s = searched(0.99, [(0.0199339, 0.98767, False), (0.0299009, 0.98869, False),
                        (0.0530643, 0.98830, False)], side=1)
    assert s.next_value() is None and s.status == "not reached" and s.why == "plateau"
    assert s.reason.startswith("plateau: highest 0.9887 at optim.lam=0.0299009; sparsity stays within "
                               "0.9877-0.9887 for optim.lam from 0.0199339 to 0.0530643")
    # the same three rounds, sparsity still moving (98.0 -> 98.87 -> 98.83): a turn-over, bisected
    s = searched(0.99, [(0.0199339, 0.980, False), (0.0299009, 0.98869, False),
                        (0.0530643, 0.98830, False)], side=1)
    assert s.next_value() == pytest.approx(math.sqrt(0.0299009 * 0.0530643))


def test_a_collapse_inside_the_turn_over_bracket_becomes_its_upper_end():
    # best 95% at 1e-3, less sparse at 4e-3: bisect at 2e-3; that round collapses: bisect
    # between the best round and the collapse (√(1e-3 · 2e-3)); narrower than ×1.05: collapse
    s = searched(0.99, [(1e-3, 0.95, False), (4e-3, 0.93, False)], side=1)
    assert s.next_value() == pytest.approx(2e-3)
    s.history.append((2e-3, 0.97, True))
    assert s.next_value() == pytest.approx(math.sqrt(2e-6))
    s = searched(0.99, [(1e-3, 0.95, False), (1.04e-3, 0.6, True)], side=1)
    assert s.next_value() is None and s.why == "collapse"
    assert s.reason == "collapse: highest 0.9500 at optim.lam=0.001; collapses at optim.lam >= 0.00104"


def test_a_collapse_beyond_the_turn_over_draws_no_round_there():
    s = searched(0.99, [(1e-3, 0.95, False), (4e-3, 0.93, False), (4e-2, 0.5, True)], side=1)
    assert s.next_value() == pytest.approx(2e-3)                 # old rule: √(4e-3 · 4e-2)


def test_every_missed_reason_starts_with_its_word_and_the_highest_sparsity():
    s = search_until_done(lambda lam: logistic(lam, k=0.05), 0.99, rounds=3)
    top = max(s.history, key=lambda h: h[1])
    assert s.why == "rounds exhausted"
    assert s.reason == f"rounds exhausted: highest {top[1]:.4f} at optim.lam={top[0]:g}; 3 rounds"
    assert s.note == f"not reached: {s.reason}"
    from sparsecs.reporting import load
    (row,) = load.search_rows([("st", s)])
    assert row["reason"].split(":")[0] == "rounds exhausted"
    assert set(WHY) == {"ceiling", "plateau", "collapse", "jump", "rounds exhausted",
                        "rounds exhausted in a turn-over"}


def test_rounds_that_run_out_inside_a_turn_over_say_so():
    """fashion8's xRDA 99% rounds, recorded in their order: 1.67e-4 -> 98.53%, 2.51e-4 -> 98.14%
    (a larger λ, less sparse: a turn-over), bisected at 2.05e-4 -> 96.81%, 1.85e-4 -> 98.54%,
    1.94e-4 -> 98.25%. After round 5 the search would bisect between the best round (1.85e-4)
    and 1.94e-4, ×1.051 apart (just wider than NARROW, so not yet a ceiling): the reason names the
    turn-over and its larger round. A search that runs out while still stepping does not."""
    rounds = [(1.67049e-4, 0.985329), (2.50574e-4, 0.981386), (2.04592e-4, 0.968114),
              (1.84870e-4, 0.985374), (1.94481e-4, 0.982517)]
    s = sweep.Search("optim.lam", rounds[0][0], 0.3, 5, 0.99, side=1)
    asked = [s.record(v, sp) for v, sp in rounds]
    assert asked[:4] == [pytest.approx(r[0], rel=2e-3) for r in rounds[1:]]
    assert asked[4] is None and s.status == "not reached" and s.why == "rounds exhausted in a turn-over"
    assert s.reason == ("rounds exhausted in a turn-over: highest 0.9854 at optim.lam=0.00018487; 5 rounds; "
                        "a larger optim.lam gives less: 0.9825 at 0.000194481")
    # the same first two rounds with a budget of 2: the turn-over is being bisected when they run out
    s = sweep.Search("optim.lam", rounds[0][0], 0.3, 2, 0.99, side=1)
    s.record(*rounds[0])
    assert s.record(*rounds[1]) is None and s.why == "rounds exhausted in a turn-over"
    # rounds that only step up (no larger round gave less): plain "rounds exhausted"
    s = sweep.Search("optim.lam", 1e-4, 0.3, 2, 0.99, side=1)
    s.record(1e-4, 0.95)
    assert s.record(2e-4, 0.97) is None and s.why == "rounds exhausted"


def test_a_missed_search_past_the_neighbouring_target_runs_its_followers_at_its_best_round():
    s = searched(0.99, [(0.0199339, 0.98767, False), (0.0299009, 0.98869, False),
                        (0.0530643, 0.98830, False)], side=1)
    s.targets = [0.9, 0.95, 0.98, 0.99]
    s.next_value()
    assert s.value() is None and s.follower_value() == pytest.approx(0.0299009)   # 98.87% > 98%
    s.targets = [0.9, 0.99]
    assert s.follower_value() == pytest.approx(0.0299009)                         # > 90%
    s.history = [(0.01, 0.975, False), (0.03, 0.976, False), (0.06, 0.9755, False)]
    s.targets = [0.9, 0.95, 0.98, 0.99]
    assert s.follower_value() is None               # 97.6% < 98%: it would cover no level
    s.targets = [0.99]
    assert s.follower_value() is None               # no neighbouring target


def test_a_level_a_seed_misses_by_a_fifth_of_a_point_is_covered_by_the_missed_searchs_followers(tmp_path):
    """End to end: the 99% search plateaus at 98.8%; its followers run at its best round, so a
    seed whose 98% point stands at 97.8% (0.2 pp short) still has 98% inside its own curve."""
    cap = 0.988
    curve = lambda lam: min(cap, logistic(lam))
    text = (PROFILE.format(repo=sweep.REPO).replace("[0.9, 0.99]", "[0.9, 0.98, 0.99]")
            .replace("rounds: 6}", "rounds: 6, chain: true}"))
    prof, results, specs, launcher, state = run_profile(tmp_path, text, curve)
    high = [s for s in specs if (s.search or s.after).target == 0.99]
    search = high[0].search
    assert search.status == "not reached" and search.why == "plateau"
    followers = [s for s in high if s.after is not None]
    assert sorted(s.seed for s in followers) == [1, 2]
    assert all(state[id(s)][0] == "finished" for s in followers)        # old rule: "not run"
    best = search.best()[0]
    assert all(s.cfg["optim"]["lam"] == best for s in followers)
    assert all(s.cfg["identity"]["calibration_status"] == "not reached" for s in followers)
    # seed 1 of such a profile: its 98% point 0.2 pp short, its cover point at 98.8%
    pts = [(1, K.log_nnz(0.978, 1e6), 88.0), (1, K.log_nnz(0.988, 1e6), 86.0)]
    (acc,) = K.at_levels(pts, (0.98,), lambda lv: K.log_nnz(lv, 1e6))[0.98]
    t = (math.log(0.02) - math.log(0.022)) / (math.log(0.012) - math.log(0.022))
    assert acc == pytest.approx(88.0 + t * (86.0 - 88.0))
    assert K.at_levels(pts[:1], (0.98,), lambda lv: K.log_nnz(lv, 1e6))[0.98] == []   # never extrapolated


def test_a_seed_within_five_percent_of_a_level_in_nonzeros_stands_at_it():
    # STR's 99% point: seed 1 at 98.98% (2% more nonzeros); the sine schedule's 90%: seed 2 at
    # 90.16% (1.6% fewer). Both stood outside the old 1%; 98.9% (10%) stays outside.
    lv = lambda level: K.log_nnz(level, 1e6)
    at = lambda sp, level: K.at_levels([(0, lv(0.95), 90.0), (0, lv(sp), 80.0)], (level,), lv)[level]
    assert at(0.9898, 0.99) == [80.0]
    assert at(0.989, 0.99) == []
    assert K.at_levels([(0, lv(0.9016), 91.0), (0, lv(0.95), 90.0)], (0.9,), lv)[0.9] == [91.0]
    assert K.COVER_TOL == pytest.approx(K.MATCH_TOL / 2)


def test_a_calibrated_entry_may_start_from_another_entrys_weights(tmp_path):
    """xRDA from the dense model (issue 33): a λ search with init_from; each seed starts from
    its own seed's dense run (before: a ProfileError, and a fixed λ grid in its place)."""
    prof = tmp_path / "p.yaml"
    prof.write_text(f"""
seeds: [0, 1, 2]
runs:
  - name: dense
    config: {sweep.REPO}/configs/quick/sgd.yaml
  - name: fromdense
    config: {sweep.REPO}/configs/quick/xrda.yaml
    init_from: dense
    target_sparsity: [0.9, 0.99]
    calibrate: {{key: optim.lam, start: 3.0e-4, tolerance: 0.3, rounds: 5, chain: true}}
""")
    specs = sweep.expand(str(prof))
    dense = {s.seed: s for s in specs if s.entry == "dense"}
    mine = [s for s in specs if s.entry == "fromdense"]
    assert len(mine) == 6 and all(s.init_from is dense[s.seed] for s in mine)
    assert [s.seed for s in mine if s.search is not None] == [0, 0]
    assert all(s.after is not None for s in mine if s.seed != 0)


# --- calibrate.start_from: round 1 at another budget's calibrated value x the method's factor --

from sparsecs.optim.rda_methods import XRDAMethod
from sparsecs.optim.soft_threshold import SoftThreshold
from sparsecs.optim.str_method import STR
from sparsecs.sweeping import startfrom

# Fashion-MNIST at batch 128: 469 steps an epoch; a cosine lr from 0.1 sums to
# 0.1 * (N - 1) / 2 over N steps (the cosines of t = 1..N sum to -1)
S8, S32 = 0.1 * (8 * 469 - 1) / 2, 0.1 * (32 * 469 - 1) / 2        # 187.55, 750.35
LATS_4X = (0.1 + 5e-4 * S8) / (0.1 + 5e-4 * S32)                      # 0.193775 / 0.475175

BUDGET = """
seeds: [0, 1]
overrides: [dataset=fashion_mnist, model=resnet20, width=0.5, epochs={epochs}, batch_size=128]
runs:
  - name: st
    config: {repo}/configs/quick/soft_threshold.yaml
    target_sparsity: {targets}
    calibrate: {{key: optim.lam, start: 1.0e-2, tolerance: 0.3, rounds: 6, chain: true{extra}}}
"""


def budget_launcher(results, mid8, cap=1.0, only=None):
    """Writes each run with the sparsity of a world whose λ scale follows the LATS factor:
    logistic(λ, mid) with mid = mid8 at 8 epochs, mid8 x LATS_4X at 32, at most `cap`;
    with `only`, runs of other epochs are left unwritten (found on disk already)."""
    from sparsecs import fileio
    from sparsecs import paths

    def write(results, s):
        if only is not None and s.cfg["epochs"] != only:
            return
        mid = mid8 * (LATS_4X if s.cfg["epochs"] == 32 else 1.0)
        sp = min(cap, logistic(s.cfg["optim"]["lam"], mid=mid))
        d = paths.run_dir(results, s.name)
        fileio.save_json({"run": s.name, "sparsity": sp, "train_acc": 90.0, "dataset": s.cfg["dataset"],
                        **s.cfg["identity"]}, paths.path(d, paths.SUMMARY))
        open(paths.path(d, paths.MODEL), "wb").close()
    return StandInLauncher(results, write)


def budget_profile(tmp_path, name, epochs, targets, extra="", results=None, run=True, **world):
    prof = tmp_path / f"{name}.yaml"
    prof.write_text(BUDGET.format(repo=sweep.REPO, epochs=epochs, targets=targets, extra=extra))
    results = results or str(tmp_path / "results")
    specs = sweep.expand(str(prof))
    launcher = budget_launcher(results, world.pop("mid8", 0.05), **world)
    if run:
        sweep.run_all(specs, results, launcher)
    return prof, results, specs, launcher


def test_the_budget_factors_by_hand(tmp_path):
    _, _, specs, _ = budget_profile(tmp_path, "p8", 8, "[0.9]", run=False)
    cfg = sweep.materialize(specs[0], str(tmp_path / "r")).cfg
    assert startfrom.budget(cfg)["steps"] == 3752 and startfrom.budget(cfg)["lr_sum"] == pytest.approx(187.55)
    old, new = {"hp": {"momentum": 0.9, "weight_decay": 5e-4}, "lr_sum": S8}, {"hp": {}, "lr_sum": S32}
    # LATS: κ = 0.1 λ + 5e-4 λ Σlr kept: 0.193775 / 0.475175 on λ ...
    assert SoftThreshold.budget_factor("lam", old, new)[0] == pytest.approx(0.193775 / 0.475175)
    # ... and (0.1 / 187.55 + 5e-4) / (0.1 / 750.35 + 5e-4) on a final threshold D
    assert SoftThreshold.budget_factor("final_threshold", old, new)[0] == pytest.approx(
        (0.1 / 187.55 + 5e-4) / (0.1 / 750.35 + 5e-4))
    no_wd = {"weight_decay": 0.0}
    assert SoftThreshold.budget_factor("lam", {**old, "hp": no_wd}, {**new, "hp": no_wd})[0] == 1.0  # ISTA
    # xRDA: the 8-epoch λ 1.67e-4 (98.5% sparse) is round 1 at 4x the budget as it is
    assert 1.67e-4 * XRDAMethod.budget_factor("lam", old, new)[0] == 1.67e-4
    assert STR.budget_factor("s_weight_decay", old, new)[0] == 1.0


def test_start_from_starts_at_the_calibrated_value_times_the_factor(tmp_path, capsys):
    src, results, specs, _ = budget_profile(tmp_path, "p8", 8, "[0.9, 0.99]")
    calibrated = {s.search.target: s.search.value() for s in specs if s.search is not None}
    assert all(calibrated.values())
    extra = f", start_from: {{profile: {src}, entry: st}}"
    prof, _, new, launcher = budget_profile(tmp_path, "p32", 32, "[0.9, 0.99]", extra, results, run=False)
    r1 = sweep.materialize(new[0], results)
    assert r1.cfg["optim"]["lam"] == pytest.approx(calibrated[0.9] * 0.193775 / 0.475175)
    # the dry run says where round 1 comes from, and the next target waits on the first
    assert sweep.main([str(prof), "--dry-run", "--results", results]) == 0
    out = capsys.readouterr().out
    assert f"start_from p8/st at 0.9: optim.lam={calibrated[0.9]:g} (calibrated" in out
    assert f"x {LATS_4X:.4g}" in out and "or the factor the previous target's search measures" in out
    sweep.run_all(new, results, launcher)
    s9, s99 = (next(s.search for s in new if s.search is not None and s.search.target == t) for t in (0.9, 0.99))
    assert len(s9.history) == 1 and s9.status == "reached"   # the world follows the factor: one round
    # 0.99 starts from its source value times the factor 0.9's search measured
    near = s9.history[0][0] / calibrated[0.9]
    assert s99.history[0][0] == pytest.approx(calibrated[0.99] * near)


def test_start_from_a_missed_source_uses_its_closest_healthy_round(tmp_path, capsys):
    # the source plateaus at 95% sparsity: its 0.99 search misses; round 1 at its closest round
    src, results, specs, _ = budget_profile(tmp_path, "p8", 8, "[0.99]", cap=0.95)
    search = specs[0].search
    assert search.status == "not reached" and search.why == "plateau"
    closest = search.best()[0]
    extra = f", start_from: {{profile: {src}, entry: st}}"
    prof, _, new, _ = budget_profile(tmp_path, "p32", 32, "[0.99]", extra, results, run=False)
    assert sweep.materialize(new[0], results).cfg["optim"]["lam"] == pytest.approx(closest * LATS_4X)
    assert sweep.main([str(prof), "--dry-run", "--results", results]) == 0
    assert "(missed (plateau): its closest healthy round, sparsity 0.9500)" in capsys.readouterr().out


def test_start_from_without_source_runs_starts_at_start_and_a_new_target_too(tmp_path, capsys):
    src, results, specs, _ = budget_profile(tmp_path, "p8", 8, "[0.9]", run=False)
    extra = f", start_from: {{profile: {src}, entry: st}}"
    prof, _, new, _ = budget_profile(tmp_path, "p32", 32, "[0.9]", extra, results, run=False)
    # a results folder without the source's runs (a fresh one): round 1 at `start`, said so
    assert sweep.main([str(prof), "--dry-run", "--results", results]) == 0
    assert "no λ search rounds of entry 'st'" in capsys.readouterr().out
    assert sweep.materialize(new[0], results).cfg["optim"]["lam"] == 1e-2
    # once the source has run: a target it never searched starts at `start`, said so
    sweep.run_all(specs, results, budget_launcher(results, 0.05))
    prof, _, new, _ = budget_profile(tmp_path, "p32", 32, "[0.8]", extra, results, run=False)
    assert sweep.materialize(new[0], results).cfg["optim"]["lam"] == 1e-2
    assert sweep.main([str(prof), "--dry-run", "--results", results]) == 0
    assert "start_from p8/st at 0.8: p8 has no search for this target; round 1 at start optim.lam=0.01" \
        in capsys.readouterr().out


def test_start_from_bad_values_are_one_line(tmp_path, capsys):
    for bad, says in (("start_from: fashion", "calibrate.start_from must map profile"),
                      ("start_from: {profile: nosuch}", "no profile 'nosuch'"),
                      ("start_from: {profile: fashion, lam: 1}", "calibrate.start_from must map profile")):
        prof = tmp_path / "bad.yaml"
        prof.write_text(BUDGET.format(repo=sweep.REPO, epochs=8, targets="[0.9]", extra=", " + bad))
        assert sweep.main([str(prof), "--dry-run", "--results", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and err.count("\n") == 0


@pytest.mark.parametrize("truth", [1.0, 1.5])
def test_start_from_saves_search_rounds(tmp_path, truth):
    """Rounds of seed 0 for four chained targets at 4x the budget, from `start` and from the
    8-epoch profile; the 32-epoch world's λ scale is the LATS factor times `truth` (1: the
    derivation is right; 1.5: it is off by half)."""
    targets = "[0.9, 0.95, 0.98, 0.99]"
    src, results, _, _ = budget_profile(tmp_path, "p8", 8, targets)

    def rounds(extra, where):
        _, res, new, _ = budget_profile(tmp_path, where, 32, targets, extra, results, run=False)
        sweep.run_all(new, res, budget_launcher(res, 0.05 * truth, only=32))
        return sum(1 for s in new if s.search is not None)
    plain = rounds("", "plain")
    chained = rounds(f", start_from: {{profile: {src}, entry: st}}", "from8")
    print(f"truth x{truth}: {plain} rounds from start, {chained} with start_from")
    assert chained < plain


# ----------------------------------------------------------------------------- fill-ins

def reached(target, rounds, side, fill=1):
    """A search that reached `target` on its last round of `rounds` [(λ, sparsity)]."""
    s = sweep.Search("optim.lam", rounds[0][0], 0.3, 5, target, side=side, fill=fill)
    for lam, sp in rounds:
        s.record(lam, sp)
    assert s.status == "reached"
    return s


def test_a_seed_short_of_the_highest_level_gets_a_fill_in_past_it_by_hand():
    s = reached(0.99, [(1e-3, 0.985), (2e-3, 0.9905)], side=1)
    # seed 1 at the calibrated λ: 98.85% sparse, 1.15x the target's nonzeros (log 0.140 > 0.05).
    # Slope of the search's two rounds: log(0.0095/0.015) / log 2 = -0.6590; aim 0.025 past the
    # level: step = (log 0.01 - 0.025 - log 0.0115) / -0.6590 = 0.2500, λ = 2e-3 * e^0.25
    assert s.fill_value([(2e-3, 0.9885)]) == pytest.approx(2.5681e-3, rel=1e-4)
    # its fill-in still short (98.93%): the seed's own two points give the slope,
    # log(0.0107/0.0115) / 0.2500 = -0.2884, step (log 0.01 - 0.025 - log 0.0107) / -0.2884 = 0.3213
    assert s.fill_value([(2e-3, 0.9885), (2.5681e-3, 0.9893)]) == pytest.approx(3.5413e-3, rel=1e-3)
    assert s.fill_value([(2e-3, 0.9896)]) is None        # 4% more nonzeros: stands at the level
    # a seed whose own two points are nearly flat: the step stops at x2
    assert s.fill_value([(2e-3, 0.9885), (2.2e-3, 0.98851)]) == pytest.approx(4.4e-3)
    assert s.fill_value([(2e-3, 0.9950)]) is None        # past the level: the outer side


def test_a_seed_too_sparse_for_the_lowest_level_gets_a_fill_in_with_less_penalty():
    s = reached(0.9, [(1e-3, 0.88)], side=-1)
    # seed 2 at 93% (0.07 nonzeros against 0.1); one round, no slope: -1, so
    # step = (log 0.1 + 0.025 - log 0.07) / -1 = -0.3817, λ = 1e-3 * e^-0.3817
    assert s.fill_value([(1e-3, 0.93)]) == pytest.approx(6.8272e-4, rel=1e-4)
    assert s.fill_value([(1e-3, 0.86)]) is None          # less sparse: the outer side of 90%


def test_no_fill_in_for_a_middle_target_or_a_missed_search():
    mid = reached(0.95, [(1e-3, 0.95)], side=0)
    assert mid.fill_value([(1e-3, 0.90)]) is None        # the neighbouring targets' points cover it
    miss = sweep.Search("optim.lam", 1e-3, 0.3, 1, 0.99, side=1, fill=1)
    miss.record(1e-3, 0.95)
    assert miss.status == "not reached" and miss.fill_value([(1e-3, 0.95)]) is None


def seed_curve(lam, seed, mid=0.05):
    """Seed 1 needs 1/0.8 times the λ of seeds 0 and 2 for the same sparsity."""
    return logistic(lam * (0.8 if seed == 1 else 1.0), mid=mid)


def SeedLauncher(results):
    from sparsecs import fileio
    from sparsecs import paths

    def write(results, s):
        o = s.cfg["optim"]
        sp = seed_curve(o["lam"], s.cfg["seed"]) if "lam" in o else o["target"]
        d = paths.run_dir(results, s.name)
        fileio.save_json({"run": s.name, "sparsity": sp, "train_acc": 90.0, "dataset": s.cfg["dataset"],
                          **s.cfg["identity"]}, paths.path(d, paths.SUMMARY))
        open(paths.path(d, paths.MODEL), "wb").close()

    return StandInLauncher(results, write)


@pytest.mark.parametrize("fill", [0, 1])
def test_a_seed_that_stops_short_of_99_percent_gets_its_own_point_past_it(tmp_path, fill):
    """End to end: seed 1 lands at 98.7% where seed 0 calibrated 99% (1.3x its nonzeros).
    With calibrate.fill it runs once more past 99%, and the report's rule then reads every
    seed at 99%; without, the level is lost for the whole entry (the old behaviour)."""
    import pandas as pd

    from sparsecs.reporting import envelope
    from sparsecs.sweeping import dryrun, plan

    text = PROFILE.format(repo=sweep.REPO).replace("rounds: 6}", f"rounds: 6, chain: true, fill: {fill}}}")
    prof = tmp_path / "p.yaml"
    prof.write_text(text)
    results = str(tmp_path / "results")
    epochs = int(plan.spec_cfg(sweep.expand(str(prof))[0])["epochs"])
    # before anything ran: each end target's two follower seeds may need one fill-in each
    assert dryrun._fill_epochs(sweep.expand(str(prof)), results) == 4 * fill * epochs
    specs = sweep.expand(str(prof))
    state = sweep.run_all(specs, results, launcher := SeedLauncher(results))
    assert all(st in ("finished", "skipped") for st, _ in state.values())
    fills = [s for s in specs if s.fill is not None]
    if not fill:
        assert fills == []
    else:
        (f,) = fills                                   # seed 1 at 99% only (at 90% it is less sparse)
        assert f.seed == 1 and f.fill.target == 0.99 and f.fill_of.after is f.fill
        assert f.cfg["identity"]["calibration_status"] == "fill-in"
        assert f.cfg["identity"]["calibration_target"] == 0.99
        assert f.cfg["optim"]["lam"] > f.fill_of.cfg["optim"]["lam"]
        assert f.name in launcher.started
        assert seed_curve(f.cfg["optim"]["lam"], 1) > 0.99          # past 99%: seed 1 brackets it
    rows = [{"seed": s.seed, "sparsity": seed_curve(s.cfg["optim"]["lam"], s.seed), "n_weights": 1e6,
             "acc": 90.0 - 100 * seed_curve(s.cfg["optim"]["lam"], s.seed), "collapsed": False,
             "swept_value": s.cfg["identity"]["swept_value"], "run": s.name,
             "calibration_status": s.cfg["identity"].get("calibration_status", "")} for s in specs]
    at = envelope.at_levels(pd.DataFrame(rows), "nnz")
    assert len(at[0.99]) == (3 if fill else 0) and len(at[0.9]) == 3
    # a rerun replays the fill-in from disk and trains nothing; the dry run lists it as done
    again = SeedLauncher(results)
    sweep.run_all(sweep.expand(str(prof)), results, again)
    assert again.started == []
    ready, waiting = sweep.known(sweep.expand(str(prof)), results)
    assert sorted(s.name for s in ready) == sorted(s.name for s in specs) and not waiting
    assert dryrun._fill_epochs(ready, results) == 0


@pytest.mark.parametrize("bad", ["-1", "true", "1.5", "'2'"])
def test_a_bad_fill_is_one_line(tmp_path, bad):
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO).replace("rounds: 6}", f"rounds: 6, fill: {bad}}}"))
    with pytest.raises(sweep.ProfileError, match="calibrate.fill must be a whole number >= 0"):
        sweep.expand(str(prof))


FILL_ENTRIES = """  - name: xrda
    config: {repo}/configs/quick/xrda.yaml
    target_sparsity: [0.9, 0.99]
    calibrate: {{key: optim.lam, start: 2.0e-2, tolerance: 0.3, rounds: 6, chain: true, fill: {fill}}}
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    target_from: xrda
"""


@pytest.mark.parametrize("fill", [0, 1])
def test_the_report_reads_a_fill_in_as_its_seeds_point_and_names_it(tmp_path, fill):
    """REPORT.md end to end: without fill-ins, seed 1 (98.82% at seed 0's 99% λ) costs xRDA the
    99% level; with one, every seed reaches it and the point table names the fill-in."""
    import report
    from sparsecs.reporting import figures as F
    from tests.reporting.test_report import PROFILE as REPORT_PROFILE, write_run

    def numbers(cfg):
        if cfg["method"] == "sgd":
            return 92.0 + 0.1 * cfg["seed"], 0.0
        sp = seed_curve(cfg["optim"]["lam"], cfg["seed"]) if "lam" in cfg["optim"] else cfg["optim"]["target"]
        return 90.0 - 5.0 * (-math.log10(1 - sp) - 1.0) + 0.1 * cfg["seed"], sp

    prof = tmp_path / "f.yaml"
    prof.write_text(REPORT_PROFILE.format(evidence="small-scale", seeds="[0, 1, 2]", repo=sweep.REPO,
                                          more=FILL_ENTRIES.format(repo=sweep.REPO, fill=fill)))
    results = str(tmp_path / "results")
    launcher = StandInLauncher(results, lambda results, s: write_run(results, s.name, s.cfg, numbers),
                               slots=2)
    state = sweep.run_all(sweep.expand(str(prof)), results, launcher)
    assert all(st == "finished" for st, _ in state.values())
    out = tmp_path / "rep"
    assert report.main([str(prof), "--results", results, "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    row99 = next(line for line in text.splitlines() if line.startswith("| 99% |"))
    legend = F.DRAWN["tradeoff_col"]["legend"]
    if fill:
        assert "fill-in (→99%)" in text and "each seed's own fill-ins" in text
        assert "not reached" not in row99 and "±" in row99.split("|")[2]
        assert "search round or fill-in" in legend      # short: it fits a column-width legend
    else:
        assert "fill-in" not in text
        assert "not reached (seed 1 stops at 98.82% sparse)" in row99
        assert "λ-search round (seed 0)" in legend


def test_a_resumed_sweep_queues_a_replayed_follower_s_fill_in_before_later_runs(tmp_path):
    """On a resume, the fill-in born of a follower finished on disk goes before a run listed
    after it (the first pass started the later run while the fill-in was still being born)."""
    text = PROFILE.format(repo=sweep.REPO).replace("rounds: 6}", "rounds: 6, chain: true, fill: 1}") + f"""
  - name: gmp
    config: {sweep.REPO}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.5]}}
"""
    prof = tmp_path / "p.yaml"
    prof.write_text(text)
    results = str(tmp_path / "results")
    specs = sweep.expand(str(prof))
    sweep.run_all(specs, results, SeedLauncher(results))
    from sparsecs import paths
    import shutil
    (fill,) = [s for s in specs if s.fill is not None]
    gmp = [s for s in specs if s.entry == "gmp"]
    for s in [fill] + gmp:
        shutil.rmtree(paths.run_dir(results, s.name))
    write = lambda results, s: SeedLauncher(results).write(results, s)
    again = OneAtATime(results, write, slots=1)
    sweep.run_all(sweep.expand(str(prof)), results, again)
    assert again.started[0] == fill.name and sorted(again.started[1:]) == sorted(s.name for s in gmp)
