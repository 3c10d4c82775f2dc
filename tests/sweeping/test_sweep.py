"""sweep.py: profile expansion, dependencies, --dry-run, the local launcher and the SLURM
launcher through submitit's local executor (the same code path, no cluster)."""
import json
import os
import re

import pytest

from sparsecs import config as C
import sweep

from tests import REPO

SGD = os.path.join(REPO, "configs", "quick", "sgd.yaml")
GMP = os.path.join(REPO, "configs", "quick", "gmp.yaml")
TINY = "[epochs=1, train_subset=128, model=resnet20, width=0.125, device=cpu, channels_last=true]"


def profile(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def finish(results, spec, sparsity=0.5):
    """Pretend a run finished: its summary.json and model.pt, as train.py writes them."""
    d = os.path.join(results, "runs", spec.name)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "model.pt"), "wb").close()
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"run": spec.name, "sparsity": sparsity, "config_hash": C.config_hash(spec.cfg)}, f)


EXPAND = f"""
seeds: [0, 1]
overrides: [epochs=1, train_subset=128]
runs:
  - name: dense
    config: {SGD}
    grid:
      arch: [{{model: vgg16, width: 0.125}}, {{model: resnet20, width: 0.25}}]
      optim.lr: [0.1, 0.05]
  - name: tuned
    config: {SGD}
    init_from: dense
    seeds: [0]
    overrides: [optim.momentum=0.8]
    grid:
      arch: [{{model: resnet20, width: 0.25}}]
  - name: matched
    config: {GMP}
    target_from: dense
    seeds: [0]
    grid:
      arch: [{{model: vgg16, width: 0.125}}]
      optim.lr: [0.1]
"""


def test_expansion_counts_overrides_and_dependencies(tmp_path):
    specs = sweep.expand(profile(tmp_path, EXPAND))
    dense = [s for s in specs if s.entry == "dense"]
    tuned = [s for s in specs if s.entry == "tuned"]
    matched = [s for s in specs if s.entry == "matched"]
    assert (len(dense), len(tuned), len(matched)) == (8, 2, 1)   # 2 archs x 2 lr x 2 seeds; ...
    assert dense[0].overrides == ["epochs=1", "train_subset=128", "model=vgg16", "width=0.125",
                                  "optim.lr=0.1", "seed=0"]
    assert [s.overrides[-2:] for s in dense[:2]] == [["optim.lr=0.1", "seed=0"], ["optim.lr=0.1", "seed=1"]]
    # init_from: one run per matching point of `dense` (resnet20, lr 0.1 and 0.05), same seed
    assert [(s.init_from.point["optim.lr"], s.init_from.seed) for s in tuned] == [(0.1, 0), (0.05, 0)]
    assert tuned[0].overrides[:-1] == ["epochs=1", "train_subset=128", "optim.momentum=0.8",
                                       "model=resnet20", "width=0.25"]
    # target_from: every seed of the matched point, averaged
    assert [(d.point["arch"]["model"], d.point["optim.lr"], d.seed) for d in matched[0].target_from] == [
        ("vgg16", 0.1, 0), ("vgg16", 0.1, 1)]
    results = str(tmp_path / "results")
    for s, sp in zip(matched[0].target_from, (0.5, 0.7)):
        sweep.materialize(s, results)
        finish(results, s, sp)
    assert sweep.dependency_overrides(matched[0], results) == ["optim.target=0.6"]
    sweep.materialize(tuned[0].init_from, results)
    assert sweep.dependency_overrides(tuned[0], results) == [
        "init_from=" + os.path.join(results, "runs", tuned[0].init_from.name)]


def test_only_and_set(tmp_path):
    path = profile(tmp_path, EXPAND)
    specs = sweep.only(sweep.expand(path, ["epochs=3"]), ["tuned"])
    # the two tuned runs and the two dense runs they start from, nothing else
    assert sorted(s.entry for s in specs) == ["dense", "dense", "tuned", "tuned"]
    assert all(s.overrides[-2:-1] == ["epochs=3"] for s in specs)
    with pytest.raises(sweep.ProfileError, match="no entry nope"):
        sweep.only(specs, ["nope"])


def test_rows_scaling_and_profile_errors(tmp_path):
    row = tmp_path / "row.yaml"
    row.write_text("dataset: digits\nmodel: vgg16\nwidth: 0.5\nepochs: 40\nmethod: sgd\n"
                   "optim: {schedule: step, milestones: [10, 20, 30]}\n")
    specs = sweep.expand(profile(tmp_path, f"""
epochs_scale: 0.1
runs:
  - name: row
    config: {row}
  - name: dense
    at: {tmp_path}/row*.yaml
    overrides: [method=sgd]
  - name: tuned                   # needs init_from, known only later: scaling still works
    config: {REPO}/configs/quick/magnitude_finetune.yaml
    at: {tmp_path}/row*.yaml
    init_from: dense
"""))
    assert specs[2].init_from is specs[1] and "epochs=4" in specs[2].overrides
    specs = specs[:2]
    cfgs = [sweep.materialize(s, str(tmp_path)).cfg for s in specs]
    assert [s.point for s in specs] == [{}, {"row": str(row)}]
    assert cfgs[0]["epochs"] == 4 and cfgs[0]["optim"]["milestones"] == [1, 2, 3]
    assert (cfgs[1]["model"], cfgs[1]["width"], cfgs[1]["epochs"]) == ("vgg16", 0.5, 4)
    assert cfgs[1]["optim"]["schedule"] == "cosine"   # the row's data and budget, not its optimizer
    for text, msg in ((f"runs:\n  - config: {tmp_path}/none*.yaml\n", "matches no file"),
                      (f"runs:\n  - config: {SGD}\n    init_from: later\n", "not an earlier entry"),
                      (f"runs:\n  - config: {SGD}\n    gird: {{}}\n", "unknown key")):
        with pytest.raises(sweep.ProfileError, match=msg):
            sweep.expand(profile(tmp_path, text, "bad.yaml"))


def test_grid_union_and_duplicates(tmp_path, capsys):
    path = profile(tmp_path, f"""
runs:
  - name: a
    config: {SGD}
    grid:
      - {{model: [vgg16], optim.lr: [0.1, 0.2]}}
      - {{model: [resnet20], optim.lr: [0.3]}}
  - name: b                     # names a run of `a` again
    config: {SGD}
    overrides: [model=resnet20, optim.lr=0.3]
""")
    specs = sweep.expand(path)
    assert [s.point for s in specs] == [{"model": "vgg16", "optim.lr": 0.1}, {"model": "vgg16", "optim.lr": 0.2},
                                        {"model": "resnet20", "optim.lr": 0.3}, {}]
    assert sweep.main([path, "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "3 runs: 0 finished, 3 to run" in out and "same  digits-resnet20-sgd-s0-" in out


def test_dry_run_lists_finished_and_waiting_and_changes_nothing(tmp_path, capsys):
    path = profile(tmp_path, EXPAND)
    results = tmp_path / "results"
    assert sweep.main([path, "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "11 runs: 0 finished, 8 to run, 3 waiting on a dependency" in out
    assert not results.exists()
    # finish the dependency of the first `tuned` run by hand: it becomes known, the rest waits
    tuned = [s for s in sweep.expand(path) if s.entry == "tuned"][0]
    sweep.materialize(tuned.init_from, str(results))
    finish(str(results), tuned.init_from)
    before = sorted(str(p) for p in results.rglob("*"))
    assert sweep.main([path, "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "11 runs: 1 finished, 8 to run, 2 waiting on a dependency" in out
    assert f"done  {tuned.init_from.name}" in out
    assert f"todo  {sweep.materialize(tuned, str(results)).name}" in out
    assert "wait  matched[arch=vgg16/0.125, optim.lr=0.1, seed=0]  (target_from digits-vgg16-w0.125-sgd-s0-" in out
    assert sorted(str(p) for p in results.rglob("*")) == before


LAUNCH = f"""
seeds: [0]
overrides: {TINY}
runs:
  - name: ok
    config: {SGD}
    seeds: [0, 1]
  - name: bad                   # fails at run time, quickly: a data set that is not there
    config: {SGD}
    overrides: [dataset=cifar10, data_dir=/nonexistent, download=false]
  - name: child
    config: {SGD}
    init_from: bad
  - name: again                 # the same run as ok seed 0: run once, reported as skipped
    config: {SGD}
"""
GROWN = """
  - name: grown
    config: {SGD}
    init_from: ok
    overrides: [optim.lr=0.05]
""".format(SGD=SGD)


def _check_launch(tmp_path, capsys, extra, grown):
    """ok (2 seeds) finish, bad fails, child (init_from bad) is blocked; with `grown`,
    a run from ok's seed-0 weights starts once that has finished."""
    path = profile(tmp_path, LAUNCH + (GROWN if grown else ""))
    results = tmp_path / "results"
    args = [path, "--results", str(results), *extra]
    assert sweep.main(args) == 1
    out = capsys.readouterr().out
    n = 3 if grown else 2
    assert f"| finished |    {n} |" in out and "| failed   |    1 |" in out and "| blocked  |    1 |" in out
    assert "| skipped  |    1 |" in out
    assert re.search(r"failed: cifar10-resnet20-w0.125-sgd-s0-\w+: exit 1: error: CIFAR-10 not found", out), out
    assert re.search(r"blocked: child\[seed=0\]: cifar10-resnet20-w0.125-sgd-s0-\w+ failed", out)
    runs = sorted(p.name for p in (results / "runs").iterdir() if (p / "summary.json").exists())
    assert len(runs) == n and len((results / "runs.csv").read_text().splitlines()) == n + 1
    if grown:  # started after `ok` seed 0 had finished, from its weights
        child = [json.loads((results / "runs" / r / "summary.json").read_text()) for r in runs]
        child = [c for c in child if c["init_from"]]
        assert len(child) == 1 and child[0]["seed"] == 0
        parent = os.path.basename(os.path.dirname(child[0]["init_from"]))
        assert parent in runs and "-s0-" in parent
        assert out.index(f"] done {parent} (took ") < out.index(f"] done {child[0]['run']} (took ")
    stamps = {r: os.stat(results / "runs" / r / "summary.json").st_mtime_ns for r in runs}
    # the rerun repeats only the failed run
    assert sweep.main(args) == 1
    out = capsys.readouterr().out
    assert f"| skipped  |    {n + 1} |" in out and "| failed   |    1 |" in out and "| finished |    0 |" in out
    assert out.count("FAILED") == 1
    assert {r: os.stat(results / "runs" / r / "summary.json").st_mtime_ns for r in runs} == stamps


def test_local_launcher_isolates_a_failure_and_reruns_only_it(tmp_path, capsys):
    _check_launch(tmp_path, capsys, ["--jobs", "2", "--threads", "1"], grown=True)


def test_slurm_launcher_through_submitit_local_executor(tmp_path, capsys):
    pytest.importorskip("submitit")
    _check_launch(tmp_path, capsys, ["--launcher", "slurm", "--cluster", "local", "--gpus", "0",
                                     "--cpus", "1", "--time", "10", "--poll", "0.5"], grown=False)
    assert list((tmp_path / "results" / "slurm").iterdir())   # submitit's job folders
