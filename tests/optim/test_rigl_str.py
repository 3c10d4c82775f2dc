"""RigL and STR, the sparse-from-scratch baselines of issue 22 (docs/methods.md §8, §9):
hand-computed drop/grow, ERK densities and update fractions; STR's forward and threshold
gradient; both trained through train.py, resumed bit-identically, exported and evaluated."""
import copy
import csv
import json
import math

import pytest
import torch
from torch import nn

from sparsecs import config as C
from sparsecs import data
import eval as E
import train
from sparsecs.optim import get_method
from sparsecs.optim.rigl import RigL, erk_densities, update_fraction
from sparsecs.optim.str_method import STR, str_weight
from tests.optim.nets import layers, one_step, tiny_model


def make(cls, model, steps=4, epochs=2, **hp):
    if isinstance(model[0], nn.Linear):   # what the method's one probing forward pass feeds
        model.input_shape = (model[0].in_features,)
    elif not hasattr(model, "input_shape"):   # a hand-built conv net: a registry entry's images
        model.input_shape = data.get("digits").input_shape
    hp = {**cls.defaults, **hp}
    cls.validate(hp)
    return get_method(cls.name)(model, hp, steps, epochs)


# ---- RigL: densities and update fraction ---------------------------------------------------

def hand_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Conv2d(4, 8, 3, bias=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2, bias=False))


def test_erk_densities_equal_the_formula_with_the_cap_and_redistribution():
    # n = 108, 288, 16 (412 weights); raw (n_in + n_out + kh + kw) / n = 13/108, 18/288, 10/16
    shapes = [(4, 3, 3, 3), (8, 4, 3, 3), (2, 8)]
    # density 0.1: budget 41.2 = ε·(13 + 18 + 10), nothing capped
    eps = 41.2 / 41
    assert erk_densities(shapes, 0.1) == pytest.approx([eps * 13 / 108, eps * 18 / 288, eps * 10 / 16])
    # density 0.5: ε = 206/41 would give the linear 3.14 > 1; it is made dense and the other
    # two share the budget left, 206 − 16 = 190 = ε'·(13 + 18)
    d = erk_densities(shapes, 0.5)
    assert d == pytest.approx([190 / 31 * 13 / 108, 190 / 31 * 18 / 288, 1.0])
    assert sum(x * n for x, n in zip(d, (108, 288, 16))) == pytest.approx(206)
    # and the method keeps round(d·n) weights per layer, at random, masked weights zero
    torch.manual_seed(0)
    model = hand_net()
    m = make(RigL, model, target=0.5)
    assert m.densities == pytest.approx(d)
    counts = [round(x * n) for x, n in zip(d, (108, 288, 16))]
    assert m.active_counts() == counts == [80, 110, 16]
    assert [int(k.sum()) for k in m.masks] == counts
    assert [int(w.count_nonzero()) for w in m.weights] == counts
    # uniform: every layer at 1 − target
    m = make(RigL, hand_net(), target=0.75, distribution="uniform")
    assert m.densities == [0.25] * 3 and m.active_counts() == [27, 72, 4]


def test_update_fraction_is_the_cosine_of_the_paper():
    assert update_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert update_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert update_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert update_fraction(750, 0.3, 1000) == pytest.approx(0.15 * (1 - math.cos(math.pi / 4)))
    assert update_fraction(1000, 0.3, 1000) == 0.0 and update_fraction(1200, 0.3, 1000) == 0.0


def update_batches(m, n):
    """(batch index, g) of the mask updates in n batches (no gradients: nothing moves)."""
    out = []
    for i in range(n):
        if m.update_due():
            out.append((i, m.sgd_steps()))
        m.step()
    return out


def test_updates_happen_every_delta_t_sgd_steps_from_0_to_end_fraction():
    # 10 batches an epoch, 4 epochs: N = 40, T_end = round(0.75·40) = 30. The authors' clock g
    # counts SGD steps and does not move at an update: updates at g = 0, 10, 20, 30 (<= T_end),
    # the batches 0, 11 (after 10 SGD steps), 22, 33
    m = make(RigL, tiny_model(), steps=10, epochs=4, delta_t=10, target=0.5)
    assert m.end_step == 30
    assert update_batches(m, 40) == [(0, 0), (11, 10), (22, 20), (33, 30)]
    assert (m.t, m.updates, m.sgd_steps(), m.last_update) == (40, 4, 36, 30)
    m = make(RigL, tiny_model(), steps=10, epochs=4, delta_t=7, end_fraction=1.0, target=0.5)
    assert update_batches(m, 40) == [(0, 0), (8, 7), (16, 14), (24, 21), (32, 28)]


# ---- RigL: drop and grow -------------------------------------------------------------------

def linear_case():
    """A Linear(4, 2) with 4 of its 8 weights active and known weights and gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    m = make(RigL, model, steps=1, epochs=1, target=0.5, distribution="uniform")
    w = model[0].weight
    with torch.no_grad():
        m.masks[0].copy_(torch.tensor([[1., 1., 1., 1.], [0., 0., 0., 0.]]))
        w.copy_(torch.tensor([[0.5, -0.1, 0.3, 0.05], [0., 0., 0., 0.]]))
    # the two weights to drop (|w| smallest: indices 1 and 3) have the largest gradients
    w.grad = torch.tensor([[0.0, 9.0, 0.0, -9.0], [0.1, -0.4, 0.2, 0.3]])
    return model, m, w


def test_drop_grow_by_hand_keeps_the_count_and_regrows_what_it_dropped_first():
    model, m, w = linear_case()
    # fraction 0.5 of 4 active: k = 2; keep |w| 0.5 and 0.3 (flat 0, 2); grow the two largest
    # |g| among all the others: 9 and 9 (flat 1, 3), the two just dropped: nothing moves
    assert m.update_masks(0.5) == 0
    assert m.masks[0].tolist() == [[1., 1., 1., 1.], [0., 0., 0., 0.]]
    assert torch.equal(w.detach(), torch.tensor([[0.5, -0.1, 0.3, 0.05], [0.0, 0.0, 0.0, 0.0]]))
    # floor: a fraction of 0.3 drops floor(1.2) = 1 (the smallest active |w|: 0.3 at flat 2);
    # grown: the largest |g| of the rest, flat 1 and 3 (|g| 9, tied): the lower index, 1
    w.grad = torch.tensor([[0.0, 9.0, 0.0, -9.0], [0.1, -0.4, 0.2, 0.3]])
    with torch.no_grad():
        w.copy_(torch.tensor([[0.5, 0.0, 0.3, 0.0], [0.0, 0.7, 0.0, -0.6]]))
        m.masks[0].copy_(torch.tensor([[1., 0., 1., 0.], [0., 1., 0., 1.]]))
    assert m.update_masks(0.3) == 1
    assert m.masks[0].reshape(-1).tolist() == [1, 1, 0, 0, 0, 1, 0, 1]
    assert torch.equal(w.detach(), torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.7, 0.0, -0.6]]))


def test_no_cap_when_fewer_weights_are_inactive_than_are_dropped():
    # 9 of 10 active, fraction 0.3: floor(2.7) = 2 dropped (|w| 0.1 and 0.2, flat 1 and 2);
    # 2 grown of the 3 others (flat 1, 2 and the inactive 9) by |g|: 9 (|g| 5) and 1 (|g| 4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 1, bias=False))
    m = make(RigL, model, steps=1, epochs=1, target=0.1, distribution="uniform")
    w = model[0].weight
    with torch.no_grad():
        m.masks[0].copy_(torch.tensor([[1.] * 9 + [0.]]))
        w.copy_(torch.tensor([[0.9, 0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, 0.0]]))
    w.grad = torch.tensor([[0., 4., 3., 0., 0., 0., 0., 0., 0., -5.]])
    assert m.update_masks(0.3) == 1
    assert m.masks[0].tolist() == [[1., 1., 0., 1., 1., 1., 1., 1., 1., 1.]]
    assert torch.equal(w.detach(), torch.tensor([[0.9, 0.1, 0.0, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, 0.0]]))


def test_an_update_step_moves_the_mask_not_the_weights_and_zeroes_momentum():
    w = None
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))

    def batch(m):
        m.zero_grad()
        model(x).square().sum().backward()
        m.step()

    def four_batches(**hp):
        nonlocal w, model
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 2, bias=False))
        w = model[0].weight
        # 4 batches, delta_t 2, end_fraction 1: T_end = 4; updates at g = 0 (batch 0) and g = 2
        # (batch 3, after the SGD steps g = 0, 1)
        m = make(RigL, model, steps=4, epochs=1, target=0.5, distribution="uniform", delta_t=2,
                 end_fraction=1.0, **hp)
        for _ in range(3):
            batch(m)
        assert (m.updates, m.sgd_steps()) == (1, 2)
        buf = m.optimizer.state[w]["momentum_buffer"]
        assert torch.all(w[m.masks[0] == 0] == 0) and torch.all(buf[m.masks[0] == 0] == 0)
        before_w, before_mask, before_buf, lr = w.detach().clone(), m.masks[0].clone(), buf.clone(), m.lr
        batch(m)                               # the mask update instead of a weight update
        assert m.updates == 2 and m.lr == lr   # their global step, and so the lr, did not move
        return m, before_w, before_mask, before_buf, buf

    model = None
    # α = 0.3: f_2 = 0.15·(1 + cos(π/2)) = 0.15 of 4 active: floor(0.6) = 0, nothing moves
    m, before_w, before_mask, before_buf, buf = four_batches()
    assert torch.equal(m.masks[0], before_mask) and torch.equal(w.detach(), before_w)
    assert torch.equal(buf, before_buf)
    # α = 1: f_2 = 0.5: 2 of the 4 dropped and 2 grown; what stays active keeps its weight and
    # momentum (no SGD step), what was dropped is at 0, what is new starts at 0
    m, before_w, before_mask, before_buf, buf = four_batches(alpha=1.0)
    mask = m.masks[0]
    kept, dropped, grown = (before_mask == 1) & (mask == 1), (before_mask == 1) & (mask == 0), \
        (before_mask == 0) & (mask == 1)
    assert int(mask.sum()) == 4 and int(dropped.sum()) == int(grown.sum()) and int(kept.sum()) >= 2
    assert torch.equal(w[kept], before_w[kept]) and torch.all(w[dropped] == 0) and torch.all(w[grown] == 0)
    assert torch.equal(buf[kept], before_buf[kept]) and torch.all(buf[dropped] == 0) and torch.all(buf[grown] == 0)


def test_masked_weights_and_momentum_stay_zero_across_updates():
    model = tiny_model()
    m = make(RigL, model, steps=5, epochs=2, target=0.7, delta_t=2, end_fraction=1.0, alpha=0.5)
    counts = [int(k.sum()) for k in m.masks]
    for i in range(10):
        one_step(model, m, i)
        for w, k in zip(m.weights, m.masks):
            assert torch.all(w[k == 0] == 0)
            buf = m.optimizer.state[w].get("momentum_buffer")
            if buf is not None:
                assert torch.all(buf[k == 0] == 0)
        assert [int(k.sum()) for k in m.masks] == counts
    assert m.updates == 4   # g = 0, 2, 4, 6 (batches 0, 3, 6, 9; T_end = 10)
    assert m.mask_sparsity() == pytest.approx(1 - sum(counts) / sum(w.numel() for w in m.weights))


def test_rigl_state_dict_round_trip():
    model = tiny_model()
    m = make(RigL, model, steps=5, epochs=2, target=0.7, delta_t=2, end_fraction=1.0)
    for i in range(3):
        one_step(model, m, i)
    state = copy.deepcopy(m.state_dict())   # as torch.save would: no buffer shared with m
    assert (state["t"], state["updates"], state["last_update"]) == (3, 1, 0) and all(k.dtype == torch.bool for k in state["masks"])
    model2 = tiny_model()
    torch.manual_seed(123)   # another random initial mask: the loaded one must replace it
    m2 = make(RigL, model2, steps=5, epochs=2, target=0.7, delta_t=2, end_fraction=1.0)
    model2.load_state_dict(model.state_dict())   # in train.py's order: method, model, method state
    m2.load_state_dict(state)
    for i in range(3, 7):
        one_step(model, m, i)
        one_step(model2, m2, i)
    for a, b in zip(m.weights, m2.weights):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(m.masks, m2.masks)) and m2.updates == m.updates


# ---- STR -------------------------------------------------------------------------------------

def explicit(theta, s):
    """The definition: sign(θ)·relu(|θ| − sigmoid(s))."""
    return torch.sign(theta) * torch.relu(theta.abs() - torch.sigmoid(s))


def test_str_forward_is_sign_relu_exactly():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(64, 16, generator=g)
    for s in (-5.0, -1.0, 0.3):
        s = torch.tensor(s)
        assert torch.equal(str_weight(theta, s), explicit(theta, s))


def test_str_threshold_gradient_matches_autograd_of_the_explicit_formula():
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(5, 4, dtype=torch.float64, generator=g)
    c = torch.randn(5, 4, dtype=torch.float64, generator=g)
    for s0 in (-2.0, -0.5, 0.4):
        grads = []
        for f in (str_weight, explicit):
            t = theta.clone().requires_grad_()
            s = torch.tensor(s0, dtype=torch.float64, requires_grad=True)
            (f(t, s) * c).sum().backward()
            grads.append((t.grad, s.grad))
        (gt, gs), (et, es) = grads
        assert torch.allclose(gt, et, rtol=0, atol=1e-15) and torch.allclose(gs, es, rtol=1e-12, atol=0)
        # by hand: ∂/∂s = −σ'(s)·Σ_{|θ| > σ(s)} sign(θ)·c
        d = 1 / (1 + math.exp(-s0))
        keep = theta.abs() > d
        assert gs.item() == pytest.approx(-d * (1 - d) * (theta.sign() * c)[keep].sum().item(), rel=1e-12)
        assert torch.equal(gt, c * keep)   # no straight-through: below the threshold, no gradient


def test_str_layers_own_their_threshold_and_theta_starts_at_w0():
    model = tiny_model()
    w0 = [m.weight.detach().clone() for m in layers(model)]
    m = make(STR, model, s_init=-2.0, s_weight_decay=1e-3)
    for layer, w in zip(layers(model), w0):
        theta = layer.parametrizations.weight.original
        assert torch.equal(theta, w)
        s = layer.parametrizations.weight[0].s
        assert s.shape == () and s.item() == -2.0
        assert torch.equal(layer.weight, explicit(theta, s))
    assert [g["weight_decay"] for g in m.optimizer.param_groups] == [5e-4, 1e-3]
    assert m.optimizer.param_groups[1]["params"] == m.thresholds
    # the thresholds learn: a step moves every s
    one_step(model, m)
    assert all(s.item() != -2.0 for s in m.thresholds)
    out = m.export()
    assert not any("parametrizations" in k for k in out)
    plain = tiny_model()
    plain.load_state_dict(out)
    for a, b in zip(layers(plain), layers(model)):
        assert torch.equal(a.weight, b.weight)


def test_weight_decay_on_s_raises_the_threshold():
    """Without loss gradient (zero loss), only the decay acts on s < 0: it moves up."""
    model = tiny_model()
    m = make(STR, model, s_init=-3.0, s_weight_decay=0.1, momentum=0.0, lr=0.5,
             schedule="constant")
    m.zero_grad()
    (model(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)) * 0).sum().backward()
    m.step()
    assert all(s.item() == pytest.approx(-3.0 + 0.5 * 0.1 * 3.0) for s in m.thresholds)


@pytest.mark.parametrize("method,overrides,message", [
    ("rigl", ["optim.delta_t=0"], "delta_t"),
    ("rigl", ["optim.alpha=0"], "alpha"),
    ("rigl", ["optim.end_fraction=1.5"], "end_fraction"),
    ("rigl", ["optim.distribution=gaussian"], "distribution"),
    ("rigl", ["optim.target=1.0"], "target"),
    ("rigl", ["optim.delta_t=1.5"], "delta_t"),
    ("str", ["optim.s_weight_decay=-1"], "s_weight_decay"),
    ("str", ["optim.s_init=nan"], "s_init"),
    ("str", ["optim.lam=0.1"], "lam"),
])
def test_bad_configs_are_one_line_errors(method, overrides, message):
    with pytest.raises(C.ConfigError) as e:
        C.build(f"configs/quick/{method}.yaml", overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_run_names_of_the_new_methods():
    assert "-rigl-t0.95-" in C.run_name(C.build("configs/quick/rigl.yaml", ["optim.target=0.95"]))
    assert "-str-swd0.002-" in C.run_name(C.build("configs/quick/str.yaml", ["optim.s_weight_decay=2e-3"]))


# ---- end to end ------------------------------------------------------------------------------

def cfg_for(method, *extra):
    return C.build(f"configs/quick/{method}.yaml",
                   ["model=resnet20", "width=0.125", "epochs=2", "device=cpu", "train_subset=256",
                    "channels_last=true", *extra])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_run(tmp_path, cfg):
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    run = tmp_path / "runs" / C.run_name(cfg)
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    summary = json.loads((run / "summary.json").read_text())
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert not any("parametrizations" in k for k in saved)
    result, _ = E.evaluate_file(str(run))
    for k in ("test_acc", "test_loss", "sparsity", "sparsity_all", "nnz", "flops_nonzero"):
        assert result[k] == pytest.approx(summary[k], abs=1e-9), k
    assert s["test_acc"] == summary["test_acc"]
    return summary, rows


# 64 images a batch, 256 images: 4 steps an epoch, 8 in all
RIGL_TINY = ["batch_size=64", "optim.delta_t=3", "optim.end_fraction=1.0"]   # updates at batches 0, 4
# updates at batches 0, 3 (the last of epoch 1: the resumed run must not update again at
# g = 2) and 6
RIGL_EDGE = ["batch_size=64", "optim.delta_t=2", "optim.end_fraction=1.0"]
STR_TINY = ["batch_size=64", "optim.s_init=-2.5", "optim.s_weight_decay=1e-3"]


def test_rigl_two_epochs_end_to_end(tmp_path):
    s, rows = check_run(tmp_path, cfg_for("rigl", *RIGL_TINY, "optim.target=0.8"))
    assert s["method"] == "rigl" and s["mode"] == "elementwise" and s["target_sparsity"] == 0.8
    assert s["method_revision"] == 2
    assert s["mask_updates"] == 2 and [r["mask_updates"] for r in rows] == ["1", "2"]
    # the mask holds the target up to one weight per layer of rounding; weights grown at the
    # last update may still be exactly 0, so the weights are at least as sparse as the mask
    assert s["mask_sparsity"] == pytest.approx(0.8, abs=22 / s["n_weights"])
    assert s["sparsity"] >= s["mask_sparsity"] - 1e-12
    assert [float(r["mask_sparsity"]) for r in rows] == [s["mask_sparsity"]] * 2
    print(f"rigl target 0.8: mask sparsity {s['mask_sparsity']:.6f}, weight sparsity "
          f"{s['sparsity']:.6f}, test acc {s['test_acc']:.2f}")


def test_str_two_epochs_end_to_end(tmp_path):
    s, rows = check_run(tmp_path, cfg_for("str", *STR_TINY))
    assert s["method"] == "str" and s["mode"] == "elementwise" and s["lam"] == 0.0
    assert s["s_init"] == -2.5 and s["s_weight_decay"] == 1e-3
    assert 0 < s["sparsity"] < 1 and s["threshold_min"] <= s["threshold_max"]
    assert float(rows[-1]["threshold_max"]) == pytest.approx(s["threshold_max"])
    print(f"str s_init -2.5: sparsity {s['sparsity']:.6f}, thresholds {s['threshold_min']:.4f}.."
          f"{s['threshold_max']:.4f}, test acc {s['test_acc']:.2f}")


@pytest.mark.parametrize("method,extra", [("rigl", RIGL_TINY), ("rigl", RIGL_EDGE), ("str", STR_TINY)])
def test_resume_is_bit_identical(tmp_path, train_then_crash, method, extra):
    cfg = cfg_for(method, *extra)
    straight = train.train(cfg, out=str(tmp_path / "straight"), results=str(tmp_path), quiet=True)
    train_then_crash(cfg, str(tmp_path / "resumed"), str(tmp_path))
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0
    if method == "rigl":   # 4 batches: RIGL_TINY one update (at g = 0), RIGL_EDGE two (g = 0, 2)
        state = ckpt["method"]
        assert (state["t"], state["updates"], state["last_update"]) == ((4, 1, 0) if extra == RIGL_TINY else (4, 2, 2))
    else:
        assert any(k.endswith(".parametrizations.weight.0.s") for k in ckpt["model"])
    resumed = train.train(cfg, out=str(tmp_path / "resumed"), results=str(tmp_path), quiet=True)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (read_csv(tmp_path / r / "metrics.csv") for r in ("straight", "resumed"))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert drop(ra) == drop(rb)
    for k in ("test_acc", "sparsity", "nnz"):
        assert straight[k] == resumed[k], k
