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

Mask updates: the authors' update (google-research/rigl, rigl/sparse_optimizers_base.py:
SparseRigLOptimizerBase.apply_gradients, cond_mask_update_op, is_mask_update_iter,
_get_update_op; the PyTorch port rigl-torch, rigl_torch/RigL.py: RigLScheduler._rigl_step,
has the same drop/grow). Their clock is the global step g, the number of SGD steps done.
A batch with g <= T_end = round(end_fraction · N) and g >= (the last update's g) + ΔT (the
last update starts at −ΔT, so g = 0, the first batch, is one) is a mask update instead of an
SGD step, and g does not advance at it: neither the lr schedule nor the update clock moves,
and the next batch is the SGD step g. So updates come at g = 0, ΔT, 2ΔT, … with ΔT SGD steps
between them, and of the N batches N − (updates) are SGD steps. (rigl-torch instead counts
batches from 1, updates at t = ΔT, 2ΔT, … < T_end and has none at the first batch; the
authors' TF code is followed.) Each layer, with the cosine
fraction f_g = α/2 · (1 + cos(π g / T_end)) (f_0 = α, 0 at T_end) and n its active count:
    keep   the n − k active weights of largest |w|, k = floor(f_g · n)  (their mask1);
    grow   the k weights of largest |∂L/∂w| (this batch's dense gradient) among all weights
           not kept: the weights just dropped are candidates (their score of the kept
           weights is lifted to min − 1, i.e. below every candidate);
    new    mask = kept + grown. A grown weight that was inactive before the update starts at
           w = 0 with momentum 0 (their grow_init 'zeros', initial_acc_scale 0); a dropped
           weight grown back keeps its value and momentum (reinit_when_same False).
Kept and grown are disjoint and k <= (weights not kept), so every layer's number of nonzeros
in its mask is exactly what it was. From T_end on the mask is fixed. Ties in either ranking go
to the lower flat index (TF's top_k rule; here a stable sort).

The gradients of masked weights are dense because the weights are plain parameters that are
exactly zero where masked (no reparameterization): autograd computes ∂L/∂w everywhere, the
gradient of the loss with respect to the masked weight as theirs (weight decay is not in it).
After every step the masked entries of the weights and of their momentum buffers are zeroed
(optim.magnitude._Masked), so neither momentum nor weight decay revives a dropped weight.
Like GMP, BatchNorm statistics of a conv filter whose whole mask is zero are set to those of
a zero channel after each update.

State (checkpointed): the masks, the batch counter t, the number of updates done and the g
of the last one; `export()` is the plain state dict (the weights are exactly zero where
masked). `revision` 2: runs of revision 1 (no regrowth of dropped weights, no update at g = 0,
the lr schedule advanced at updates, updates at t = ΔT, 2ΔT, … < T_end counting batches) have
another config hash.

Deviations from the authors' code: no noise on the drop score (theirs adds N(0, 1e-5) "for a
slight bit of randomness", which only reorders weights within ~1e-5 of each other and can
let an inactive weight outrank a tiny active one; rigl-torch adds none); inactive weights
rank below every active one in the keep ranking (theirs ranks |mask·w| + noise over the
whole layer); n_keep is computed in float64, not float32; with a fixed number of batches
the run does N − (updates) SGD steps, not N SGD steps plus the update batches as theirs does
(its lr schedule stops short by that many steps); no dense first layer (every conv and linear
layer is sparse; ERK gives small layers high density by itself); the drop count is per
layer, as there, but the sparsity target is over all conv + linear weights of the model (the
authors' ResNet-50 keeps the first conv dense and excludes it from the count).
"""
import math

import torch

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
    revision = 2   # the authors' update (regrowth, g = 0 update, their clock); 1 had neither
    label, role, color, marker = "RigL", "baseline", "#332288", "p"
    mode = "elementwise"
    defaults = {**SGD.defaults, "target": 0.9, "delta_t": 100, "alpha": 0.3, "end_fraction": 0.75,
                "distribution": "erk"}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp}
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.total_steps = steps_per_epoch * epochs
        self.end_step = round(hp["end_fraction"] * self.total_steps)
        self.t = 0          # batches done (mask updates included)
        self.updates = 0    # mask updates done
        self.last_update = -hp["delta_t"]   # g of the last update; as theirs, so that g = 0 is one
        shapes = [tuple(w.shape) for w in self.weights]
        rule = erk_densities if hp["distribution"] == "erk" else uniform_densities
        self.densities = rule(shapes, 1.0 - hp["target"])
        self.init_masks()

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

    def sgd_steps(self):
        """Their global step g: SGD steps done (batches less mask updates)."""
        return self.t - self.updates

    def update_due(self):
        """Whether the next batch is a mask update (is_mask_update_iter, begin_step 0)."""
        g = self.sgd_steps()
        return g <= self.end_step and self.last_update + self.hp["delta_t"] <= g

    @torch.no_grad()
    def update_masks(self, fraction):
        """Keep, per layer, the active weights of largest |w| but floor(fraction·active) and
        grow as many of largest |grad| among the rest, dropped ones included (module
        docstring); uses the gradients in .grad (dense). Returns the number of weights
        newly grown from inactive."""
        moved = 0
        for w, m in zip(self.weights, self.masks):
            before = m.reshape(-1) > 0
            n_active = int(before.sum())
            k = math.floor(fraction * n_active)
            if k <= 0:
                continue
            kept = self._top(w.detach().abs().reshape(-1).masked_fill(~before, -math.inf), n_active - k)
            g = w.grad if w.grad is not None else torch.zeros_like(w)
            # the kept weights below every candidate (theirs: min − 1), so the k best are grown
            grown = self._top(g.detach().abs().reshape(-1).float().masked_fill(kept, -math.inf), k)
            fresh = (grown & ~before).view(w.shape)   # new connections: w and momentum at 0
            w.masked_fill_(fresh, 0)
            buf = self.optimizer.state[w].get("momentum_buffer")
            if buf is not None:
                buf.masked_fill_(fresh, 0)
            m.copy_((kept | grown).view(w.shape).to(m.dtype))
            moved += int(fresh.sum())
        self.active = True
        self.apply_masks()         # weights dropped (and not grown back) and their momentum to 0
        self.reset_dead_channels()
        return moved

    @staticmethod
    def _top(scores, n):
        """A boolean of the n largest scores, ties to the lower index (TF's top_k)."""
        out = torch.zeros_like(scores, dtype=torch.bool)
        out[torch.sort(scores, descending=True, stable=True).indices[:n]] = True
        return out

    def step(self):
        if self.update_due():
            g = self.sgd_steps()
            self.update_masks(update_fraction(g, self.hp["alpha"], self.end_step))
            self.updates += 1
            self.last_update = g
            # no SGD step and no lr step: their global step does not advance at an update
        else:
            super().step()         # SGD step, lr schedule, masks re-applied
        self.t += 1

    def mask_sparsity(self):
        ones = sum(int(m.count_nonzero()) for m in self.masks)
        return 1.0 - ones / sum(m.numel() for m in self.masks)

    def end_epoch(self, epoch):
        return {"mask_sparsity": self.mask_sparsity(), "mask_updates": self.updates}

    def state_dict(self):
        return {**super().state_dict(), "t": self.t, "updates": self.updates,
                "last_update": self.last_update}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t, self.updates, self.last_update = state["t"], state["updates"], state["last_update"]

    def summary(self):
        return {**super().summary(), "mask_sparsity": self.mask_sparsity(), "mask_updates": self.updates,
                "distribution": self.hp["distribution"], "delta_t": self.hp["delta_t"],
                "end_step": self.end_step}
