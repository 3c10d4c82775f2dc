"""sweep.py --seeds / --levels (issue 19): finishing the real fashion profile in parts that
complete whole comparisons. The filters only select (names and hashes unchanged) and keep
what the kept runs need: init_from, the λ search a follower seed takes its value from, the
chained search of the previous target. Sweeps run with a stand-in launcher (nothing trained:
tests/synthetic.py writes the run folders)."""
import json
import os
import re

import pytest

import sweep
from sparsecs.sweeping import plan
from sparsecs.sweeping.selection import level, select
from tests import synthetic
from tests.conftest import StandInLauncher

FASHION = os.path.join(sweep.REPO, "configs", "profiles", "fashion.yaml")
# the fashion profile's entries (fashion.yaml), by kind
CHAINED = ["xrda", "soft_threshold", "str", "soft_threshold_linear", "soft_threshold_sine",
           "xrda_from_dense"]                 # xrda_from_dense: from sgd_half (init_from)
ABLATIONS = ["rda_l1", "prox_sgd"]                     # 0.9 and 0.99 only
CALIBRATED = CHAINED + ABLATIONS                       # chained λ searches; xrda_channel: 0.5, 0.8
GRID = ["gmp", "magnitude_finetune", "rigl"]          # optim.target; filter_prune: 0.3, 0.5
NO_LEVEL = ["sgd", "sgd_half"]


@pytest.fixture(scope="module")
def specs():
    return sweep.expand(FASHION)


def kinds(kept):
    """{(entry, level, seed, what)}; what: r1 (round 1 of a search), follower, run."""
    return {(s.entry, level(s), s.seed, "r1" if s.search is not None else
             "follower" if s.after is not None else "run") for s in kept}


def test_seed0_level09_is_one_run_per_entry_at_90_or_without_level(specs):
    kept = select(specs, seeds=[0], levels=[0.9])
    want = ({(e, 0.9, 0, "r1") for e in CALIBRATED} | {(e, 0.9, 0, "run") for e in GRID}
            | {("sgd", None, 0, "run"), ("sgd_half", None, 0, "run")})
    got = kinds(kept)
    assert got == want
    assert len(kept) == len(want) == 13
    # xrda_from_dense's round 1 starts from the kept sgd_half run of its seed
    (xd,) = [s for s in kept if s.entry == "xrda_from_dense"]
    assert xd.init_from in kept and xd.init_from.entry == "sgd_half" and xd.init_from.seed == 0
    # the structured entries have no 0.9 level; profile order is kept; the same Spec objects
    assert not {s.entry for s in kept} & {"xrda_channel", "filter_prune"}
    assert [specs.index(s) for s in kept] == sorted(specs.index(s) for s in kept)
    # magnitude_finetune's init_from is the kept sgd_half run of the same seed
    (mf,) = [s for s in kept if s.entry == "magnitude_finetune"]
    assert mf.init_from in kept and mf.init_from.entry == "sgd_half" and mf.init_from.seed == 0


def test_a_follower_seed_pulls_in_its_search_and_the_chain_before_it(specs):
    assert kinds(select(specs, entries=["xrda"], seeds=[1], levels=[0.9])) == {
        ("xrda", 0.9, 0, "r1"), ("xrda", 0.9, 1, "follower")}
    # at 0.99 the chain: round 1 of 0.9, 0.95, 0.98 (each starts where the previous ends)
    kept = select(specs, entries=["xrda"], seeds=[2], levels=[0.99])
    assert kinds(kept) == {("xrda", t, 0, "r1") for t in (0.9, 0.95, 0.98, 0.99)} | {
        ("xrda", 0.99, 2, "follower")}
    follower = kept[-1]
    assert follower.after.specs[0] in kept and follower.after.chain.specs[0] in kept


def test_level_095_pulls_in_the_previous_search_not_its_followers(specs):
    kept = select(specs, levels=[0.95])
    got = kinds(kept)
    for e in CHAINED:
        assert {k for k in got if k[0] == e} == {(e, 0.9, 0, "r1"), (e, 0.95, 0, "r1"),
                                                (e, 0.95, 1, "follower"), (e, 0.95, 2, "follower")}
    for e in GRID:
        assert {k for k in got if k[0] == e} == {(e, 0.95, s, "run") for s in (0, 1, 2)}
    assert {k[0] for k in got} == set(CHAINED + GRID + NO_LEVEL)     # the ablations have no 0.95
    # the followers of xrda_from_dense start from sgd_half of their seed: kept whole anyway
    assert len(kept) == 6 * 4 + 3 * 3 + 3 + 3


def test_only_composes_with_the_filters(specs):
    kept = select(specs, entries=["magnitude_finetune"], seeds=[2], levels=[0.98])
    assert kinds(kept) == {("sgd_half", None, 2, "run"), ("magnitude_finetune", 0.98, 2, "run")}
    assert sweep.only(specs, ["gmp"]) == [s for s in specs if s.entry == "gmp"]


def dry(capsys, *args):
    """--dry-run's output for the fashion profile: {status: [names or labels]}, the summary."""
    assert sweep.main(["fashion", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"  (done|todo|same|wait)  (\S+)", line)
        if m:
            rows.setdefault(m[1], []).append(m[2])
    return rows, out


def stand_in(monkeypatch, started):
    """sweep.main's local launcher -> the stand-in writing synthetic run folders."""
    def make(results, *a):
        launcher = StandInLauncher(results, lambda r, s: synthetic.write_run(r, s.name, s.cfg), slots=4)
        launcher.started = started
        return launcher
    monkeypatch.setattr(sweep, "LocalLauncher", make)


def test_finishing_in_parts_runs_to_the_end_with_the_full_profiles_names(tmp_path, monkeypatch, capsys):
    results = str(tmp_path / "results")
    # the stand-in's folders have no weights: complete runs as committed results are
    monkeypatch.setattr(plan, "REUSE_COMPLETE", False)   # restored after (main sets it)
    res = ["--results", results, "--reuse-complete"]
    rows, out = dry(capsys, "--seeds", "1", "--levels", "0.95", *res)
    # before anything ran, of the 6 x 3 chained runs, 3 grid runs (seed 1) and the 3 runs
    # without a level (sgd seed 1, sgd_half seeds 1 and 0: xrda_from_dense's round 1 starts from
    # seed 0's): the 5 rounds 1 of 0.9 that start from nothing, gmp, rigl, sgd and both sgd_half
    # can start; xrda_from_dense's round 1 and magnitude_finetune wait on sgd_half (init_from),
    # 0.95's rounds 1 on 0.9's search, the followers on theirs
    assert "24 runs: 0 finished, 10 to run, 14 waiting" in out
    assert sum(r.startswith("xrda[target_sparsity=0.9,") for r in rows["wait"]) == 0
    assert sum(r.startswith("xrda[") for r in rows["wait"]) == 2

    started = []
    stand_in(monkeypatch, started)
    # session 1: seed 0 at 90%; session 2: seed 1 at 95% (its searches start from session 1's)
    assert sweep.main(["fashion", "--seeds", "0", "--levels", "0.9", *res]) == 0
    first = list(started)
    assert sweep.main(["fashion", "--seeds", "1", "--levels", "0.95", *res]) == 0
    table = capsys.readouterr().out
    assert re.search(r"\| failed\s+\|\s+0 \|", table) and re.search(r"\| blocked\s+\|\s+0 \|", table)
    # nothing trained twice but a dense half run without weights (the stand-in writes none)
    # that a run still to train starts from: xrda_from_dense's 95% round 1 starts from seed 0's
    twice = {n for n in started if started.count(n) > 1}
    assert all("-sgd-" in n and "-s0-" in n for n in twice)
    assert not (set(started[len(first):]) & set(first)) - twice   # session 2 reused session 1's rounds

    # the unfiltered dry-run lists every run the two sessions made, done, under the same name
    rows, out = dry(capsys, *res)
    # but the stand-in writes no weights (as committed results have none): the dense runs the
    # 90%/95% prune + fine-tune and xrda_from_dense runs still to train start from are to be
    # trained again, the rest is reused
    again = set(started) - set(rows["done"])
    assert again and again <= set(rows["todo"]) and len(rows["done"]) == len(set(started)) - len(again)
    for name in again:
        assert "-sgd-" in name and json.load(open(os.path.join(results, "runs", name, "summary.json")))[
            "entry"] == "sgd_half"
        assert f"todo  {name}  4 epochs  (complete without its weights, which a run still to train" in out
    # and those names are the ones an unfiltered sweep of the whole profile makes
    full = synthetic.sweep_profile(FASHION, tmp_path / "full")
    assert set(started) <= set(os.listdir(os.path.join(full, "runs")))
    for name in started:                                 # the real profile's identity
        with open(os.path.join(results, "runs", name, "summary.json")) as f:
            assert json.load(f)["profile"] == "fashion"
    # every 95% follower of seed 1 ran; no 90% follower did, no seed 2 run
    ran = {(s["entry"], s["seed"], s["calibration_target"]) for s in
           (json.load(open(os.path.join(results, "runs", n, "summary.json"))) for n in started)}
    assert {(e, 1, 0.95) for e in CHAINED} <= ran
    assert not {(e, 1, 0.9) for e in CALIBRATED} & ran and not any(r[1] == 2 for r in ran)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "3"], "--seeds: 3 is not a seed of the profile; its seeds: 0, 1, 2"),
    (["--seeds", "0,x"], "--seeds: 'x' is not a seed"),
    (["--seeds", "0.5"], "--seeds: '0.5' is not a seed"),
    (["--levels", "0.9,0.97"], "--levels: no entry has level 0.97; the profile's levels: 0.1, 0.2, 0.3, 0.5, "
                               "0.9, 0.95, 0.98, 0.99"),
    (["--levels", "90"], "--levels: no entry has level 90.0"),
    (["--levels", "high"], "--levels: 'high' is not a level"),
    (["--levels", ""], "--levels: '' is not a level"),
    (["--only", "filter_prune", "--levels", "0.9"], "no run of the profile passes --only filter_prune and "
                                                     "--levels 0.9"),
    (["--only", "nope", "--seeds", "0"], "--only: no entry nope"),
])
def test_bad_values_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert sweep.main(["fashion", "--dry-run", "--results", str(tmp_path), *args]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.strip().splitlines()) == 1
    assert cap.err.startswith("error: " + message), cap.err


WEIGHTS = f"""
seeds: [0]
overrides: [epochs=1, dataset=fashion_mnist]
runs:
  - name: dense
    config: {sweep.REPO}/configs/quick/sgd.yaml
  - name: tuned
    config: {sweep.REPO}/configs/quick/sgd.yaml
    init_from: dense
    overrides: [optim.lr=0.05]
"""


def test_a_reused_run_without_weights_is_trained_again_when_a_run_still_to_train_starts_from_it(
        tmp_path, monkeypatch, capsys):
    """--reuse-complete takes committed results (no model.pt) as done; a run that loads the
    weights of one (init_from) would fail on a fresh clone, so that one is trained again first,
    and only while such a run is still to train."""
    from sparsecs import paths
    from sparsecs import summaries
    monkeypatch.setattr(plan, "REUSE_COMPLETE", True)
    path = tmp_path / "w.yaml"
    path.write_text(WEIGHTS)
    results = str(tmp_path / "results")

    def weights_too(results, s):     # what train.py leaves: the results and the weights
        synthetic.write_run(results, s.name, s.cfg)
        if s.init_from is not None:  # it loads its parent's weights: they must be there
            assert os.path.exists(os.path.join(paths.run_dir(results, s.init_from.name), "model.pt"))
        open(os.path.join(paths.run_dir(results, s.name), "model.pt"), "wb").close()

    # the dense run committed without weights, tuned not run yet
    dense, tuned = sweep.expand(str(path))
    sweep.materialize(dense, results)
    synthetic.write_run(results, dense.name, dense.cfg)
    assert summaries.complete_summary(paths.run_dir(results, dense.name)) and not summaries.is_finished(results, dense.name)
    assert sweep.main([str(path), "--dry-run", "--reuse-complete", "--results", results]) == 0
    out = capsys.readouterr().out
    assert f"todo  {dense.name}  1 epochs  (complete without its weights" in out and "2 runs: 0 finished, 2 to run" in out
    launcher = StandInLauncher(results, weights_too)
    state = sweep.run_all(sweep.expand(str(path)), results, launcher)
    assert sorted(st for st, _ in state.values()) == ["finished", "finished"]
    assert launcher.started[0] == dense.name and len(launcher.started) == 2

    # both committed without weights: nothing to train, the dense run is reused as it is
    for name in launcher.started:
        os.remove(os.path.join(paths.run_dir(results, name), "model.pt"))
    assert sweep.main([str(path), "--dry-run", "--reuse-complete", "--results", results]) == 0
    assert "2 runs: 2 finished, 0 to run" in capsys.readouterr().out
    launcher = StandInLauncher(results, weights_too)
    state = sweep.run_all(sweep.expand(str(path)), results, launcher)
    assert launcher.started == [] and sorted(st for st, _ in state.values()) == ["skipped", "skipped"]


def test_a_sweep_never_writes_over_committed_runs_unless_told_to_retrain(tmp_path, monkeypatch, capsys):
    """A fresh clone's committed runs (complete, no model.pt) count as done by default: the sweep
    starts none of them and their files stay as committed; --retrain trains them again."""
    from sparsecs import paths
    monkeypatch.setattr(plan, "REUSE_COMPLETE", True)   # restored after (main sets it)
    path = tmp_path / "w.yaml"
    path.write_text(WEIGHTS)
    results = str(tmp_path / "results")
    for s in sweep.expand(str(path)):                    # both committed: results, no weights
        sweep.materialize(s, results)
        synthetic.write_run(results, s.name, s.cfg)
    names = os.listdir(os.path.join(results, "runs"))
    summary = {n: open(os.path.join(paths.run_dir(results, n), "summary.json")).read() for n in names}
    started = []
    stand_in(monkeypatch, started)
    assert sweep.main([str(path), "--results", results]) == 0
    out = capsys.readouterr().out
    # (the tuned run's name is known once its parent is settled: the first line counts the dense one)
    assert started == [] and re.search(r"\| skipped\s+\|\s+2 \|", out) and len(summary) == 2
    assert "1 of the finished runs are committed complete runs (no weights here), counted as done" in out
    for n, text in summary.items():                      # untouched
        assert open(os.path.join(paths.run_dir(results, n), "summary.json")).read() == text
    assert sweep.main([str(path), "--retrain", "--results", results]) == 0
    assert sorted(started) == sorted(summary) and "1 committed complete run(s) would be retrained" in \
        capsys.readouterr().out
    # both flags: one line, exit 2, nothing run
    assert sweep.main([str(path), "--retrain", "--reuse-complete", "--results", results]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("error: --retrain and --reuse-complete contradict") and len(started) == 2
