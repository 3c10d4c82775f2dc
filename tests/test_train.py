"""End to end on the bundled digits set: the run-folder contract, eval, resume, skip, NaN."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sparsecs import config as C
from sparsecs import criteria
from sparsecs import data
import eval as E
from sparsecs import fileio
from sparsecs import final_eval
from sparsecs import hardware
from sparsecs import metrics
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import summaries
import train

FAMILIES = {"vgg16": 0.125, "resnet20": 0.25, "resnet56": 0.125, "densenet40": 0.125}
SUMMARY_KEYS = ("run dataset model method mode seed epochs lam test_acc sparsity sparsity_all nnz "
                "n_weights n_params flops_dense flops_nonzero train_seconds config_hash").split()
METRICS_COLUMNS = "epoch lr train_loss train_acc test_loss test_acc sparsity nnz seconds".split()


def cfg_for(model="resnet20", epochs=2, *extra):
    """A small, fast run: reduced width, 256 training images (2 batches of 128)."""
    return C.build(None, [f"model={model}", f"width={FAMILIES.get(model, 0.25)}", f"epochs={epochs}",
                          "device=cpu", "train_subset=256", "channels_last=true", *extra])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", FAMILIES)
def test_two_epochs_write_the_contract_and_eval_agrees(tmp_path, model):
    cfg = cfg_for(model)
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    run = tmp_path / "runs" / C.run_name(cfg)
    for f in ("config.yaml", "metrics.csv", "layers.csv", "summary.json", "checkpoint.pt", "model.pt"):
        assert (run / f).is_file(), f
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0])[:len(METRICS_COLUMNS)] == METRICS_COLUMNS
    summary = json.loads((run / "summary.json").read_text())
    assert all(k in summary for k in SUMMARY_KEYS)
    # the final number is after BatchNorm recalibration; the last epoch's row keeps training's
    # running statistics, and the summary keeps both
    assert summary["test_acc"] == s["test_acc"]
    assert summary["test_acc_running_bn"] == float(rows[-1]["test_acc"])
    assert summary["bn_recal_images"] == min(cfg["bn_recal"], cfg["train_subset"] or 10 ** 9)
    assert summary["macs_structural"] == summary["flops_dense"]   # a dense model: nothing to remove
    assert summary["method"] == "sgd" and summary["mode"] == "dense" and summary["epochs"] == 2
    assert summary["n_params"] == sum(p.numel() for p in train.build_model(cfg, 10, "cpu").parameters())
    layers = read_csv(run / "layers.csv")
    assert sum(int(r["n_weights"]) for r in layers) == summary["n_weights"]
    runs = read_csv(tmp_path / "runs.csv")
    assert [r["run"] for r in runs] == [summary["run"]]
    # eval.py recomputes from the saved weights and agrees with the run's own numbers
    result, _ = E.evaluate_file(str(run))
    for k in ("test_acc", "sparsity", "sparsity_all", "nnz", "n_params", "flops_dense"):
        assert result[k] == pytest.approx(summary[k], abs=1e-9), k
    # the saved config reproduces the run (same hash, same name)
    again = C.resolve(C.load_yaml(run / "config.yaml"))
    assert C.run_name(again) == summary["run"]


def test_finished_run_is_skipped(tmp_path, capsys):
    cfg = cfg_for("resnet20", 1)
    train.train(cfg, results=str(tmp_path))
    run = tmp_path / "runs" / C.run_name(cfg)
    before = {f: os.stat(run / f).st_mtime_ns for f in os.listdir(run)}
    capsys.readouterr()
    train.train(cfg, results=str(tmp_path))
    assert "finished already, skipped" in capsys.readouterr().err
    assert {f: os.stat(run / f).st_mtime_ns for f in os.listdir(run)} == before
    assert len(read_csv(tmp_path / "runs.csv")) == 1
    # a summary without weights (results committed to git) is trained again, not skipped
    (run / "model.pt").unlink()
    (run / "checkpoint.pt").unlink()
    train.train(cfg, results=str(tmp_path))
    assert "finished already" not in capsys.readouterr().err
    assert (run / "model.pt").exists() and len(read_csv(tmp_path / "runs.csv")) == 1


def test_run_folder_with_other_config_is_refused(tmp_path):
    out = tmp_path / "run"
    train.train(cfg_for("resnet20", 1), out=str(out), results=str(tmp_path), quiet=True)
    with pytest.raises(train.RunError, match="another config"):
        train.train(cfg_for("resnet20", 1, "seed=5"), out=str(out), results=str(tmp_path), quiet=True)


def test_resume_after_kill_is_bit_identical(tmp_path):
    args = ["configs/quick/sgd.yaml", "model=resnet20", "width=0.25", "epochs=3", "train_subset=512", "--quiet"]
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "train.py", *args, "--out", str(straight), "--results", str(tmp_path)],
                   check=True, capture_output=True)
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "train.py", *args, "--out", str(killed), "--results", str(tmp_path)])
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():
        assert p.poll() is None and time.time() < deadline
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (killed / "summary.json").exists()
    done = len(read_csv(killed / "metrics.csv"))
    assert 1 <= done < 3
    r = subprocess.run([sys.executable, "train.py", *args[:-1], "--out", str(killed), "--results", str(tmp_path)],
                       capture_output=True, text=True, check=True)
    assert f"resuming after epoch {done}" in r.stderr
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_csv(straight / "metrics.csv")[-1]["test_acc"] == read_csv(killed / "metrics.csv")[-1]["test_acc"]
    # tqdm stays quiet when output is not a terminal: no carriage-return progress lines
    assert "\r" not in r.stderr and "epoch 3/3" in r.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = data.Data.train_batches

    def poisoned(self, batch_size, seed, epoch, **kw):
        for x, y in real(self, batch_size, seed, epoch, **kw):
            yield (x * float("nan") if epoch == 1 else x), y

    monkeypatch.setattr(data.Data, "train_batches", poisoned)
    cfg = cfg_for("resnet20", 3)
    with pytest.raises(train.RunError, match=r"loss became nan in epoch 2 \(kept the checkpoint of epoch 1") as e:
        train.train(cfg, results=str(tmp_path), quiet=True)
    assert e.value.code == 3
    run = tmp_path / "runs" / C.run_name(cfg)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == 0
    assert len(read_csv(run / "metrics.csv")) == 1
    assert not (run / "summary.json").exists() and not (tmp_path / "runs.csv").exists()


def test_nan_cli_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "train.py", "configs/quick/sgd.yaml", "model=resnet20", "width=0.125",
                        "epochs=1", "train_subset=384", "optim.lr=1e30", "--results", str(tmp_path), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "loss became nan in epoch 1 (no checkpoint yet" in r.stderr


def test_gpu_switches_run_on_cpu(tmp_path):
    """bf16 autocast, channels_last and torch.compile are config switches that work on the CPU."""
    cfg = cfg_for("resnet20", 1, "width=0.125", "precision=bf16", "channels_last=true", "compile=true")
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    assert 0 <= s["test_acc"] <= 100
    result, _ = E.evaluate_file(paths.run_dir(str(tmp_path), s['run']))
    assert result["test_acc"] == pytest.approx(s["test_acc"])


def test_init_from_loads_weights_and_checks_architecture(tmp_path):
    first = train.train(cfg_for("resnet20", 1), results=str(tmp_path), quiet=True)
    cfg = cfg_for("resnet20", 1, f"init_from={paths.run_dir(str(tmp_path), first['run'])}", "optim.lr=1e-12", "augment=false")
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    assert s["init_from"].endswith("model.pt")
    # a vanishing step size leaves the loaded weights (and so accuracy) where they were
    assert s["test_acc"] == pytest.approx(first["test_acc"], abs=1.0)
    bad = cfg_for("resnet20", 1, f"init_from={paths.run_dir(str(tmp_path), first['run'])}", "width=0.5")
    with pytest.raises(train.RunError, match="holds width=0.25"):
        train.train(bad, results=str(tmp_path), quiet=True)


def test_init_sha256_names_the_weights_a_run_started_from_even_across_a_resume(tmp_path):
    import hashlib

    first = train.train(cfg_for("resnet20", 1), results=str(tmp_path), quiet=True)
    dense = paths.run_dir(str(tmp_path), first["run"])
    model_pt = os.path.join(dense, "model.pt")
    original = hashlib.sha256(open(model_pt, "rb").read()).hexdigest()
    assert original == first["model_sha256"] and first["init_sha256"] == ""   # random init: none
    cfg = cfg_for("resnet20", 2, f"init_from={dense}")
    out = str(tmp_path / "follower")
    with pytest.raises(train.StopAfter):
        train.train(cfg, out=out, results=str(tmp_path), quiet=True, stop_after=1)
    # the dense run is trained again (another CPU gives other last bits): a new model.pt
    saved = torch.load(model_pt, weights_only=False)
    saved["state_dict"] = {k: (v + 1e-3 if v.is_floating_point() else v)
                           for k, v in saved["state_dict"].items()}
    size, sha = fileio.save_torch_sha(saved, model_pt)
    summary = summaries.read_summary(dense)
    summary.update(model_bytes=size, model_sha256=sha)   # as a retrain writes them
    fileio.save_json(summary, os.path.join(dense, "summary.json"))
    assert hashlib.sha256(open(model_pt, "rb").read()).hexdigest() != original
    s = train.train(cfg, out=out, results=str(tmp_path), quiet=True)
    assert s["epochs"] == 2 and s["init_sha256"] == original   # what it started from, not today's file
    fresh = train.train(cfg_for("resnet20", 1, f"init_from={dense}"), results=str(tmp_path), quiet=True)
    assert fresh["init_sha256"] == hashlib.sha256(open(model_pt, "rb").read()).hexdigest()


def test_a_checkpoint_from_another_config_is_never_resumed(tmp_path):
    out = str(tmp_path / "run")
    cfg = cfg_for("resnet20", 2)
    ckpt = {"config_hash": C.config_hash(cfg_for("resnet20", 2, "optim.lr=0.05")), "epoch": 0}
    os.makedirs(out)
    torch.save(ckpt, os.path.join(out, "checkpoint.pt"))     # config.yaml deleted, lr changed
    with pytest.raises(train.RunError, match="written by another config"):
        train.train(cfg, out=out, quiet=True)


def test_structural_macs_are_what_removing_zero_filters_leaves():
    """One zero filter (and its BatchNorm) in the first block's conv1 of ResNet-20 x0.25 at
    32x32: conv1 loses that filter's 4*3*3 weights at 32*32 positions, conv2 the input channel
    it fed (4 filters * 3*3 each): 2 * 36 * 1024 = 73,728 multiply-adds fewer, by hand."""
    from sparsecs import data
    from sparsecs import models
    import torch

    cifar = data.get("cifar10").input_shape      # 3x32x32, the shape the count above assumes
    m = models.get_model("resnet20", width=0.25, input_shape=cifar).eval()
    dense = metrics.counts(m)["flops_dense"]
    assert final_eval.structural_macs(m) == dense           # no zero filter: nothing to remove
    blk = m.layers[0]
    with torch.no_grad():
        blk.conv1.weight[1].zero_()
        blk.bn1.weight[1] = 0.0
        blk.bn1.bias[1] = 0.0
    assert blk.conv1.weight.shape == (4, 4, 3, 3)
    assert final_eval.structural_macs(m) == dense - 2 * 4 * 9 * 32 * 32
    # elementwise zeros (no whole filter) remove nothing structurally
    m2 = models.get_model("resnet20", width=0.25, input_shape=cifar).eval()
    with torch.no_grad():
        m2.layers[0].conv1.weight[:, :, 0, 0] = 0.0
    assert final_eval.structural_macs(m2) == dense


def test_the_cpu_name_tells_apart_machines_a_vm_names_alike(tmp_path):
    """A VM shows "AMD EPYC" for CPUs 2.4x apart in epoch time; the summary's device_name adds
    family, model and the widest vector unit from /proc/cpuinfo's first processor."""
    block = ("processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: {fam}\nmodel\t\t: {model}\n"
             "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 {more}\n\n")
    cases = {("26", "2", "avx512f avx512_bf16"): "AMD EPYC (family 26 model 2, AVX-512)",
             ("25", "1", ""): "AMD EPYC (family 25 model 1, AVX2)",
             ("6", "143", "avx512f amx_bf16 amx_tile"): "AMD EPYC (family 6 model 143, AMX)"}
    for (fam, model, more), want in cases.items():
        p = tmp_path / f"cpuinfo{fam}"
        # a second processor with other flags: only the first one is read
        p.write_text(block.format(i=0, fam=fam, model=model, more=more)
                     + block.format(i=1, fam="1", model="1", more="amx_bf16"))
        assert hardware._cpu_name(str(p)) == want
    (tmp_path / "bare").write_text("model name\t: Some CPU\n")
    assert hardware._cpu_name(str(tmp_path / "bare")) == "Some CPU"
    assert hardware._cpu_name(str(tmp_path / "absent")) == ""


def _first_images_accuracy(model, data, cfg, n):
    """Accuracy % of `model` (eval mode) on the first n training images of bn_recal's order,
    counted here image by image."""
    model.eval()
    hits = seen = 0
    with torch.no_grad():
        for x, y in data.train_batches(cfg["eval_batch_size"], cfg["seed"], cfg["epochs"],
                                       augment=False, channels_last=cfg["channels_last"]):
            x, y = x[: n - seen], y[: n - seen]
            hits += int((model(x).argmax(1) == y).sum())
            seen += len(y)
            if seen >= n:
                break
    return 100.0 * hits / seen


def test_train_acc_final_is_the_final_weights_accuracy_on_training_images(tmp_path):
    cfg = cfg_for("resnet20", 2)
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    d = data.load("digits")
    d.subset(cfg["train_subset"])
    model = modelfile.load_model(paths.run_dir(str(tmp_path), s["run"]))
    # 256 training images, fewer than FINAL_TRAIN_IMAGES: all of them, as the saved weights score them
    assert s["train_acc_final"] == pytest.approx(_first_images_accuracy(model, d, cfg, 256), abs=1e-9)
    assert summaries.read_summary(paths.run_dir(str(tmp_path), s["run"]))["train_acc_final"] == s["train_acc_final"]


def test_a_model_broken_in_its_last_step_is_collapsed_whatever_the_epoch_average(tmp_path, monkeypatch):
    # the exported weights lose their classifier (as a threshold that grows to the last step can
    # break a model): every logit 0, so every image is called class 0, and the final training
    # accuracy is the share of class 0 among the training images (all 1,437 of digits, fewer than
    # FINAL_TRAIN_IMAGES), whatever the epoch's average was
    build = train.build_method

    def broken(cfg, model, steps):
        method = build(cfg, model, steps)
        export = method.export

        def zero_classifier():
            state = export()
            return {k: (torch.zeros_like(v) if k.startswith("fc.") else v) for k, v in state.items()}
        method.export = zero_classifier
        return method
    monkeypatch.setattr(train, "build_method", broken)
    cfg = cfg_for("resnet20", 5, "train_subset=0")
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    labels = data.load("digits").train_y
    assert len(labels) < criteria.FINAL_TRAIN_IMAGES
    share0 = 100.0 * float((labels == 0).sum()) / len(labels)
    assert s["train_acc_final"] == pytest.approx(share0, abs=1e-9)
    assert s["train_acc"] > 55.0 and criteria.collapsed(s)   # the epoch's average would have passed
    assert not criteria.collapsed({**s, "train_acc_final": 55.0})
    assert criteria.collapse_measure({k: v for k, v in s.items() if k != "train_acc_final"}) == (s["train_acc"], "train_acc")


@pytest.mark.parametrize("recal", [True, False])
def test_predictions_are_the_final_evaluations_and_score_its_accuracy(tmp_path, recal, monkeypatch):
    # bn_recal 0: no recalibration pass, the last epoch's evaluation is the final one and its
    # predictions are kept from that pass (no extra evaluation)
    cfg = cfg_for("resnet20", 1, *([] if recal else ["bn_recal=0"]))
    calls = []
    real = metrics.evaluate
    monkeypatch.setattr(metrics, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    # one pass per epoch, one after bn_recal, one on training images (train_acc_final): no more
    assert len(calls) == (3 if recal else 2)
    run = paths.run_dir(str(tmp_path), s["run"])
    labels = data.load("digits").test_y.numpy()
    with open(paths.path(run, paths.PREDICTIONS), "rb") as f:
        saved = np.load(f)
    assert saved.dtype == np.uint8 and saved.shape == (len(labels),)
    assert os.path.getsize(paths.path(run, paths.PREDICTIONS)) == 128 + len(labels)   # the .npy header + a byte each
    assert 100.0 * (saved == labels).sum() / len(labels) == pytest.approx(s["test_acc"], abs=1e-9)
    # and the labels the report scores them on, written once beside the runs
    assert np.array_equal(fileio.read_classes(paths.labels_path(str(tmp_path), "digits")), labels)
    # the predictions are this model's: eval.py's model scores the same images the same way
    model = modelfile.load_model(run)
    got = []
    metrics.evaluate(model, data.load("digits").test_batches(cfg["eval_batch_size"]), got)
    assert np.array_equal(torch.cat(got).numpy(), saved)


def test_predictions_gathered_from_contiguous_rank_parts_are_the_whole_test_set():
    class TwoRanks:   # a stand-in for distributed.Dist whose gather returns both ranks' parts
        enabled, world = True, 2

        def gather(self, mine):
            return [mine, np.arange(5, 9)]
    got = final_eval.gather_predictions([torch.arange(0, 3), torch.arange(3, 5)], TwoRanks())
    assert got.tolist() == list(range(9))
