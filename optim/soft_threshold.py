"""Soft-threshold reparameterization with one shared threshold (docs/methods.md §2, paper B).

Every conv and linear weight is stored as θ (`<layer>.parametrizations.weight.original`) and
used as w = S(θ, d_t) in the forward pass through torch.nn.utils.parametrize, so the models
stay plain nn.Modules. One threshold d_t, a 0-d tensor on the model's device, is shared by
all of them. The gradient passes straight through the threshold (∂w/∂θ = 1, also where
w = 0), so pruned weights can grow back. θ is trained with momentum SGD (optim.sgd.SGD),
weight decay on θ, BatchNorm and biases as in the dense baseline.

Threshold schedules (t = optimizer steps done, N = total steps, η_s the learning rate the
optimizer used at step s, read from its param group, so any lr schedule works):

    lats    d_t = λ · Σ_{s≤t} η_s: a constant ℓ1 coefficient λ (ISTA on L(w) + λ‖w‖₁).
            Set either `lam` (λ) or `final_threshold` (D, then λ = D / Σ_{s≤N} η_s, the
            sum computed from the lr schedule before training); neither: d ≡ 0 (dense).
    linear  d_t = D · t / N
    sine    d_t = D · (1 − cos(π t / N)) / 2
            (ablations: the implied λ_t = (d_{t+1} − d_t) / η_t grows without bound as
            η_t → 0 under a cosine lr)

linear and sine are the schedules of STDS (Chen et al., ICML 2022, paper B's earlier work;
Yanqi-Chen/STDS, `linearInc` and `sineInc` in ImageNet/train.py and CIFAR10/train.py):
set after every optimizer step from the steps done over all training steps, from d = 0 to D
at the last step, with no early end and no hold. Their sineInc is (1 + sin(π(t/N − ½)))/2,
the same curve. Paper B's own code (Yanqi-Chen/LATS trainer.py) has only its LATS, S-LATS
and PGH schedules. sine is revision 2 (`revision_of`, in the config hash): revision 1 ran
D · sin(πt/2N), found in neither code. linear was STDS's already and stays revision 1.

Step t uses w = S(θ, d_{t−1}); after the optimizer step the threshold becomes d_t, so the
last step leaves d_N (= D). θ starts at sign(w₀)·(|w₀| + d_0) with d_0 = 0, i.e. θ = w₀.
The threshold and the running lr sum are method state (checkpointed); `export()` gives
the plain state dict with `<layer>.weight` = S(θ, d), which is what model.pt holds.
"""
import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .base import penalized_modules
from .sgd import SGD

THRESHOLD_SCHEDULES = ("lats", "linear", "sine")
# The revision of each schedule (Method.revision_of): sine 2 runs STDS's curve, 1 did not;
# lats and linear never changed, so their runs keep their hashes.
SCHEDULE_REVISIONS = {"lats": 1, "linear": 1, "sine": 2}
ORIGINAL = ".parametrizations.weight.original"


def soft_threshold(theta, d):
    """S(θ, d) = sign(θ)·max(|θ| − d, 0), computed as θ − clamp(θ, −d, d): two kernels and
    bit-identical to the sign/max form (θ − d and −(|θ| − d) round the same way)."""
    return theta - theta.clamp(-d, d)


class _SoftThresholdSTE(torch.autograd.Function):
    """w = S(θ, d) forward, ∂w/∂θ = 1 backward (straight through, also where w = 0)."""

    @staticmethod
    def forward(theta, d):
        return soft_threshold(theta, d)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class SoftThresholdParam(nn.Module):
    """The parametrization w = S(θ, d). `threshold` is a plain attribute (not a buffer) so
    that every layer shares the method's one tensor and the model's state dict holds only θ;
    the method saves the threshold itself."""

    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def forward(self, theta):
        return _SoftThresholdSTE.apply(theta, self.threshold)

    @torch.no_grad()
    def right_inverse(self, w):
        """θ = sign(w)·(|w| + d): a θ whose threshold gives back w (used at registration)."""
        return torch.sign(w) * (w.abs() + self.threshold)


class SoftThreshold(SGD):
    name = "soft_threshold"
    label, role, color, marker = "soft threshold (LATS)", "baseline", "#0072B2", "s"
    # the label names LATS, the default schedule; an entry with another schedule is not LATS
    variants = {"linear": "soft threshold, linear schedule", "sine": "soft threshold, sine schedule",
                "lats": "soft threshold (LATS)"}
    mode = "elementwise"
    defaults = {**SGD.defaults, "threshold_schedule": "lats", "lam": 0.0, "final_threshold": 0.0}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp}
        layers = [m for _, m in penalized_modules(model)]
        if any(parametrize.is_parametrized(m, "weight") for m in layers):
            raise ValueError("soft_threshold: the model's weights are parametrized already")
        w = layers[0].weight
        # d_0 = 0 under every schedule: registration sets θ = sign(w₀)(|w₀| + 0) = w₀.
        self.threshold = torch.zeros((), device=w.device, dtype=w.dtype)
        for m in layers:
            parametrize.register_parametrization(m, "weight", SoftThresholdParam(self.threshold))
        super().__init__(model, hp, steps_per_epoch, epochs)  # momentum SGD on θ
        self.total_steps = steps_per_epoch * epochs
        self.t = 0             # optimizer steps done
        self.lr_sum = 0.0      # Σ η_s over the steps done (float64, exact to resume)
        base = self.schedule.base_lrs[0]
        # Σ_{s≤N} η_s from the lr schedule, summed in the same order as lr_sum will be.
        planned = 0.0
        for t in range(1, self.total_steps + 1):
            planned += base * self.schedule.factor(t)
        self.planned_lr_sum = planned
        self.final = float(hp["final_threshold"])
        if hp["threshold_schedule"] == "lats" and hp["lam"] > 0:
            self.lam = float(hp["lam"])
            self.final = self.lam * planned
        else:
            self.lam = self.final / planned if planned > 0 else 0.0

    @classmethod
    def validate(cls, hp):
        hp = {**cls.defaults, **hp}
        super().validate(hp)
        kind = hp["threshold_schedule"]
        if kind == "lats" and hp["lam"] > 0 and hp["final_threshold"] > 0:
            raise ValueError("optim.lam and optim.final_threshold both set: give one (the other follows "
                             "from the lr schedule)")
        if kind != "lats" and (hp["final_threshold"] <= 0 or hp["lam"] > 0):
            raise ValueError(f"optim.threshold_schedule {kind} needs optim.final_threshold > 0 and "
                             f"no optim.lam")

    @classmethod
    def budget_factor(cls, key, old, new):
        """LATS: where the threshold d grows by λ·lr a step and momentum SGD (μ) with weight
        decay wd moves θ, a surviving weight stays put when ∂L/∂w + wd·w + κ·sign(w) = 0 with
        κ = (1 − μ)·λ + wd·d: the ℓ1 coefficient the run ends at is κ = λ·((1 − μ) + wd·Σ lr).
        The factor keeps κ: ((1 − μ) + wd·S_old) / ((1 − μ) + wd·S_new) on λ, and on a final
        threshold D (= λ̄·S, λ̄ the lr-weighted mean, also for linear and sine)
        ((1 − μ)/S_old + wd) / ((1 − μ)/S_new + wd). docs/methods.md §7."""
        if key not in ("lam", "final_threshold"):
            return super().budget_factor(key, old, new)

        def kappa(b):   # κ per unit of the key
            hp = {**cls.defaults, **b["hp"]}
            m, wd, S = 1.0 - float(hp["momentum"]), float(hp["weight_decay"]), float(b["lr_sum"])
            return m + wd * S if key == "lam" else m / S + wd
        f = kappa(old) / kappa(new)
        return f, (f"keeps the final ℓ1 coefficient (1 − μ)·λ + wd·d at Σ lr {old['lr_sum']:.6g} -> "
                   f"{new['lr_sum']:.6g}")

    @classmethod
    def revision_of(cls, hp):
        # an unknown schedule is validate()'s to reject, not this lookup's
        return SCHEDULE_REVISIONS.get({**cls.defaults, **hp}["threshold_schedule"], cls.revision)

    def threshold_at(self, t, lr_sum):
        kind = self.hp["threshold_schedule"]
        if kind == "lats":
            return self.lam * lr_sum
        frac = min(t, self.total_steps) / self.total_steps
        return self.final * (frac if kind == "linear" else (1 - math.cos(math.pi * frac)) / 2)

    def step(self):
        lr = self.optimizer.param_groups[0]["lr"]  # the step size this step actually uses
        self.optimizer.step()
        self.t += 1
        self.lr_sum += lr
        self.threshold.fill_(self.threshold_at(self.t, self.lr_sum))
        self.schedule.step()

    def end_epoch(self, epoch):
        return {"threshold": self.threshold.item()}

    @torch.no_grad()
    def export(self):
        out = {}
        for k, v in self.model.state_dict().items():
            if k.endswith(ORIGINAL):
                out[k[:-len(ORIGINAL)] + ".weight"] = soft_threshold(v, self.threshold)
            else:
                out[k] = v.clone()
        return out

    def state_dict(self):
        return {**super().state_dict(), "t": self.t, "lr_sum": self.lr_sum,
                "threshold": self.threshold.item()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t, self.lr_sum = state["t"], state["lr_sum"]
        # Recomputed rather than read, so that it is bit-identical to an uninterrupted run.
        self.threshold.fill_(self.threshold_at(self.t, self.lr_sum))

    def summary(self):
        """λ: the constant coefficient for lats; for linear/sine, the lr-weighted mean
        Σλ_tη_t / Ση_t = D / Ση_t of the varying one. final_threshold: d at the end."""
        return {"lam": self.lam, "final_threshold": self.threshold.item(),
                "threshold_schedule": self.hp["threshold_schedule"]}
