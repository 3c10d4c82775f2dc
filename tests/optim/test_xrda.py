"""XRDA (docs/methods.md §1) against hand-computed values, SGD, the lasso and its claims."""
import copy
import functools
import io
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecs import config as C
from sparsecs.optim import xrda as xrda_module
from sparsecs.optim import XRDA, get_method
from sparsecs.optim.schedules import Schedule



pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

# ---------------------------------------------------------------- the formulas, by hand
def reference_trace(ws, grads, hs, avgs, lams, M, Tm, Tb, wd, mode):
    """Section 1 in NumPy, one entry list per tensor; r and Λ kept at full size."""
    st = [dict(w=w.copy(), z=w.copy(), v=np.zeros_like(w), r=np.zeros_like(w),
               L=np.zeros_like(w)) for w in ws]
    trace = []
    for gs, h, a, lam in zip(grads, hs, avgs, lams):
        for s, g0 in zip(st, gs):
            w = s["w"]
            g = g0 + wd * w
            penalized = w.ndim in (2, 4)
            if penalized:
                if w.ndim == 4 and mode == "kernel":
                    m = np.broadcast_to(np.abs(w).mean(axis=(2, 3), keepdims=True), w.shape)
                    f = math.sqrt(w.shape[2] * w.shape[3])
                elif w.ndim == 4 and mode == "channel":
                    m = np.broadcast_to(np.abs(w).mean(axis=(1, 2, 3), keepdims=True), w.shape)
                    f = math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
                else:
                    m, f = np.abs(w), 1.0
                bb = math.exp(-h / Tb)
                s["r"] = bb * s["r"] + (1 - bb) * m
                mx = s["r"].max()
                c = f * M / (1 + (M - 1) * s["r"] / mx) if mx > 0 else np.zeros_like(w)
                s["L"] = a * s["L"] + h * c
            s["z"] = a * s["z"] + (1 - a) * w
            bm = math.exp(-h / Tm)
            s["v"] = bm * s["v"] + (1 - bm) * g
            s["z"] = s["z"] - h * s["v"]
            if penalized:
                s["w"] = np.sign(s["z"]) * np.maximum(np.abs(s["z"]) - lam * s["L"], 0)
            else:
                s["w"] = s["z"].copy()
        trace.append(copy.deepcopy(st))
    return trace


@pytest.fixture(params=["foreach", "scratch"])
def path(request, monkeypatch):
    """Both ways XRDA computes a step on the CPU: foreach calls (small tensors, and every
    tensor on a GPU) and per-tensor writes into scratch (large CPU tensors)."""
    if request.param == "scratch":
        monkeypatch.setattr(xrda_module, "SCRATCH_MIN_NUMEL", 0)
    return request.param


@pytest.mark.parametrize("mode", ["elementwise", "kernel", "channel"])
def test_three_step_trace_matches_hand_computation(mode, path):
    rng = np.random.default_rng(3)
    # a linear weight (elementwise in every mode), a conv weight, an unpenalized 1-D tensor
    ws = [rng.normal(0, 0.3, (3, 4)), rng.normal(0, 0.3, (2, 2, 2, 2)), rng.normal(0, 0.3, 3)]
    ws[1][1, 0] *= 0.05  # one small kernel, so that reweighting has something to find
    grads = [[rng.normal(0, 0.1, w.shape) for w in ws] for _ in range(3)]
    hs, avgs, lams = [0.5, 0.3, 0.8], [0.0, 0.4, 0.9], [0.02, 0.05, 0.04]
    M, Tm, Tb, wd = 5.0, 2.0, 3.0, 0.1
    ref = reference_trace(ws, grads, hs, avgs, lams, M, Tm, Tb, wd, mode)

    params = [nn.Parameter(torch.tensor(w)) for w in ws]
    opt = XRDA(params, lr=hs[0], avg=avgs[0], lam=lams[0], max_factor=M, momentum_ts=Tm,
               magnitude_ts=Tb, weight_decay=wd, mode=mode)
    for t in range(3):
        for g in opt.param_groups:
            g["lr"], g["avg"], g["lam"] = hs[t], avgs[t], lams[t]
        for p, gr in zip(params, grads[t]):
            p.grad = torch.tensor(gr)
        opt.step()
        for p, s in zip(params, ref[t]):
            st = opt.state[p]
            np.testing.assert_allclose(p.detach().numpy(), s["w"], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(st["z"].numpy(), s["z"], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(st["v"].numpy(), s["v"], rtol=1e-12, atol=1e-14)
            if p.dim() == 1:
                assert set(st) == {"z", "v"}
            else:
                np.testing.assert_allclose(st["r"].expand(p.shape).numpy(), s["r"], rtol=1e-12)
                np.testing.assert_allclose(st["Lambda"].expand(p.shape).numpy(), s["L"], rtol=1e-12)
    # the trace exercised the prox: some exact zeros, not all
    pen = torch.cat([params[0].detach().flatten(), params[1].detach().flatten()])
    assert 0 < int((pen == 0).sum()) < pen.numel()
    assert (params[2] != 0).all()
    if mode != "elementwise":  # r, Λ stored once per kernel / filter
        shape = (2, 2, 1, 1) if mode == "kernel" else (2, 1, 1, 1)
        assert opt.state[params[1]]["r"].shape == shape


def test_zero_tensor_gets_no_penalty_until_it_has_magnitude():
    w = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    opt = XRDA([w], lr=0.5, lam=1.0, weight_decay=0.0)
    w.grad = torch.full_like(w, 0.2)
    opt.step()  # max r = 0 at the first step: c = 0, so no threshold yet
    assert torch.equal(opt.state[w]["Lambda"], torch.zeros_like(w))
    assert torch.allclose(w, opt.state[w]["z"]) and (w != 0).all()


# ---------------------------------------------------------------- λ = 0: momentum SGD
def small_net(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).to(dtype)


def batch(dtype=torch.float32, n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g).to(dtype), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_lam_zero_is_momentum_sgd(dtype, tol):
    h, Tm, wd = 0.7, 9.5, 5e-4
    beta = math.exp(-h / Tm)
    a, b = small_net(dtype), small_net(dtype)
    opt_a = XRDA(a.parameters(), lr=h, avg=0.0, lam=0.0, momentum_ts=Tm, weight_decay=wd)
    opt_b = torch.optim.SGD(b.parameters(), lr=h * (1 - beta), momentum=beta, weight_decay=wd)
    x, y = batch(dtype)
    for step in range(20):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            F.cross_entropy(m(x[step % 4 * 8:][:8]), y[step % 4 * 8:][:8]).backward()
            o.step()
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=tol, atol=tol)


# ---------------------------------------------------------------- convex sanity: the lasso
@functools.lru_cache(maxsize=None)
def lasso_problem():
    rng = np.random.default_rng(0)
    n, d, k = 100, 200, 10
    X = rng.standard_normal((n, d))
    w_true = np.zeros(d)
    idx = rng.choice(d, k, replace=False)
    w_true[idx] = rng.choice([-1.0, 1.0], k) * rng.uniform(1, 2, k)
    y = X @ w_true + 0.1 * rng.standard_normal(n)
    alpha = 0.1
    from sklearn.linear_model import Lasso

    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X, y).coef_
    return X, y, alpha, ref


@pytest.mark.parametrize("schedule,avg", [("cosine", None), ("constant", 0.0), ("constant", 1.0)])
def test_lasso_reaches_sklearn_solution(schedule, avg):
    """F(w) = ||Xw − y||² / (2n) + α||w||₁, full-batch gradients, M = 1, wd = 0.

    The penalty λ equals sklearn's α for every a. With M = 1, c = 1 and the lasso solution
    w* is a fixed point of the step for any h > 0 and any a: on the support z = w* + λΛ·sign(w*)
    is carried to a·z + (1 − a)·w* − h·∇f(w*) = w* + λ(aΛ + h)·sign(w*) (as ∇f = −λ·sign there),
    and off it |z| ≤ λΛ stays ≤ a·λΛ + h·|∇f| ≤ λ(aΛ + h). So a = 0 (proximal SGD, threshold
    λ·h), a = 1 (RDA, threshold λ·Σh on the dual sum z = w0 − Σh·v) and the cosine mix all
    solve the same lasso; only their speed differs.
    """
    X, y, alpha, ref = lasso_problem()
    n, d = X.shape

    def objective(w):
        return 0.5 / n * np.sum((X @ w - y) ** 2) + alpha * np.abs(w).sum()

    steps = 400
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = nn.Parameter(torch.zeros(1, d, dtype=torch.float64))  # a "linear" weight: penalized
    opt = XRDA([w], lr=0.2, lam=alpha, max_factor=1.0, momentum_ts=1.0, magnitude_ts=1.0,
               weight_decay=0.0)
    sched = Schedule(opt, schedule, steps, 1, avg=0.0 if avg is None else avg)
    for _ in range(steps):
        w.grad = (Xt.T @ (Xt @ w[0] - yt) / n)[None]
        opt.step()
        sched.step()
    got = w.detach()[0].numpy()
    assert ((ref != 0).sum() >= 5) and np.array_equal(got != 0, ref != 0)
    assert abs(objective(got) - objective(ref)) <= 1e-5 * objective(ref)
    if avg == 1.0:  # RDA: Λ = Σh, less the first step (w = 0 there, so max r = 0 and c = 0)
        assert float(opt.state[w]["Lambda"][0, 0]) == pytest.approx(0.2 * (steps - 1))


# ---------------------------------------------------------------- what reweighting claims
def train(model, opt, steps, x, y):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def zeros(model, penalized=True):
    return sum(int((p == 0).sum()) for p in model.parameters() if (p.dim() in (2, 4)) == penalized)


def test_reweighting_gives_more_zeros_and_leaves_unpenalized_tensors_alone():
    x, y = batch()
    counts = {}
    for M in (1.0, 500.0):
        m = small_net()
        train(m, XRDA(m.parameters(), lr=0.5, lam=1e-3, max_factor=M), 30, x, y)
        counts[M] = zeros(m)
        assert zeros(m, penalized=False) == 0  # BatchNorm and bias: weight decay, no prox
    assert counts[500.0] > counts[1.0] > 0
    assert counts[500.0] > 5 * counts[1.0]


def structured_case():
    """A conv weight [4, 3, 3, 3]: filters 1–3 with entries of size 0.2–0.4, filter 0 almost
    empty (1e-3) but for one entry of 0.3 in kernel (0, 0), whose other entries are 1e-3."""
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (4, 3, 3, 3), generator=g).double() * 2 - 1
    w = sign * (0.2 + 0.2 * torch.rand(4, 3, 3, 3, generator=g, dtype=torch.float64))
    w[0] = sign[0] * 1e-3
    w[0, 0, 1, 1] = 0.3
    return w


@pytest.mark.parametrize("mode", ["channel", "kernel"])
def test_structured_modes_zero_whole_filters_and_kernels(mode, path):
    """Trained towards its own initial values (loss ||w − w0||² / 2, so the data force no
    zero): the entries of a filter (kernel) share one magnitude, so the lone 0.3 in a
    near-empty filter (kernel) gets that group's large weight and vanishes with it, while
    elementwise mode keeps it. Zeros come only as whole groups; healthy filters keep all."""
    w0 = structured_case()
    result = {}
    for m in (mode, "elementwise"):
        w = nn.Parameter(w0.clone())
        opt = XRDA([w], lr=0.5, lam=5e-3, weight_decay=0.0, mode=m)
        for _ in range(30):
            w.grad = w.detach() - w0
            opt.step()
        result[m] = w.detach()
    zero = result[mode] == 0
    groups = zero.flatten(1) if mode == "channel" else zero.flatten(2)  # per filter / kernel
    assert (groups.all(-1) | ~groups.any(-1)).all()  # each group all zero or without zeros
    assert groups[0].all()  # the group holding the lone 0.3
    assert not zero[1:].any()  # healthy filters
    assert result["elementwise"][0, 0, 1, 1] != 0  # elementwise keeps the lone entry
    assert (result["elementwise"][0] == 0).sum() == 26  # and zeros its 26 tiny neighbours


# ---------------------------------------------------------------- checkpoints
def run_method(name, hp, steps, resume_at=None):
    x, y = batch()
    model = small_net()
    method = get_method(name)(model, hp, steps_per_epoch=5, epochs=2)
    for t in range(steps):
        if t == resume_at:
            buf = io.BytesIO()
            torch.save({"model": model.state_dict(), "method": method.state_dict()}, buf)
            buf.seek(0)
            ckpt = torch.load(buf, weights_only=False)
            model = small_net(seed=123)  # fresh weights, overwritten by the checkpoint
            model.load_state_dict(ckpt["model"])
            method = get_method(name)(model, hp, steps_per_epoch=5, epochs=2)
            method.load_state_dict(ckpt["method"])
        method.zero_grad()
        F.cross_entropy(model(x[t % 4 * 8:][:8]), y[t % 4 * 8:][:8]).backward()
        method.step()
    return model, method


@pytest.mark.parametrize("mode", ["elementwise", "channel"])
def test_state_dict_round_trip_is_bit_identical(mode, path):
    hp = {"lam": 1e-3, "mode": mode, "schedule": "cosine"}
    a, ma = run_method("xrda", hp, 10)
    b, mb = run_method("xrda", hp, 10, resume_at=5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(a.parameters(), b.parameters()):
        sa, sb = ma.optimizer.state[p], mb.optimizer.state[q]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma.optimizer.param_groups[0]["lr"] == mb.optimizer.param_groups[0]["lr"]
    assert ma.optimizer.param_groups[0]["avg"] == mb.optimizer.param_groups[0]["avg"]


def test_state_is_at_most_four_tensors_per_parameter():
    m = small_net()
    opt = XRDA(m.parameters(), lr=1.0, lam=1e-3, mode="kernel")
    train(m, opt, 1, *batch())
    for p in m.parameters():
        st = opt.state[p]
        assert set(st) == ({"z", "v", "r", "Lambda"} if p.dim() in (2, 4) else {"z", "v"})
        assert sum(t.numel() for t in st.values()) <= 4 * p.numel()


# ---------------------------------------------------------------- the registry methods
@pytest.mark.parametrize("name", ["xrda", "rda_l1", "prox_sgd", "sgd_l1"])
def test_methods_build_from_defaults_and_step(name):
    cls = get_method(name)
    hp = dict(cls.defaults)
    cls.validate(hp)
    model = small_net()
    method = cls(model, hp, steps_per_epoch=3, epochs=2)
    before = [p.detach().clone() for p in model.parameters()]
    train(model, method, 2, *batch())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert method.lr > 0 and method.end_epoch(0) == {}
    s = method.summary()
    assert s["lam"] == hp["lam"] and s["max_factor"] == (1.0 if name in ("rda_l1", "sgd_l1") else 500.0)
    if name != "sgd_l1":
        assert method.mode == "elementwise"
        assert cls(small_net(), {**hp, "mode": "channel"}, 3, 2).mode == "channel"
        assert method.lr == method.optimizer.param_groups[0]["lr"]  # reports h
    if name == "prox_sgd":  # a ≡ 0 under the cosine schedule, h still follows it
        assert method.optimizer.param_groups[0]["avg"] == 0.0
        assert method.lr < hp["lr"]
    if name == "xrda":
        assert 0 < method.optimizer.param_groups[0]["avg"] < 1


@pytest.mark.parametrize("name,key,value", [
    ("xrda", "lam", -1e-6), ("xrda", "max_factor", 0.5), ("xrda", "lr", 0.0),
    ("xrda", "momentum_ts", 0.0), ("xrda", "avg", 1.5), ("xrda", "mode", "filter"),
    ("xrda", "gamma", 0.0), ("xrda", "milestones", [100, 60]), ("rda_l1", "lr", -1.0),
    ("prox_sgd", "weight_decay", -1.0), ("sgd_l1", "lam", -1.0), ("sgd_l1", "momentum", 1.0),
])
def test_validate_rejects_bad_values(name, key, value):
    """Through config (schema.py): the one place a key's value is checked."""
    with pytest.raises(C.ConfigError) as e:
        C.build(None, [f"method={name}", f"optim.{key}={value}"])
    assert f"'optim.{key}'" in str(e.value) and "\n" not in str(e.value)


def test_sgd_l1_leaves_almost_no_exact_zeros_where_xrda_leaves_many():
    """Same penalty λ, same effective step (lr / (1 − momentum) = h = 0.5, momentum 0.9):
    the subgradient makes weights oscillate around zero instead of landing on it."""
    x, y = batch()
    lam, h, beta = 2e-3, 0.5, 0.9
    hp = {"lr": h, "lam": lam, "momentum_ts": -h / math.log(beta), "magnitude_ts": 9.5,
          "schedule": "constant"}
    found = {}
    for name, extra in (("sgd_l1", {"lr": h * (1 - beta), "momentum": beta, "lam": lam,
                                    "schedule": "constant"}),
                        ("prox_sgd", {**hp, "max_factor": 1.0}), ("xrda", hp)):
        model = small_net()
        train(model, get_method(name)(model, {**get_method(name).defaults, **extra}, 40, 1), 40, x, y)
        found[name] = zeros(model)
    n = sum(p.numel() for p in small_net().parameters() if p.dim() in (2, 4))
    assert found["sgd_l1"] <= 0.01 * n
    assert found["prox_sgd"] > 10 * max(found["sgd_l1"], 1)
    assert found["xrda"] >= 0.3 * n


@pytest.mark.skipif(not os.environ.get("XRDA_SLOW_TESTS"), reason="compiles; set XRDA_SLOW_TESTS=1")
def test_fused_matches_eager():
    x, y = batch()
    for mode in ("elementwise", "channel"):
        a, b = small_net(), small_net()
        oa = XRDA(a.parameters(), lr=0.5, avg=0.3, lam=1e-3, mode=mode)
        ob = XRDA(b.parameters(), lr=0.5, avg=0.3, lam=1e-3, mode=mode, fused=True)
        for _ in range(5):
            train(a, oa, 1, x, y)
            train(b, ob, 1, x, y)
            for o in (oa, ob):
                o.param_groups[0]["lr"] *= 0.9
                o.param_groups[0]["avg"] = min(1.0, o.param_groups[0]["avg"] + 0.2)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
