"""optim.schedules.Schedule against hand-computed values (docs/methods.md §1.4)."""
import glob
import math
import os

import pytest
import torch

from sparsecs.optim import XRDA
from sparsecs.optim.schedules import Schedule
from tests import REPO


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def opt(lr=2.0):
    return XRDA([torch.nn.Parameter(torch.zeros(2, 2))], lr=lr)


def values(sched, steps):
    """(h, a) at steps t = 1..steps, as the optimizer would see them."""
    out = []
    for _ in range(steps):
        g = sched.optimizer.param_groups[0]
        out.append((g["lr"], g["avg"]))
        sched.step()
    return out


def test_cosine_at_start_middle_end():
    N = 10
    v = values(Schedule(opt(2.0), "cosine", N, 5, avg=0.0), N)
    # t = 1: h = h0 (1 + cos(pi/N)) / 2, a = (1 - cos(pi/N)) / 2
    assert v[0][0] == pytest.approx(2.0 * (1 + math.cos(math.pi / 10)) / 2)
    assert v[0][1] == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    assert v[0] == pytest.approx((1.9510565162951536, 0.024471741852423234))
    assert v[4] == pytest.approx((1.0, 0.5))  # t = N/2
    assert v[9] == pytest.approx((0.0, 1.0), abs=1e-15)  # t = N
    assert all(x[0] + 2.0 * x[1] == pytest.approx(2.0) for x in v)  # h/h0 + a = 1 throughout


def test_step_halves_h_and_one_minus_a_from_each_milestone_epoch():
    # 3 steps per epoch, milestones at epochs 2 and 4: steps 1-6 | 7-12 | 13-...
    v = values(Schedule(opt(1.0), "step", 30, 3, milestones=[2, 4], gamma=0.5, avg=0.0), 15)
    assert v[:6] == [(1.0, 0.0)] * 6
    assert v[6:12] == [(0.5, 0.5)] * 6
    assert v[12:15] == [(0.25, 0.75)] * 3


def test_constant_and_schedule_without_avg():
    assert values(Schedule(opt(0.3), "constant", 5, 1, avg=0.7), 3) == [(0.3, 0.7)] * 3
    o = opt(1.0)
    o.param_groups[0]["avg"] = 0.0
    v = values(Schedule(o, "cosine", 4, 1), 4)  # avg=None: a is left alone (prox_sgd)
    assert [a for _, a in v] == [0.0] * 4 and v[1][0] == pytest.approx(0.5)


def test_warmup_rises_linearly_then_the_cosine_runs_over_the_rest():
    # N = 10 steps, W = 4 (warmup_epochs 2 x 2 steps per epoch): h_t = h0 t/W for t < W,
    # then h0 (1 + cos(pi (t - W)/(N - W)))/2; a stays 0 in the warm-up, then follows the cosine
    s = Schedule(opt(2.0), "cosine", 10, 2, avg=0.0, warmup_steps=4)
    v = values(s, 10)
    assert [h for h, _ in v[:4]] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert [a for _, a in v[:4]] == pytest.approx([0.0, 0.0, 0.0, 0.0])
    assert v[6] == pytest.approx((1.0, 0.5))           # t = 7: (t - W)/(N - W) = 1/2
    assert v[9] == pytest.approx((0.0, 1.0))           # t = N
    # under step and constant the warm-up multiplies h only
    st = values(Schedule(opt(2.0), "step", 8, 2, milestones=[2], gamma=0.5, avg=0.0, warmup_steps=2), 8)
    assert [h for h, _ in st] == pytest.approx([1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    const = values(Schedule(opt(2.0), "constant", 6, 3, avg=0.25, warmup_steps=3), 6)
    assert [h for h, _ in const] == pytest.approx([2 / 3, 4 / 3, 2.0, 2.0, 2.0, 2.0])
    assert {a for _, a in const} == {0.25}
    with pytest.raises(ValueError, match="warm-up"):
        Schedule(opt(), "cosine", 10, 2, warmup_steps=10)


def test_no_warmup_is_the_schedule_without_it():
    a = values(Schedule(opt(1.0), "cosine", 12, 3, avg=0.0), 12)
    b = values(Schedule(opt(1.0), "cosine", 12, 3, avg=0.0, warmup_steps=0), 12)
    assert a == b


def test_state_dict_round_trip():
    a = Schedule(opt(1.0), "step", 30, 3, milestones=[2, 4], gamma=0.5, avg=0.0)
    values(a, 7)
    b = Schedule(opt(1.0), "step", 30, 3, milestones=[2, 4], gamma=0.5, avg=0.0)
    b.load_state_dict(a.state_dict())
    assert values(a, 10) == values(b, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule(opt(), "linear", 10, 1)
    with pytest.raises(ValueError, match="gamma"):
        Schedule(opt(), "step", 10, 1, gamma=0.0)


# The released rows of the table in docs/methods.md §1.6 (the folder also holds baselines
# run `at:` them).
PAPER = sorted(glob.glob(os.path.join(REPO, "configs", "paper", "c*-xrda*.yaml")))


def test_paper_configs_resolve_with_the_released_schedule():
    from sparsecs import config as C

    assert len(PAPER) == 11
    steps = 0
    for path in PAPER:
        cfg = C.build(path)
        o = cfg["optim"]
        assert cfg["method"] == "xrda" and o["max_factor"] == 500 and o["weight_decay"] == 5e-4
        assert cfg["batch_size"] == 128
        if o["schedule"] == "step":
            steps += 1
            # halve after epochs 60, 100, ..., 420 (0-indexed): from epoch 61, 101, ..., 421 on
            assert o["milestones"] == list(range(61, 422, 40)) and o["gamma"] == 0.5
            assert o["avg"] == 0.0
    assert steps == 2


def test_imagenet_configs_are_paper_bs_recipe_for_every_method(tmp_path):
    from sparsecs import config as C
    from sparsecs import data
    from sparsecs import models
    import sweep
    from sparsecs.optim import get_method

    files = sorted(glob.glob(os.path.join(REPO, "configs", "imagenet", "*.yaml")))
    runnable = [f for f in files if os.path.basename(f) not in ("base.yaml", "slats.yaml")]
    assert len(runnable) == 6   # sgd, gmp, xrda, STR, LATS on ResNet-50, S-LATS on MobileNet
    for f in runnable:
        cfg = C.build(f)
        assert (cfg["dataset"], cfg["epochs"], cfg["batch_size"]) == ("imagenet", 100, 256)
        assert (cfg["warmup_epochs"], cfg["label_smoothing"]) == (5, 0.1)
        # 2^-15 exactly, as STR's and LATS's configs; fp32 as their commands (bf16 an option)
        assert cfg["optim"]["weight_decay"] == 2 ** -15 and cfg["optim"]["schedule"] == "cosine"
        assert cfg["precision"] == "fp32"
        if cfg["method"] in ("sgd", "gmp", "soft_threshold"):
            assert (cfg["optim"]["lr"], cfg["optim"]["momentum"]) == (0.256, 0.875)
        if cfg["method"] == "soft_threshold":   # the rows: the models as STR / LATS build them
            assert cfg["model"] in ("resnet50_str", "mobilenet_v1_str")
        if cfg["method"] == "gmp":              # STR's GMP: epochs 20-79 (docs/methods.md §3), per layer
            assert (cfg["optim"]["prune_start"], cfg["optim"]["prune_end"], cfg["optim"]["scope"]) == (19, 79, "layer")
        # the warm-up reaches the method's schedule: lr at step 1 is lr/W of a 5-epoch warm-up
        method = get_method(cfg["method"])
        model = models.get_model("resnet20", width=0.125,   # the schedule does not care
                                 input_shape=data.get(cfg["dataset"]).input_shape)
        hp = {**cfg["optim"], "warmup_epochs": cfg["warmup_epochs"]}
        m = method(model, hp, 10, cfg["epochs"])
        assert m.lr == pytest.approx(cfg["optim"]["lr"] / 50)
    specs = sweep.expand(sweep.find_profile("imagenet"))
    assert {s.entry for s in specs} == {"soft_threshold", "sgd", "xrda", "gmp", "str",
                                        "soft_threshold_linear", "soft_threshold_sine"}   # paper B's B1 entries
    # every run of the profile at the rows' models and precision: equal footing
    from sparsecs.sweeping import plan

    ready, _ = plan.known(specs, str(tmp_path))          # those nameable before anything ran
    known = [s.cfg for s in ready]
    assert known and {c["model"] for c in known} == {"resnet50_str", "mobilenet_v1_str"}
    assert {c["precision"] for c in known} == {"fp32"} and {c["seed"] for c in known} == {0}


def test_label_smoothing_is_the_training_loss(tmp_path):
    """A run with label_smoothing 0.1 trains on torch's smoothed cross-entropy: its first
    epoch's training loss is that of the initial model under it (lr ~ 0 in a 1-step run)."""
    import torch.nn.functional as F

    from sparsecs import config as C
    from sparsecs import data
    import train

    cfg = C.build(None, ["model=resnet20", "width=0.125", "epochs=1", "batch_size=64",
                         "train_subset=64", "device=cpu", "label_smoothing=0.1", "augment=false"])
    s = train.train(cfg, out=str(tmp_path / "run"), quiet=True)
    torch.manual_seed(0)
    model = train.build_model(cfg, 10, torch.device("cpu"))
    d = data.load("digits")
    d.subset(64)
    (x, y), = list(d.train_batches(64, 0, 0, augment=False))
    model.train()
    smoothed = F.cross_entropy(model(x), y, label_smoothing=0.1).item()
    assert s["train_loss"] == pytest.approx(smoothed, rel=1e-5)
    assert abs(F.cross_entropy(model(x), y).item() - smoothed) > 1e-3   # it is not the plain loss
