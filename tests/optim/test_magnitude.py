"""Magnitude pruning baselines (docs/methods.md §3): gmp, magnitude_finetune, filter_prune."""
import copy
import csv
import json

import pytest
import torch
from torch import nn

from sparsecs import config as C
from sparsecs import data
import eval as E
from sparsecs import fileio
from sparsecs import modelfile
from sparsecs import paths
import train
from sparsecs.optim import get_method
from sparsecs.optim.base import penalized_modules
from sparsecs.optim.magnitude import cubic_sparsity

FAMILIES = {"vgg16": 0.125, "resnet20": 0.25, "resnet56": 0.125, "densenet40": 0.125}


def small_model(seed=0):
    """Three conv-BN-ReLU layers of different fan-in (so of different weight scale) and a linear."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    return m.to(memory_format=torch.channels_last)


def make(name, model, steps=2, epochs=4, **hp):
    if not hasattr(model, "input_shape"):     # a hand-built net: the probe needs a registry shape
        model.input_shape = data.get("digits").input_shape
    cls = get_method(name)
    hp = {**cls.defaults, **hp}
    cls.validate(hp)
    return cls(model, hp, steps, epochs)


def train_steps(model, method, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 3, 8, 8, generator=g).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), generator=g)
        method.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        method.step()


def weights(model, convs_only=False):
    return [m.weight for _, m in penalized_modules(model) if not convs_only or isinstance(m, nn.Conv2d)]


def zeros(w):
    return int((w == 0).sum())


def test_cubic_schedule_hand_values():
    assert cubic_sparsity(1, 2, 5, 0.9) == 0.0
    assert cubic_sparsity(2, 2, 5, 0.9) == 0.0
    assert cubic_sparsity(3, 2, 5, 0.9) == pytest.approx(0.9 * 19 / 27)
    assert cubic_sparsity(4, 2, 5, 0.9) == pytest.approx(0.9 * 26 / 27)
    assert cubic_sparsity(5, 2, 5, 0.9) == 0.9
    assert cubic_sparsity(9, 2, 5, 0.9) == 0.9
    assert cubic_sparsity(3, 3, 3, 0.5) == 0.5  # e0 = e1: the target at once


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_gmp_sparsity_follows_the_cubic_schedule(scope):
    model = small_model()
    epochs, target = 6, 0.8
    method = make("gmp", model, 2, epochs, target=target, scope=scope, prune_start=1, prune_end=4)
    ws = weights(model)
    before = [w == 0 for w in ws]
    for epoch in range(epochs):
        train_steps(model, method, 2, seed=epoch)
        row = method.end_epoch(epoch)
        s = cubic_sparsity(epoch, 1, 4, target)
        assert row["scheduled_sparsity"] == pytest.approx(s)
        if scope == "layer":  # every layer within one weight of s·n
            for w in ws:
                assert abs(zeros(w) - s * w.numel()) <= 1
        total = sum(zeros(w) for w in ws)
        assert abs(total - s * sum(w.numel() for w in ws)) <= (1 if scope == "global" else len(ws))
        now = [w == 0 for w in ws]
        assert all((b & ~n).sum() == 0 for b, n in zip(before, now))  # pruned stays pruned
        before = now
    assert sum(zeros(w) for w in ws) / sum(w.numel() for w in ws) == pytest.approx(target, abs=1e-3)


def test_global_and_layer_scopes_differ_as_they_should():
    per_layer = {}
    for scope in ("global", "layer"):
        model = small_model()
        method = make("gmp", model, 1, 2, target=0.7, scope=scope, prune_start=0, prune_end=0)
        method.end_epoch(0)
        ws = weights(model)
        per_layer[scope] = [zeros(w) / w.numel() for w in ws]
        assert sum(zeros(w) for w in ws) == pytest.approx(0.7 * sum(w.numel() for w in ws), abs=len(ws))
    assert max(per_layer["layer"]) - min(per_layer["layer"]) < 0.05  # equal, up to rounding
    assert max(per_layer["global"]) - min(per_layer["global"]) > 0.2  # layers of different scale
    # global keeps the largest |w| of the whole network: every kept weight beats every pruned one
    model = small_model()
    make("gmp", model, 1, 2, target=0.7, prune_start=0, prune_end=0).end_epoch(0)
    dense = torch.cat([w.detach().abs().reshape(-1) for w in weights(small_model())])
    kept = torch.cat([(w != 0).reshape(-1) for w in weights(model)])
    assert dense[kept].min() >= dense[~kept].max()


def test_masked_weights_stay_exactly_zero_under_momentum_and_weight_decay():
    model = small_model()
    method = make("gmp", model, 5, 8, target=0.8, prune_start=1, prune_end=3, momentum=0.9, nesterov=True,
                  weight_decay=5e-2, lr=0.2, schedule="constant")
    train_steps(model, method, 5)
    method.end_epoch(0)
    train_steps(model, method, 5, seed=1)
    bufs = [method.optimizer.state[w]["momentum_buffer"] for w in weights(model)]
    assert all((b != 0).all() for b in bufs)  # momentum everywhere: it would revive pruned weights
    snapshot = [w.detach().clone() for w in weights(model)]
    for epoch in range(1, 8):
        method.end_epoch(epoch)
        train_steps(model, method, 5, seed=epoch + 1)
        for w, b, m in zip(weights(model), bufs, method.masks):
            assert (w[m == 0] == 0).all() and (b[m == 0] == 0).all()
            assert ((w == 0) == (m == 0)).all()
    assert sum(zeros(w) for w in weights(model)) == pytest.approx(0.8 * sum(w.numel() for w in weights(model)),
                                                                  abs=1)
    assert any(not torch.equal(a, w) for a, w in zip(snapshot, weights(model)))  # it did train


def test_masks_are_method_state_and_survive_a_round_trip():
    model = small_model()
    method = make("gmp", model, 2, 3, target=0.6, prune_start=0, prune_end=1)
    train_steps(model, method, 2)
    method.end_epoch(0), method.end_epoch(1)
    state = copy.deepcopy(method.state_dict())
    assert all(m.dtype == torch.bool for m in state["masks"]) and state["active"]
    model2 = small_model(seed=1)
    model2.load_state_dict(copy.deepcopy(model.state_dict()))
    method2 = make("gmp", model2, 2, 3, target=0.6, prune_start=0, prune_end=1)
    method2.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(method.masks, method2.masks))
    train_steps(model, method, 2, seed=5), train_steps(model2, method2, 2, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(weights(model), weights(model2)))


def test_magnitude_finetune_prunes_once_and_never_changes_the_mask():
    model = small_model()
    dense = [w.detach().clone() for w in weights(model)]
    method = make("magnitude_finetune", model, 3, 4, target=0.75)
    n = sum(w.numel() for w in dense)
    masks = [m.clone() for m in method.masks]
    assert sum(zeros(w) for w in weights(model)) == round(0.75 * n)  # achieved == target
    flat = torch.cat([w.abs().reshape(-1) for w in dense])
    kept = torch.cat([(m != 0).reshape(-1) for m in masks])
    assert flat[kept].min() >= flat[~kept].max()  # by global magnitude of the loaded weights
    for epoch in range(4):
        train_steps(model, method, 3, seed=epoch)
        assert method.end_epoch(epoch) == {}
        assert all(torch.equal(a, b) for a, b in zip(masks, method.masks))
        assert all(((w == 0) == (m == 0)).all() for w, m in zip(weights(model), masks))
    assert method.summary() == {"target_sparsity": 0.75, "lam": 0.0}


def test_filter_prune_zeroes_whole_filters_to_the_target_count():
    model = small_model()
    epochs, target = 4, 0.5
    method = make("filter_prune", model, 2, epochs, target=target, prune_start=0, prune_end=2)
    convs = weights(model, convs_only=True)
    linear = model[-1].weight
    for epoch in range(epochs):
        train_steps(model, method, 2, seed=epoch)
        norms = [w.detach().abs().reshape(w.shape[0], -1).sum(1) for w in convs]
        method.end_epoch(epoch)
        f = cubic_sparsity(epoch, 0, 2, target)
        for w, before in zip(convs, norms):
            per_filter = w.detach().abs().reshape(w.shape[0], -1).sum(1)
            gone = per_filter == 0
            assert int(gone.sum()) == min(round(f * w.shape[0]), w.shape[0] - 1)
            assert zeros(w) == int(gone.sum()) * w[0].numel()  # pruned filters entirely zero, no others
            if gone.any():  # the pruned filters had the smallest ℓ1 norms
                assert before[gone].max() <= before[~gone].min()
        assert zeros(linear) == 0  # the classifier is not pruned
    assert method.mode == "channel"
    s = method.summary()
    assert s["target_sparsity"] == target and s["filter_sparsity"] == pytest.approx(target, abs=0.05)


def test_dead_channels_get_the_statistics_of_a_zero_channel():
    """A BatchNorm fed by a pruned filter sees exact zeros: eval then gives β, as training does."""
    model = small_model()
    method = make("filter_prune", model, 2, 2, target=0.5, prune_start=0, prune_end=0)
    train_steps(model, method, 3)
    method.end_epoch(0)
    train_steps(model, method, 2, seed=1)
    conv, bn = model[3], model[4]
    gone = conv.weight.detach().reshape(conv.weight.shape[0], -1).abs().sum(1) == 0
    assert gone.any()
    assert (bn.running_mean[gone] == 0).all() and (bn.running_var[gone] == 0).all()
    assert [(i, id(b)) for i, b in method.bn_after] == [(0, id(model[1])), (1, id(model[4])), (2, id(model[7]))]
    model.eval()  # and so eval and train mode agree on that channel: β
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    assert torch.equal(model[:5](x)[:, gone], bn.bias[gone].view(1, -1, 1, 1).expand(4, -1, 8, 8))


def test_magnitude_finetune_needs_init_from():
    with pytest.raises(C.ConfigError, match="needs init_from"):
        C.build("configs/quick/magnitude_finetune.yaml")


@pytest.mark.parametrize("overrides,message", [
    (["method=gmp", "optim.target=1.0"], "'optim.target' must be in \\[0, 1\\)"),
    (["method=gmp", "optim.scope=kernel"], "must be one of"),
    (["method=gmp", "optim.prune_start=5", "optim.prune_end=2"], "is after"),
    (["method=filter_prune", "optim.scope=layer"], "unknown config key 'optim.scope'"),
    (["method=gmp", "optim.momentum=1.0"], "optim.momentum"),
])
def test_bad_configs_are_one_line_errors(overrides, message):
    with pytest.raises(C.ConfigError, match=message):
        C.build(None, overrides)


# ---- end to end ------------------------------------------------------------------------------

def cfg_for(method, model, epochs=2, *extra):
    return C.build(f"configs/quick/{method}.yaml",
                   [f"model={model}", f"width={FAMILIES[model]}", f"epochs={epochs}", "device=cpu",
                    "train_subset=256", "channels_last=true", *extra])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_run(tmp_path, cfg):
    train.train(cfg, results=str(tmp_path), quiet=True)
    run = tmp_path / "runs" / C.run_name(cfg)
    for f in ("config.yaml", "metrics.csv", "layers.csv", "summary.json", "checkpoint.pt", "model.pt"):
        assert (run / f).is_file(), f
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [str(e + 1) for e in range(cfg["epochs"])]
    summary = json.loads((run / "summary.json").read_text())
    result, _ = E.evaluate_file(str(run))
    for k in ("test_acc", "test_loss", "sparsity", "sparsity_all", "nnz", "flops_nonzero"):
        assert result[k] == pytest.approx(summary[k], abs=1e-9), k
    assert summary["target_sparsity"] == cfg["optim"]["target"] and summary["lam"] == 0.0
    return summary, rows


@pytest.mark.parametrize("model", FAMILIES)
def test_each_method_two_epochs_end_to_end(tmp_path, model):
    # gmp: the whole cubic schedule squeezed into the 2 epochs (prune_end clamps to the last)
    cfg = cfg_for("gmp", model, 2)
    s, rows = check_run(tmp_path, cfg)
    assert s["mode"] == "elementwise" and s["prune_end"] == 1 and s["scope"] == "global"
    assert [float(r["scheduled_sparsity"]) for r in rows] == [0.0, 0.9]
    assert s["sparsity"] == pytest.approx(0.9, abs=1e-4)
    # filter_prune
    cfg = cfg_for("filter_prune", model, 2)
    s, rows = check_run(tmp_path, cfg)
    assert s["mode"] == "channel"
    layers = read_csv(tmp_path / "runs" / C.run_name(cfg) / "layers.csv")
    for r in layers:
        if r["type"] == "Conv2d":
            n = int(r["filters"])
            assert int(r["zero_filters"]) == min(round(0.5 * n), n - 1), r["layer"]
    assert all(int(r["nnz"]) == int(r["n_weights"]) for r in layers if r["type"] == "Linear")
    # magnitude_finetune from a saved model.pt (random weights stand in for a dense run here)
    dense = train.build_model(cfg_for("gmp", model), 10, "cpu")
    path = tmp_path / f"dense-{model}.pt"
    fileio.save_torch(modelfile.model_file(cfg, 10, dense.state_dict()), str(path))
    cfg = cfg_for("magnitude_finetune", model, 2, f"init_from={path}")
    s, _ = check_run(tmp_path, cfg)
    assert s["sparsity"] == pytest.approx(0.9, abs=1 / s["n_weights"]) and s["init_from"] == str(path)


def test_magnitude_finetune_from_a_dense_run_folder(tmp_path):
    dense = train.train(cfg_for("sgd", "resnet20", 1), results=str(tmp_path), quiet=True)
    cfg = cfg_for("magnitude_finetune", "resnet20", 1, f"init_from={paths.run_dir(str(tmp_path), dense['run'])}", "optim.target=0.7")
    s, _ = check_run(tmp_path, cfg)
    assert s["init_from"] == paths.run_dir(str(tmp_path), dense['run']) + "/model.pt"
    # the support of the fine-tuned weights is the top 30% of the dense run's |w|
    a = torch.load(paths.run_dir(str(tmp_path), dense['run']) + "/model.pt", weights_only=True)["state_dict"]
    b = torch.load(paths.run_dir(str(tmp_path), s['run']) + "/model.pt", weights_only=True)["state_dict"]
    keys = [k[:-len(".weight")] for k in b if k.endswith(".weight") and b[k].dim() in (2, 4)]
    flat = torch.cat([a[k + ".weight"].abs().reshape(-1) for k in keys])
    kept = torch.cat([(b[k + ".weight"] != 0).reshape(-1) for k in keys])
    assert flat[kept].min() >= flat[~kept].max()
    assert kept.float().mean().item() == pytest.approx(0.3, abs=1 / kept.numel())


def test_gmp_resume_restores_the_masks(tmp_path, train_then_crash):
    cfg = cfg_for("gmp", "resnet20", 2, "optim.prune_start=0", "optim.prune_end=0")  # masks from epoch 0 on
    train.train(cfg, out=str(tmp_path / "straight"), results=str(tmp_path), quiet=True)
    train_then_crash(cfg, str(tmp_path / "resumed"), str(tmp_path))
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["method"]["active"]
    train.train(cfg, out=str(tmp_path / "resumed"), results=str(tmp_path), quiet=True)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (read_csv(tmp_path / r / "metrics.csv") for r in ("straight", "resumed"))
    assert [r["test_acc"] for r in ra] == [r["test_acc"] for r in rb]
