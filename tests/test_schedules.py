"""optim.schedules.Schedule against hand-computed values (docs/methods.md §1.4)."""
import glob
import math
import os

import pytest
import torch

from optim import XRDA
from optim.schedules import Schedule


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
PAPER = sorted(glob.glob(os.path.join(ROOT, "configs", "paper", "c*-xrda*.yaml")))


def test_paper_configs_resolve_with_the_released_schedule():
    import config as C

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
