"""RigL (Evci, Gale, Menick, Castro, Elsen, ICML 2020; docs/methods.md §8): sparse training
from scratch at a fixed number of nonzeros, with momentum SGD.

Layer densities. `target` is the sparsity of all conv and linear weights together (the
count metrics.sparsity reports); each layer gets a density d_l with Σ d_l·n_l = (1 − target)·N:

    uniform  d_l = 1 − target for every layer (first and last layer included)
    erk      d_l = ε · (n_in + n_out + kh + kw) / (n_in · n_out · kh · kw)   (linear: kh, kw
             absent), ε chosen to meet the budget; a layer whose d_l would exceed 1 is made
             dense and ε is solved again on the others, largest raw density first (the rule
             of the authors' sparse_utils.get_sparsities, erk_power_scale 1).

Every layer keeps round(d_l·n_l) weights (at least one); which ones is drawn uniformly at
random when the method is built (torch's global generator, seeded by train.py), and the
masked weights are zeroed then.

Mask updates (Algorithm 1 of the paper). Steps are t = 1 … N. At a step with t mod ΔT = 0
and t < T_end = round(end_fraction · N), instead of the weight update, each layer
    drops  k = floor(f_t · n_active) of its active weights with the smallest |w|, and
    grows  the k weights, among those that were inactive before this update, with the
           largest |∂L/∂w| of this step's (dense) gradient; they start at w = 0,
with the cosine update fraction f_t = α/2 · (1 + cos(π t / T_end)). A weight dropped in an
update is never grown in the same one, and k is capped by the inactive count, so every
layer's number of nonzeros in its mask is exactly what it was. The lr schedule still advances
at such a step (the step is spent, as in the paper's loop). From T_end on the mask is fixed.

The gradients of masked weights are dense because the weights are plain parameters that are
exactly zero where masked (no reparameterization): autograd computes ∂L/∂w everywhere.
After every step the masked entries of the weights and of their momentum buffers are zeroed
(optim.magnitude._Masked), so neither momentum nor weight decay revives a dropped weight;
a grown weight's momentum starts at 0. Like GMP, BatchNorm statistics of a conv filter whose
whole mask is zero are set to those of a zero channel after each update.

State (checkpointed): the masks, the step counter and the number of updates done; `export()`
is the plain state dict (the weights are exactly zero where masked).

Deviations from the authors' code: no dense first layer (every conv and linear layer is
sparse; ERK gives small layers high density by itself); the drop count is per layer, as
there, but the sparsity target is over all conv + linear weights of the model (the
authors' ResNet-50 keeps the first conv dense and excludes it from the count).
"""
import math

import torch

from .base import RULES
from .magnitude import _Masked
from .sgd import SGD

DISTRIBUTIONS = ("erk", "uniform")


def erk_densities(shapes, density):
    """Per-layer densities for the weight `shapes` at overall `density` (Erdős–Rényi-kernel):
    d_l = ε·Σ(shape)/Π(shape), layers capped at 1 with the rest re-solved."""
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, sizes)]
    budget = density * sum(sizes)
    dense = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            return [1.0] * len(shapes)
        eps = (budget - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in free)
        top = max(raw[i] for i in free)
        if eps * top <= 1:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.update(i for i in free if raw[i] == top)


def uniform_densities(shapes, density):
    return [float(density)] * len(shapes)


def update_fraction(t, alpha, end):
    """The cosine drop fraction at step t: α/2·(1 + cos(π t / T_end)), 0 from T_end on."""
    if end <= 0 or t >= end:
        return 0.0
    return alpha / 2 * (1 + math.cos(math.pi * t / end))


class RigL(_Masked):
    name = "rigl"
    label, role, color, marker = "RigL", "baseline", "#332288", "p"
    mode = "elementwise"
    defaults = {**SGD.defaults, "target": 0.9, "delta_t": 100, "alpha": 0.3, "end_fraction": 0.75,
                "distribution": "erk"}
    choices = {**SGD.choices, "distribution": DISTRIBUTIONS}
    rules = {**RULES, "delta_t": (lambda v: v >= 1, "a number of steps >= 1"),
             "alpha": (lambda v: 0 < v <= 1, "in (0, 1]"), "end_fraction": (lambda v: 0 < v <= 1, "in (0, 1]")}
    target_key = "target"

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp}
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.total_steps = steps_per_epoch * epochs
        self.end_step = round(hp["end_fraction"] * self.total_steps)
        self.t = 0          # optimizer steps done (mask-update steps included)
        self.updates = 0    # mask updates done
        shapes = [tuple(w.shape) for w in self.weights]
        rule = erk_densities if hp["distribution"] == "erk" else uniform_densities
        self.densities = rule(shapes, 1.0 - hp["target"])
        self.init_masks()

    @classmethod
    def validate(cls, hp):
        hp = {**cls.defaults, **hp}
        super().validate(hp)
        dt = hp["delta_t"]
        if isinstance(dt, bool) or not isinstance(dt, int) or dt < 1:
            raise ValueError(f"optim.delta_t must be a number of steps >= 1, got {dt!r}")
        for k in ("alpha", "end_fraction"):
            v = hp[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"optim.{k} must be in (0, 1], got {v!r}")
        if hp["distribution"] not in DISTRIBUTIONS:
            raise ValueError(f"optim.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                             f"got {hp['distribution']!r}")

    def active_counts(self):
        """Weights each layer keeps: round(d_l·n_l), at least one."""
        return [max(1, min(w.numel(), round(d * w.numel()))) for w, d in zip(self.weights, self.densities)]

    @torch.no_grad()
    def init_masks(self):
        """A random mask with exactly active_counts() ones per layer; masked weights zeroed."""
        for w, m, k in zip(self.weights, self.masks, self.active_counts()):
            flat = torch.zeros(w.numel(), device=w.device, dtype=w.dtype)
            flat[torch.randperm(w.numel())[:k].to(w.device)] = 1
            m.copy_(flat.view(w.shape))
        self.active = any(k < w.numel() for w, k in zip(self.weights, self.active_counts()))
        self.apply_masks()
        self.reset_dead_channels()

    def update_due(self, t):
        return t % self.hp["delta_t"] == 0 and t < self.end_step

    @torch.no_grad()
    def update_masks(self, fraction):
        """Drop and grow floor(fraction·active) weights per layer (module docstring); uses the
        gradients in .grad (dense). Returns the number of weights moved."""
        moved = 0
        for w, m in zip(self.weights, self.masks):
            before = m.reshape(-1) > 0
            n_active = int(before.sum())
            k = min(math.floor(fraction * n_active), w.numel() - n_active)
            if k <= 0:
                continue
            drop_scores = w.detach().abs().reshape(-1).masked_fill(~before, math.inf)
            dropped = torch.topk(drop_scores, k, largest=False, sorted=False).indices
            g = w.grad if w.grad is not None else torch.zeros_like(w)
            grow_scores = g.detach().abs().reshape(-1).float().masked_fill(before, -1.0)
            grown = torch.topk(grow_scores, k, largest=True, sorted=False).indices
            new = before.to(m.dtype)
            new[dropped] = 0
            new[grown] = 1
            m.copy_(new.view(w.shape))   # grown weights are 0 already (masked until now)
            moved += k
        self.active = True
        self.apply_masks()         # dropped weights and their momentum to 0
        self.reset_dead_channels()
        return moved

    def step(self):
        self.t += 1
        if self.update_due(self.t):
            self.update_masks(update_fraction(self.t, self.hp["alpha"], self.end_step))
            self.updates += 1
            self.schedule.step()   # the step is spent on the mask, not on the weights
        else:
            super().step()         # SGD step, lr schedule, masks re-applied

    def mask_sparsity(self):
        ones = sum(int(m.count_nonzero()) for m in self.masks)
        return 1.0 - ones / sum(m.numel() for m in self.masks)

    def end_epoch(self, epoch):
        return {"mask_sparsity": self.mask_sparsity(), "mask_updates": self.updates}

    def state_dict(self):
        return {**super().state_dict(), "t": self.t, "updates": self.updates}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t, self.updates = state["t"], state["updates"]

    def summary(self):
        return {**super().summary(), "mask_sparsity": self.mask_sparsity(), "mask_updates": self.updates,
                "distribution": self.hp["distribution"], "delta_t": self.hp["delta_t"],
                "end_step": self.end_step}
