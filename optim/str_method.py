"""STR, soft threshold reparameterization with a learned threshold per layer (Kusupati,
Ramanujan, Somani, Wortsman, Jain, Kakade, Farhadi, ICML 2020; docs/methods.md §9).

Every conv and linear weight is stored as θ (`<layer>.parametrizations.weight.original`) and
used as

    w = S(θ, g(s_l)) = sign(θ) · relu(|θ| − g(s_l)),     g = sigmoid,

with one learnable scalar s_l per layer (`<layer>.parametrizations.weight.0.s`, initialised
to `s_init`), as RAIVNLab/STR's STRConv does. Unlike LATS (optim/soft_threshold.py) the
gradient is the true one of that expression, not straight-through:

    ∂L/∂θ   = ∂L/∂w · [|θ| > g(s)]
    ∂L/∂s_l = −g'(s_l) · Σ_{|θ| > g(s)} sign(θ) · ∂L/∂w,     g'(s) = g(s)(1 − g(s)),

so a weight below its threshold gets no loss gradient (only weight decay, which shrinks it
further); it comes back only if the threshold falls below it. The forward pass is computed as
θ − clamp(θ, −d, d) (bit-identical to the sign/relu form, optim.soft_threshold) and the
backward above is written out (one pass; the tests check it against autograd on the explicit
formula). θ starts at the initial weights (θ = w₀, as STR): weights already below g(s_init)
are zero from the first step.

Optimizer: momentum SGD on θ, s, BatchNorm and biases, with weight decay `weight_decay` on
everything but the thresholds and `s_weight_decay` on the s_l (STR's `--st-decay`, which
defaults there to the weights' decay; here its default 5e-4 is the default weight_decay).
Decay on s < 0 pulls s up, so the thresholds rise: that, against the loss gradient, is what
sparsifies. Sparsity is not set directly: a sweep calibrates `s_weight_decay` to a target
with the λ search (positive, and sparsity grows with it).

State: θ and s are model parameters (the model's state dict and checkpoint hold them; the
optimizer's momentum for s is in the optimizer state). `export()` gives the plain state dict
with `<layer>.weight` = S(θ, g(s_l)) and no s keys, which is what model.pt holds.
"""

import torch
from torch import nn
from torch.nn.utils import parametrize

from .base import Method, penalized_modules
from .schedules import Schedule, warmup_steps
from .sgd import SGD
from .soft_threshold import ORIGINAL, soft_threshold

S_KEY = ".parametrizations.weight.0.s"


class _STRFunction(torch.autograd.Function):
    """w = S(θ, sigmoid(s)); backward: the exact gradient of sign(θ)·relu(|θ| − sigmoid(s))."""

    @staticmethod
    def forward(theta, s):
        return soft_threshold(theta, torch.sigmoid(s))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        theta, s = ctx.saved_tensors
        d = torch.sigmoid(s)
        g_theta = grad * (theta.abs() > d)
        g_s = None
        if ctx.needs_input_grad[1]:
            g_s = -(g_theta * theta.sign()).sum() * (d * (1 - d))
        return g_theta, g_s


def str_weight(theta, s):
    return _STRFunction.apply(theta, s)


class STRParam(nn.Module):
    """The parametrization w = S(θ, sigmoid(s)) with the layer's own threshold parameter s."""

    def __init__(self, s_init, like):
        super().__init__()
        self.s = nn.Parameter(torch.full((), float(s_init), device=like.device, dtype=like.dtype))

    def forward(self, theta):
        return str_weight(theta, self.s)


class STR(Method):
    name = "str"
    label, role, color, marker = "STR", "baseline", "#882255", "d"
    mode = "elementwise"
    defaults = {**SGD.defaults, "s_init": -5.0, "s_weight_decay": 5e-4}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        hp = {**self.defaults, **hp}
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.layers = [m for _, m in penalized_modules(model)]
        if any(parametrize.is_parametrized(m, "weight") for m in self.layers):
            raise ValueError("str: the model's weights are parametrized already")
        for m in self.layers:
            # no right_inverse: θ is the initial weight itself (θ = w₀, as STR)
            parametrize.register_parametrization(m, "weight", STRParam(hp["s_init"], m.weight))
        self.thresholds = [m.parametrizations.weight[0].s for m in self.layers]
        ids = {id(s) for s in self.thresholds}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        self.optimizer = torch.optim.SGD(
            [{"params": rest, "weight_decay": hp["weight_decay"]},
             {"params": self.thresholds, "weight_decay": hp["s_weight_decay"]}],
            lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"], foreach=True)
        self.schedule = Schedule(self.optimizer, hp["schedule"], steps_per_epoch * epochs,
                                 steps_per_epoch, hp["milestones"], hp["gamma"],
                                 warmup_steps=warmup_steps(hp, steps_per_epoch))

    @classmethod
    def budget_factor(cls, key, old, new):
        """1: decay alone would carry s from s_init to about 0 in the first 8-epoch budget at
        the 90% value (s_init·exp(−s_wd·Σlr/(1 − μ)), exponent 5.3), yet sparsity keeps rising
        with s_wd up to 99%: the thresholds settle where the decay balances the loss gradient
        on s, a point that does not depend on the steps taken (docs/methods.md §7)."""
        return 1.0, "its thresholds settle where decay balances the loss gradient"

    @classmethod
    def validate(cls, hp):
        hp = {**cls.defaults, **hp}
        SGD.validate(hp)   # nesterov needs momentum

    @torch.no_grad()
    def layer_thresholds(self):
        return [torch.sigmoid(s).item() for s in self.thresholds]

    def end_epoch(self, epoch):
        d = self.layer_thresholds()
        return {"threshold_min": min(d), "threshold_max": max(d)}

    @torch.no_grad()
    def export(self):
        state = self.model.state_dict()
        out = {}
        for k, v in state.items():
            if k.endswith(S_KEY):
                continue
            if k.endswith(ORIGINAL):
                base = k[:-len(ORIGINAL)]
                out[base + ".weight"] = soft_threshold(v, torch.sigmoid(state[base + S_KEY]))
            else:
                out[k] = v.clone()
        return out

    def summary(self):
        d = self.layer_thresholds()
        return {"lam": 0.0, "s_init": float(self.hp["s_init"]),
                "s_weight_decay": float(self.hp["s_weight_decay"]),
                "threshold_min": min(d), "threshold_max": max(d)}
