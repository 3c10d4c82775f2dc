"""Real savings of the structured runs (issue 39 item 4): the slim export of a tiny VGG-16 with
filters zeroed by hand keeps dense's logits and the run's test accuracy, its MACs are the hand
count of what the removed filters cost, a mismatch with the run is one line naming it, and
`export.py --profile` slims exactly the structured runs at the profile's export_macs_levels.

VGG-16 x0.125 at 3x32x32 (digits): convs 3-8-8 | 8-16-16 | 16-32-32-32 | 32-64-64-64 | 64-64-64-64
at 32, 16, 8, 4 and 2 pixels a side, then Linear 64 -> 10: 5,087,872 multiply-adds an image."""
import json
import os

import pytest
import torch
import torch.nn as nn
import yaml

import export
import sweep
from sparsecs import data as D
from sparsecs import fileio
from sparsecs import final_eval
from sparsecs import metrics
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries
from sparsecs.exporting import accuracy
from tests.conftest import StandInLauncher
from tests.exporting.test_export import trained_like, zero_filters

DENSE_MACS = 5_087_872


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def digits():
    return D.load("digits", "data", device="cpu", download=False)


def reference_eval(model, digits):
    """(accuracy %, predictions) of `model` on the digits test set by metrics.evaluate: train.py's
    own final evaluation (fp32), the reference the export is held to."""
    preds = []
    acc = metrics.evaluate(model, digits.test_batches(500), preds)[1]
    return acc, torch.cat(preds).numpy()


def write_run(folder, model, digits, cfg, mode="channel"):
    """A finished run folder of `model`: model.pt, config.yaml, predictions.npy and a summary
    whose test_acc is metrics.evaluate's."""
    folder.mkdir(parents=True, exist_ok=True)
    acc, preds = reference_eval(model, digits)
    fileio.save_torch(modelfile.model_file(cfg, 10, model.state_dict()), folder / paths.MODEL)
    (folder / paths.CONFIG).write_text(yaml.safe_dump(cfg))
    fileio.save_predictions(str(folder), preds, 10)
    summary = {"run": folder.name, "dataset": "digits", "model": "vgg16", "width": 0.125,
               "method": "filter_prune", "mode": mode, "test_acc": acc}
    fileio.save_json(summary, folder / paths.SUMMARY)
    return folder


def pruned_vgg(zero_constant):
    """VGG-16 x0.125 with filters 1, 4 of the first conv and 0, 5, 9 of the last zeroed; with
    `zero_constant` their BatchNorms pass 0 too (nothing to fold)."""
    m = trained_like("vgg16", 0.125)
    names = dict(m.named_modules())
    zero_filters(names["features.0"], [1, 4])
    zero_filters(names["features.40"], [0, 5, 9])
    if zero_constant:
        with torch.no_grad():
            for bn, idx in (("features.1", [1, 4]), ("features.41", [0, 5, 9])):
                names[bn].bias[idx] = 0
                names[bn].running_mean[idx] = 0
    return m


CFG = {"dataset": "digits", "model": "vgg16", "width": 0.125, "data_dir": "data"}


# by hand: conv1 loses 2 filters (2*3*9 MACs at 32x32), conv2 2 input channels (8*2*9 at 32x32),
# conv13 3 filters (3*64*9 at 2x2), the Linear 3 inputs (3*10)
REMOVED = 2 * 3 * 9 * 1024 + 8 * 2 * 9 * 1024 + 3 * 64 * 9 * 4 + 3 * 10
# a nonzero BatchNorm constant of conv1's removed filters reaches padded conv2 as a one-channel
# 3x3 kernel convolved with ones (exporting/slim.py): 8 * 1 * 9 MACs at 32x32; the last conv's
# goes into the Linear's bias (no MACs)
FOLD = 8 * 1 * 9 * 1024


@pytest.mark.parametrize("zero_constant", [True, False])
def test_slim_export_keeps_the_logits_accuracy_and_counts_the_hand_macs(tmp_path, digits, zero_constant):
    model = pruned_vgg(zero_constant)
    assert metrics.counts(model)["flops_dense"] == DENSE_MACS
    run = write_run(tmp_path / "run", model, digits, CFG)
    f = export.export(str(run), "slim", batch=64, test_set=True)
    assert f["macs_dense"] == DENSE_MACS
    assert f["macs_slim"] == DENSE_MACS - REMOVED + (0 if zero_constant else FOLD)
    assert f["macs_fraction"] == pytest.approx(f["macs_slim"] / DENSE_MACS)
    assert f["params_after"] == f["params_before"] - (2 * 3 * 9 + 2 * 2 + 8 * 2 * 9 + 3 * 64 * 9 + 3 * 2 + 3 * 10)
    assert f["channels"] == {"features.0": [8, 6], "features.40": [64, 61]}
    # logits on the whole test set, not only the export's check batch
    slim = export.load_slim(str(run / "model.slim.pt"))
    with torch.no_grad():
        for x, _ in digits.test_batches(500):
            a, b = model(x), slim(x)
            assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    acc, _ = reference_eval(model, digits)
    assert f["test_acc_export"] == f["test_acc"] == acc and f["test_images_eval"] == 360
    assert f["differing_predictions"] == 0 and f["compared_with"] == "predictions.npy"
    assert json.loads((run / export.EXPORT_JSON).read_text())["slim"]["test_acc_export"] == acc


def test_ties_are_top_two_margins_within_the_relative_tolerance():
    logits = torch.tensor([[1.0, 1.00005, 0.0],     # margin 5e-5 <= 1e-4 * 1.00005
                           [2.0, 1.0, 0.0],         # margin 1
                           [100.0, 99.995, 0.0],    # margin 0.005 <= 1e-4 * 100
                           [0.5, 0.4999, 0.1]])     # margin 1e-4 <= 1e-4 * max(1, 0.5)
    assert accuracy.ties(logits, 1e-4).tolist() == [True, False, True, True]
    assert accuracy.ties(logits, 1e-5).tolist() == [False, False, False, False]


def one_error(capsys, rc):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    return err[0]


def test_a_run_whose_accuracy_or_predictions_are_not_the_exports_fails_in_one_line(tmp_path, digits, capsys):
    run = write_run(tmp_path / "fp-run", pruned_vgg(False), digits, CFG)
    s = summaries.read_summary(str(run))
    fileio.save_json({**s, "test_acc": s["test_acc"] + 100 / 360}, run / paths.SUMMARY)   # one image more
    line = one_error(capsys, export.main([str(run), "--format", "slim", "--test-set"]))
    assert line.startswith("export.py: error: fp-run: slim export's test accuracy ")
    assert "0 of 360 predictions differ" in line and not (run / "model.slim.pt").exists()

    fileio.save_json(s, run / paths.SUMMARY)
    import numpy as np
    preds = np.load(run / paths.PREDICTIONS)
    logits = accuracy.test_logits(export.load_any(str(run))[1], digits, accuracy.run_config(str(run), CFG))[0]
    clear = int((~accuracy.ties(logits, 1e-4)).nonzero()[0])      # an image with no tie
    preds[clear] = (preds[clear] + 1) % 10
    fileio.save_predictions(str(run), preds, 10)
    line = one_error(capsys, export.main([str(run), "--format", "slim", "--test-set"]))
    assert "fp-run: slim export's test accuracy" in line and "1 of 360 predictions differ" in line
    assert "1 of them not at a tie" in line and not (run / "model.slim.pt").exists()


def test_test_set_is_for_a_slim_export_of_a_run_folder(tmp_path, digits, capsys):
    run = write_run(tmp_path / "r", pruned_vgg(True), digits, CFG)
    assert export.main([str(run), "--format", "csr", "--test-set"]) == 2
    assert "--test-set checks a slim export of a run folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the profile

PROFILE = """
evidence: small-scale
seeds: [0, 1]
overrides: [epochs=1, dataset=digits, model=vgg16, width=0.125]
export_macs_levels: [0.5]
runs:
  - name: sgd
    config: {repo}/configs/quick/sgd.yaml
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.9]}}
  - name: filter_prune
    config: {repo}/configs/quick/filter_prune.yaml
    target_metric: macs_structural_fraction
    targets: [0.5, 0.3]
    calibrate: {{key: optim.target, scale: fraction, start: 0.3, tolerance: 0.3, rounds: 3, chain: true}}
  - name: xrda_kernel
    config: {repo}/configs/quick/xrda.yaml
    overrides: [optim.mode=kernel]
    grid: {{optim.lam: [1.0e-4]}}
"""
MODES = {"sgd": "dense", "gmp": "elementwise", "filter_prune": "channel", "xrda": "kernel"}


def stand_in(digits):
    """A launcher whose runs are VGG-16 x0.125 models: filter pruning zeroes round(f c) filters
    of every conv (f its optim.target; by hand (1 - f)^2 of the MACs, 0.515 at f = 0.3), the
    kernel-mode grid a quarter of every conv's filters, GMP scattered weights; each run's
    summary holds its real MACs and test accuracy."""
    def write(results, s):
        cfg, m = s.cfg, trained_like("vgg16", 0.125, seed=s.cfg["seed"])
        f = {"filter_prune": cfg["optim"].get("target"), "xrda": 0.25}.get(cfg["method"])
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d) and f:
                zero_filters(mod, list(range(round(f * mod.out_channels))))
            elif isinstance(mod, nn.Conv2d) and cfg["method"] == "gmp":
                with torch.no_grad():
                    mod.weight[::2] = 0
        folder = paths.run_dir(results, s.name)
        acc, preds = reference_eval(m, digits)
        fileio.save_torch(modelfile.model_file(cfg, 10, m.state_dict()), paths.path(folder, paths.MODEL))
        fileio.save_predictions(folder, preds, 10)
        summary = {k: "" for k in summaries.SUMMARY_FIELDS if k not in summaries.OPTIONAL}
        summary.update({**metrics.counts(m), "run": s.name, "dataset": "digits", "model": "vgg16",
                        "width": 0.125, "method": cfg["method"], "mode": MODES[cfg["method"]],
                        "seed": cfg["seed"], "epochs": 1, "total_epochs": 1, "lam": 0.0, "test_acc": acc,
                        "test_loss": 0.1, "train_acc": 100.0, "train_loss": 0.01, "sparsity_all": 0.0,
                        "macs_structural": final_eval.structural_macs(m), "train_seconds": 1.0,
                        "config_hash": "x", "init_from": "", **cfg["identity"], "threads": 1})
        fileio.save_json(summary, paths.path(folder, paths.SUMMARY))
        fileio.save_csv([{"epoch": 1, "test_acc": acc, "sparsity": summary["sparsity"]}],
                        paths.path(folder, paths.METRICS))
        fileio.save_csv(metrics.layer_table(m), paths.path(folder, paths.LAYERS))
        runindex.upsert_row(os.path.join(results, paths.INDEX), summary)
    return StandInLauncher(None, write, slots=4)


def test_profile_slims_exactly_the_structured_runs_at_its_macs_levels(tmp_path, digits, capsys):
    prof = tmp_path / "vggs.yaml"
    prof.write_text(PROFILE.format(repo=sweep.REPO))
    results = str(tmp_path / "results")
    launcher = stand_in(digits)
    launcher.results = results
    state = sweep.run_all(sweep.expand(str(prof)), results, launcher)
    assert all(st == "finished" for st, _ in state.values()), state
    runs = {n: summaries.read_summary(paths.run_dir(results, n)) for n in os.listdir(os.path.join(results, "runs"))}
    # by hand, round 1 of the 0.5 search (f = 0.3 keeps 51.5%: within 30% of 50% and above
    # 49.5%) is calibrated: seed 0 and its seed-1 follower. The 0.3 level's runs are not declared.
    want = sorted(n for n in runs if "-filter_prune-t0.3-" in n)
    assert len(want) == 2 and all(runs[n]["calibration_target"] == 0.5 for n in want)
    assert any(runs[n]["calibration_target"] == 0.3 for n in runs if runs[n]["method"] == "filter_prune")
    gone = want[1]
    os.remove(paths.path(paths.run_dir(results, gone), paths.MODEL))
    capsys.readouterr()
    assert export.main(["--profile", str(prof), "--results", results]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == f"not exported: {gone}: no model.pt here (a committed run, trained elsewhere)"
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"50% MACs: {want[0]}: slim ")
    dest = os.path.join(results, "vggs", "weights")
    assert os.listdir(dest) == [want[0]]
    assert sorted(os.listdir(os.path.join(dest, want[0]))) == ["export.json", "model.slim.pt",
                                                               "model.slim.pt.sha256"]
    facts = json.loads(open(os.path.join(dest, want[0], "export.json")).read())["slim"]
    s = runs[want[0]]
    assert facts["macs_slim"] == s["macs_structural"] and facts["macs_fraction"] == pytest.approx(0.5151603656695766)
    assert facts["test_acc_export"] == s["test_acc"] and facts["differing_predictions"] == 0
    assert not os.path.exists(os.path.join(paths.run_dir(results, want[0]), export.EXPORT_JSON))
    assert sorted(os.path.basename(f) for f in export.structured_runs(str(prof), results)[0.5]) == want


# ----------------------------------------------------------------------------- the benchmark

def test_bench_inference_times_the_committed_slim_export_against_its_runs_dense_model(tmp_path, digits, capsys):
    """RESULTS/<profile>/weights/<run>/model.slim.pt is timed as written, against the dense
    model.pt of RESULTS/runs/<run>; the CSV has its rows under the run's name; an altered file
    or one whose run is not here is one line."""
    import csv

    from benchmarks import bench_inference as B

    run = write_run(tmp_path / "results" / "runs" / "r1", pruned_vgg(False), digits, CFG)
    dest = tmp_path / "results" / "p" / "weights" / "r1"
    dest.mkdir(parents=True)
    export.export(str(run), "slim", str(dest / "model.slim.pt"), batch=16, record_dir=str(dest))
    slim = str(dest / "model.slim.pt")
    assert export.slim_source(slim) == os.path.abspath(run)
    table = str(tmp_path / "inference.csv")
    threads = torch.get_num_threads()
    args = ["--repeats", "5", "--batch", "8", "--batch-repeats", "5", "--warmup", "1", "--layer-repeats", "1"]
    assert B.main([slim, *args, "--csv", table]) == 0
    torch.set_num_threads(threads)
    inf = json.loads((dest / B.INFERENCE_JSON).read_text())
    assert inf["run"] == "r1" and inf["slim_file"] == slim
    # the benchmark's flops_slim is export.json's macs_slim: the folded one-channel conv counted
    assert inf["flops_slim"] == DENSE_MACS - REMOVED + FOLD
    rows = [r for r in csv.DictReader(open(table)) if r["variant"] == "slim"]
    assert sorted(int(r["batch"]) for r in rows) == [1, 8] and {r["run"] for r in rows} == {"r1"}
    capsys.readouterr()

    os.remove(run / paths.MODEL)
    line = one_error(capsys, B.main([slim, *args]))
    assert line == f"bench_inference: {slim}: no dense model of its run here to measure it against " \
                   f"(its run folder with model.pt, or a model.csr.pt beside it)"
    with open(slim, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    line = one_error(capsys, B.main([slim, *args]))
    assert line.startswith(f"bench_inference: {slim}: altered or damaged")
