"""Soft-threshold pruning (docs/methods.md §2): the reparameterization, its gradient, the
threshold schedules, resume and the saved model."""
import copy
import csv
import json
import math

import pytest
import torch
from torch import nn

from sparsecs import config as C
import eval as E
import train
from sparsecs.optim import get_method
from sparsecs.optim.soft_threshold import SoftThreshold
from tests.optim.nets import layers, one_step, tiny_model

FAMILIES = {"vgg16": 0.125, "resnet20": 0.25, "resnet56": 0.125, "densenet40": 0.125}


def S(theta, d):
    """The definition: sign(θ)·max(|θ| − d, 0)."""
    return torch.sign(theta) * torch.clamp(theta.abs() - d, min=0)


def make(model, steps=3, epochs=2, **hp):
    hp = {**SoftThreshold.defaults, **hp}
    SoftThreshold.validate(hp)
    return get_method("soft_threshold")(model, hp, steps, epochs)


def thetas(model):
    return [m.parametrizations.weight.original for m in layers(model)]


def test_forward_weight_is_exactly_S_of_theta_and_theta_starts_at_w0():
    model = tiny_model()
    w0 = [m.weight.detach().clone() for m in layers(model)]
    method = make(model, lam=0.5)
    for theta, w in zip(thetas(model), w0):
        assert torch.equal(theta, w)  # d_0 = 0: θ = sign(w0)(|w0| + 0)
    d = 0.11
    method.threshold.fill_(d)
    for theta, m in zip(thetas(model), layers(model)):
        w = m.weight
        assert torch.equal(w, S(theta, torch.tensor(d)))
        assert (w == 0).any() and (w != 0).any()
    # the threshold tensor is one, shared by every layer
    assert all(m.parametrizations.weight[0].threshold is method.threshold for m in layers(model))
    # export gives the plain keys and S(θ, d); a plain model with it computes the same outputs
    state = method.export()
    assert not any("parametrizations" in k for k in state)
    plain = tiny_model()
    plain.load_state_dict(state)
    for theta, m in zip(thetas(model), layers(plain)):
        assert torch.equal(m.weight, S(theta, torch.tensor(d)))
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))


def test_gradient_passes_straight_through_where_w_is_zero():
    model = tiny_model()
    method = make(model, lam=0.5)
    method.threshold.fill_(0.15)
    plain = tiny_model()
    plain.load_state_dict(method.export())
    x = torch.randn(6, 3, 8, 8).to(memory_format=torch.channels_last)
    model(x).square().sum().backward()
    plain(x).square().sum().backward()
    for theta, m_plain, m in zip(thetas(model), layers(plain), layers(model)):
        zero = m.weight.detach() == 0
        assert zero.any()
        assert torch.allclose(theta.grad, m_plain.weight.grad, rtol=1e-6, atol=1e-7)  # ∂w/∂θ = 1
        assert (theta.grad[zero] != 0).any()  # pruned weights get gradient: they can grow back


@pytest.mark.parametrize("schedule,milestones", [("cosine", []), ("step", [1, 3])])
def test_lats_threshold_is_lambda_times_the_sum_of_lrs_used(schedule, milestones):
    steps, epochs, lam = 3, 5, 0.02
    model = tiny_model()
    method = make(model, steps, epochs, lam=lam, schedule=schedule, milestones=milestones, gamma=0.5)
    used = []
    for t in range(steps * epochs):
        used.append(method.optimizer.param_groups[0]["lr"])
        one_step(model, method, t)
        # λ·Σ η_s in float64, stored once as the float32 threshold tensor: exact
        assert method.threshold.item() == torch.tensor(lam * sum(used), dtype=torch.float32).item()
        assert method.threshold.dtype == torch.float32
    assert len(set(used)) > 2  # the lr did change along the run
    assert method.summary()["lam"] == lam


@pytest.mark.parametrize("schedule,milestones", [("cosine", []), ("step", [1, 3])])
def test_lats_set_by_final_threshold_reaches_D_at_the_last_step(schedule, milestones):
    steps, epochs, D = 3, 5, 0.07
    model = tiny_model()
    method = make(model, steps, epochs, final_threshold=D, schedule=schedule, milestones=milestones, gamma=0.5)
    used, d = [], []
    for t in range(steps * epochs):
        used.append(method.optimizer.param_groups[0]["lr"])
        one_step(model, method, t)
        d.append(method.threshold.item())
    assert d[-1] == pytest.approx(D, rel=1e-6)
    # below D as long as some learning rate is still to come (cosine's last lr is 0)
    assert all(d[t] < D for t in range(len(d)) if sum(used[t + 1:]) > 1e-9)
    assert d == sorted(d)
    lam = method.summary()["lam"]
    assert lam == pytest.approx(D / sum(used), rel=1e-12)
    if schedule == "cosine":  # the S-LATS curve: d_t = D (t/N + sin(π t/N)/π) for the continuous lr
        N = steps * epochs
        assert method.threshold_at(N // 2, sum(used[:N // 2])) == pytest.approx(D * (0.5 + 1 / math.pi), rel=0.1)


def test_lats_uses_the_lr_actually_used_not_the_planned_one():
    """A warm-up (or any change of the lr outside the schedule) moves the threshold with it."""
    model = tiny_model()
    method = make(model, 3, 2, lam=0.1)
    lrs = iter([0.01, 0.03, 0.05, 0.2, 0.2, 0.1])

    class Warmup:
        def step(self):
            method.optimizer.param_groups[0]["lr"] = next(lrs, 0.0)

        def state_dict(self):
            return {}

    method.schedule = Warmup()
    method.schedule.step()
    used = []
    for t in range(6):
        used.append(method.optimizer.param_groups[0]["lr"])
        one_step(model, method, t)
        assert method.threshold.item() == pytest.approx(0.1 * sum(used), rel=1e-6)


def stds_thresholds(kind, D, steps_per_epoch, epochs):
    """The threshold after each optimizer step as STDS's ImageNet/train.py sets it, re-written
    from its loop: the step count starts at epoch · len(loader), is raised after each
    optimizer step, and the flat width becomes linearInc or sineInc(step, total_step) · D,
    total_step = len(loader) · epochs."""
    def linear_inc(n, N):
        return float(n) / N

    def sine_inc(n, N):
        return (1.0 + math.sin(math.pi * (float(n) / N - 0.5))) / 2

    inc = linear_inc if kind == "linear" else sine_inc
    total_step = steps_per_epoch * epochs
    out = []
    for epoch in range(epochs):
        step = epoch * steps_per_epoch
        for _ in range(steps_per_epoch):
            step = step + 1
            out.append(inc(step, total_step) * D)
    return out


@pytest.mark.parametrize("kind", ["linear", "sine"])
def test_linear_and_sine_are_stds_schedules_step_by_step(kind):
    steps, epochs, D = 2, 3, 0.05
    model = tiny_model()
    method = make(model, steps, epochs, threshold_schedule=kind, final_threshold=D)
    got = []
    for t in range(1, steps * epochs + 1):
        one_step(model, method, t)
        got.append(method.threshold.item())
    assert got == pytest.approx(stds_thresholds(kind, D, steps, epochs), rel=1e-6)
    assert method.summary()["threshold_schedule"] == kind


# d_t / D after step t of N = 6, by hand: linear t/6; sine (1 − cos(πt/6))/2, i.e.
# (1 − √3/2)/2, 1/4, 1/2, 3/4, (1 + √3/2)/2, 1. Revision 1's sin(πt/12) gave 0.2588 at t = 1
# and 0.7071 at t = 3: these values fail it.
HAND = {"linear": [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0],
        "sine": [(1 - 3 ** 0.5 / 2) / 2, 0.25, 0.5, 0.75, (1 + 3 ** 0.5 / 2) / 2, 1.0]}


@pytest.mark.parametrize("kind", ["linear", "sine"])
def test_linear_and_sine_hand_computed_grow_to_the_last_step(kind):
    """STDS ramps over all of training: no early end, no hold; the last step ends at D."""
    D = 0.4
    method = make(tiny_model(), 2, 3, threshold_schedule=kind, final_threshold=D)
    got = [method.threshold_at(t, 0.0) for t in range(7)]
    assert got == pytest.approx([0.0] + [D * v for v in HAND[kind]], rel=1e-12, abs=1e-15)
    assert got[5] < got[6] == D          # still growing at the last step: nothing held early


def test_schedule_revisions_sine_alone_is_revised():
    assert SoftThreshold.revision == 1
    assert [SoftThreshold.revision_of({"threshold_schedule": k}) for k in ("lats", "linear", "sine")] == [1, 1, 2]
    assert SoftThreshold.revision_of({}) == 1            # the default schedule is LATS
    cfg = C.build("configs/quick/soft_threshold.yaml",
                  ["optim.threshold_schedule=sine", "optim.lam=0", "optim.final_threshold=0.1"])
    assert C.method_revision("soft_threshold", cfg["optim"]) == 2


def committed_soft_threshold_runs():
    import os

    import yaml

    root = "results/runs"
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if "-soft_threshold-" in name:
            with open(os.path.join(root, name, "config.yaml")) as f:
                yield name, yaml.safe_load(f)


def test_committed_lats_and_linear_runs_keep_their_hashes_sine_runs_do_not(monkeypatch):
    """The runs committed before the sine schedule's revision 2 end in their revision-1 config
    hash: LATS and linear keep their names; a sine run's hash differs between the revisions, so
    the sweep retrains it and no revision-1 sine run is counted with revision-2 ones. Each
    committed sine run's name is its revision-1 or its revision-2 hash (the reruns; the
    revision-1 runs were removed once the reruns were complete, commit history keeps them)."""
    from sparsecs.optim import soft_threshold as st

    runs = list(committed_soft_threshold_runs())
    seen = {"lats": 0, "linear": 0, "sine": 0}
    for name, cfg in runs:
        seen[cfg["optim"]["threshold_schedule"]] += 1
    if not all(seen.values()):
        pytest.skip(f"no committed runs of every schedule here: {seen}")
    current = {name: C.config_hash(cfg) for name, cfg in runs}
    monkeypatch.setitem(st.SCHEDULE_REVISIONS, "sine", 1)
    first = {name: C.config_hash(cfg) for name, cfg in runs}
    for name, cfg in runs:
        committed = name.rsplit("-", 1)[1]
        if cfg["optim"]["threshold_schedule"] != "sine":
            assert committed == current[name] == first[name], name
        else:
            assert current[name] != first[name], name          # the revision moves the hash
            assert committed in (current[name], first[name]), name


@pytest.mark.parametrize("overrides,message", [
    (["optim.lam=0.1", "optim.final_threshold=0.1"], "give one"),
    (["optim.threshold_schedule=linear"], "needs optim.final_threshold"),
    (["optim.threshold_schedule=sine", "optim.final_threshold=0.1", "optim.lam=0.1"], "no optim.lam"),
    (["optim.lam=-1"], "'optim.lam' must be >= 0"),
    (["optim.threshold_schedule=cubic"], "must be one of"),
])
def test_bad_configs_are_one_line_errors(overrides, message):
    with pytest.raises(C.ConfigError, match=message):
        C.build("configs/quick/soft_threshold.yaml", overrides)


def test_state_dict_round_trip_restores_threshold_and_lr_sum():
    model = tiny_model()
    method = make(model, 3, 2, final_threshold=0.05)
    for t in range(4):
        one_step(model, method, t)
    state = copy.deepcopy(method.state_dict())
    model_state = copy.deepcopy(model.state_dict())
    model2 = tiny_model()
    method2 = make(model2, 3, 2, final_threshold=0.05)
    model2.load_state_dict(model_state)
    method2.load_state_dict(state)
    assert method2.threshold.item() == method.threshold.item() and method2.lr_sum == method.lr_sum
    for a, b in zip(layers(model), layers(model2)):
        assert torch.equal(a.weight, b.weight)
    one_step(model, method, 9), one_step(model2, method2, 9)
    assert method2.threshold.item() == method.threshold.item()
    for a, b in zip(layers(model), layers(model2)):
        assert torch.equal(a.weight, b.weight)


# ---- end to end ------------------------------------------------------------------------------

def cfg_for(model, epochs=2, *extra):
    return C.build("configs/quick/soft_threshold.yaml",
                   [f"model={model}", f"width={FAMILIES[model]}", f"epochs={epochs}", "device=cpu",
                    "train_subset=256", "channels_last=true", *extra])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", FAMILIES)
def test_two_epochs_end_to_end_and_eval_reproduces_the_summary(tmp_path, model):
    cfg = cfg_for(model, 2, "optim.lam=0.05")
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    run = tmp_path / "runs" / C.run_name(cfg)
    for f in ("config.yaml", "metrics.csv", "layers.csv", "summary.json", "checkpoint.pt", "model.pt"):
        assert (run / f).is_file(), f
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    d = [float(r["threshold"]) for r in rows]
    assert 0 < d[0] < d[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "soft_threshold" and summary["mode"] == "elementwise"
    assert summary["lam"] == 0.05 and summary["threshold_schedule"] == "lats"
    assert summary["final_threshold"] == pytest.approx(d[-1])
    assert summary["sparsity"] > 0
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert not any("parametrizations" in k for k in saved)
    result, _ = E.evaluate_file(str(run))
    for k in ("test_acc", "test_loss", "sparsity", "sparsity_all", "nnz", "flops_nonzero"):
        assert result[k] == pytest.approx(summary[k], abs=1e-9), k
    assert s["test_acc"] == summary["test_acc"]


@pytest.mark.parametrize("kind,revision", [("sine", 2), ("lats", 1)])
def test_summary_records_the_schedules_revision(tmp_path, kind, revision):
    extra = ["optim.lam=0", "optim.final_threshold=0.05"] + ([f"optim.threshold_schedule={kind}"]
                                                            if kind != "lats" else [])
    cfg = C.build("configs/quick/soft_threshold.yaml",
                  ["model=resnet20", "width=0.125", "epochs=1", "device=cpu", "train_subset=64", *extra])
    train.train(cfg, results=str(tmp_path), quiet=True)
    summary = json.loads((tmp_path / "runs" / C.run_name(cfg) / "summary.json").read_text())
    assert summary["method_revision"] == revision and summary["threshold_schedule"] == kind
    assert summary["final_threshold"] == pytest.approx(0.05, rel=1e-6)


def test_resume_gives_the_same_model_and_thresholds(tmp_path, train_then_crash):
    cfg = cfg_for("resnet20", 2, "optim.lam=0.05", "optim.schedule=step", "optim.milestones=[1]")
    straight = train.train(cfg, out=str(tmp_path / "straight"), results=str(tmp_path), quiet=True)
    train_then_crash(cfg, str(tmp_path / "resumed"), str(tmp_path))
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["method"]["threshold"] > 0
    resumed = train.train(cfg, out=str(tmp_path / "resumed"), results=str(tmp_path), quiet=True)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (read_csv(tmp_path / r / "metrics.csv") for r in ("straight", "resumed"))
    assert [r["threshold"] for r in ra] == [r["threshold"] for r in rb]
    assert [r["test_acc"] for r in ra] == [r["test_acc"] for r in rb]
    assert straight["final_threshold"] == resumed["final_threshold"]


def test_s_lats_closed_form_is_the_cumulative_sum_of_a_cosine_rate():
    """Paper B's released S-LATS threshold, D·(sin(πn/N)/π + n/N) after step n of N
    (Yanqi-Chen/LATS trainer.py, sinpInc), is the integral of a cosine rate
    (1 + cos(πs/N))/2 normalized to 1 at N. LATS here sums the rates actually used,
    η_s = η·(1 + cos(πs/N))/2 for s = 1..n, normalized by their total (N − 1)/2 rather than the
    integral's N/2: the two differ by the sum-vs-integral error only, O(1/N) (at most
    0.37·D/(N − 1) over n; asserted: D/(N − 1)), and halfway by about D/(π(N − 1)). The
    implied λ_t = (d_t − d_{t−1}) / η_t is constant."""
    steps, epochs, D = 25, 16, 0.3
    N = steps * epochs
    model = tiny_model()
    method = make(model, steps, epochs, final_threshold=D)       # cosine, no warm-up
    d, lrs, lam = [0.0], [], []
    for n in range(1, N + 1):
        lrs.append(method.optimizer.param_groups[0]["lr"])
        method.step()                       # no gradient: only the schedule and the threshold move
        d.append(method.threshold_at(method.t, method.lr_sum))
        closed = D * (math.sin(math.pi * n / N) / math.pi + n / N)
        assert abs(d[-1] - closed) <= D / (N - 1) + 1e-12
        if lrs[-1] > 0:
            lam.append((d[-1] - d[-2]) / lrs[-1])
    assert d[-1] == pytest.approx(D, rel=1e-12) and D * (math.sin(math.pi) / math.pi + 1) == pytest.approx(D)
    # the cumulative cosine rate: Σ_{s<=N} (1 + cos(πs/N))/2 = (N − 1)/2 exactly
    assert sum(lrs) / method.hp["lr"] == pytest.approx((N - 1) / 2, rel=1e-12)
    # (differences of float64 sums over the tiny last rates: equal to ~1e-9, not to the last bit)
    assert max(lam) == pytest.approx(min(lam), rel=1e-7) and min(lam) == pytest.approx(D / sum(lrs), rel=1e-7)
    # the error really is of that order, not zero: halfway the sum is ahead by ~D/(π(N − 1))
    mid = D * (1 / math.pi + 0.5)
    assert d[N // 2] - mid == pytest.approx(D / (math.pi * (N - 1)), rel=0.01)
