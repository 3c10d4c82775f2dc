"""The paper's method and its ablations as registry methods (docs/methods.md §1.5).

xrda      xRDA with adaptive (log) reweighting, M = max_factor (500 by default)
rda_l1    the same optimizer with M = 1: RDA-style averaging with plain ℓ1
prox_sgd  the same optimizer with a ≡ 0: proximal SGD with momentum (reweighted unless
          max_factor: 1)
sgd_l1    the naive baseline: torch.optim.SGD with momentum and the ℓ1 subgradient λ·sign(w)
          added to the conv/linear weights' gradients; it almost never produces exact zeros

The xRDA family is parameterized as in the paper: `lr` is the step size h (h = 1 with
momentum_ts = 9.5 is about lr 0.1, momentum 0.9), schedules move h and the averaging weight
a together. sgd_l1 uses plain lr/momentum; its penalty means the same objective
L + λ·‖w‖₁ as prox_sgd with max_factor 1 when lr / (1 − momentum) equals h.
"""

import torch

from .base import Method, is_penalized, split_decay
from .schedules import Schedule, warmup_steps
from .xrda import XRDA


class _RDAFamily(Method):
    """Shared construction of the xRDA-based methods."""
    fixed = {}  # hyperparameters a subclass pins (not config keys)

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp, **self.fixed}
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.mode = hp["mode"]
        has_avg = "avg" not in self.fixed  # prox_sgd pins a = 0: the schedule leaves it alone
        self.optimizer = XRDA(split_decay(model, hp["weight_decay"]), lr=hp["lr"],
                              avg=hp.get("avg", 0.0), lam=hp["lam"], max_factor=hp["max_factor"],
                              momentum_ts=hp["momentum_ts"], magnitude_ts=hp["magnitude_ts"],
                              weight_decay=hp["weight_decay"], mode=hp["mode"],
                              fused=hp.get("fused", False))
        self.schedule = Schedule(self.optimizer, hp["schedule"], steps_per_epoch * epochs,
                                 steps_per_epoch, hp["milestones"], hp["gamma"],
                                 avg=hp.get("avg", 0.0) if has_avg else None,
                                 warmup_steps=warmup_steps(hp, steps_per_epoch))

    def summary(self):
        return {"lam": float(self.hp["lam"]), "max_factor": float(self.hp["max_factor"])}

    @classmethod
    def budget_factor(cls, key, old, new):
        """1: the threshold λ·Λ does not grow with the steps taken (Λ ← a·Λ + h·c is an average
        of c under the cosine schedule, a = 1 − h, and h·c itself for prox_sgd), so a surviving
        weight's stationary point is that of L + λ·c·|w| at any budget (docs/methods.md §7)."""
        return 1.0, "λ weighs the ℓ1 term of a fixed objective (Λ averages c, it does not sum)"


_COMMON = {"lr": 1.0, "momentum_ts": 9.5, "magnitude_ts": 9.5, "weight_decay": 5e-4,
           "lam": 1e-6, "mode": "elementwise", "schedule": "cosine", "milestones": [],
           "gamma": 0.5, "fused": False}


class XRDAMethod(_RDAFamily):
    """The paper's method. `avg` is a for schedule: constant and the starting a of schedule:
    step (the paper starts at 0); the cosine schedule sets a itself."""
    name = "xrda"
    label, role, color, marker = "xRDA", "reference", "#D55E00", "o"
    defaults = {**_COMMON, "max_factor": 500.0, "avg": 0.0}


class RDAL1(_RDAFamily):
    """Ablation: no reweighting (M = 1), i.e. generalized RDA with plain ℓ1."""
    name = "rda_l1"
    label, role, color, marker = "RDA ℓ1 (M=1)", "ablation", "#56B4E9", "P"
    defaults = {**_COMMON, "avg": 0.0}
    fixed = {"max_factor": 1.0}


class ProxSGD(_RDAFamily):
    """Ablation: a ≡ 0 (proximal SGD with momentum); h follows the schedule.
    Reweighted by default; max_factor: 1 gives plain proximal SGD with ℓ1."""
    name = "prox_sgd"
    label, role, color, marker = "prox. SGD (a=0)", "ablation", "#7F7F7F", "X"
    defaults = {**_COMMON, "max_factor": 500.0}
    fixed = {"avg": 0.0}


class SGDL1(Method):
    """Baseline: momentum SGD on L + λ·‖w‖₁ through the subgradient λ·sign(w) on conv and
    linear weights (sign(0) = 0). Weight decay on every tensor as in the other methods."""
    name = "sgd_l1"
    label, role, color, marker = "SGD + ℓ1 subgrad.", "ablation", "#B59B00", "*"
    mode = "elementwise"
    defaults = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lam": 1e-6,
                "schedule": "cosine", "milestones": [], "gamma": 0.5}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp}
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.penalized = [p for p in model.parameters() if p.requires_grad and is_penalized(p)]
        self.optimizer = torch.optim.SGD(split_decay(model, hp["weight_decay"]), lr=hp["lr"],
                                         momentum=hp["momentum"], foreach=True)
        self.schedule = Schedule(self.optimizer, hp["schedule"], steps_per_epoch * epochs,
                                 steps_per_epoch, hp["milestones"], hp["gamma"],
                                 warmup_steps=warmup_steps(hp, steps_per_epoch))

    @torch.no_grad()
    def step(self):
        lam = float(self.hp["lam"])
        ps = [p for p in self.penalized if p.grad is not None]
        if lam and ps:
            torch._foreach_add_([p.grad for p in ps], torch._foreach_sign(ps), alpha=lam)
        super().step()

    def summary(self):
        return {"lam": float(self.hp["lam"]), "max_factor": 1.0}

    @classmethod
    def budget_factor(cls, key, old, new):
        return 1.0, "λ·sign(w) is the subgradient of a fixed objective L + λ‖w‖₁"
