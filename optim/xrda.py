"""xRDA: generalized regularized dual averaging with momentum and an adaptive ℓ1 penalty.

docs/methods.md §1, in the order written there. Per step, for every tensor w with
gradient g, step size h, averaging weight a, penalty λ and maximum factor M:

    g ← g + wd·w
    r ← e^(−h/T_b)·r + (1 − e^(−h/T_b))·m(w)          (penalized tensors only)
    c ← M / (1 + (M − 1)·r / max(r))  (× the mode factor; 0 if max(r) = 0)
    Λ ← a·Λ + h·c                                     (penalized tensors only)
    z ← a·z + (1 − a)·w
    v ← e^(−h/T_m)·v + (1 − e^(−h/T_m))·g
    z ← z − h·v
    w ← S(z, λ·Λ)      (w ← z for tensors that are not penalized)

State per tensor: z, v and, for penalized tensors, r and Λ. In kernel and channel mode the
entries of a kernel (filter) share r, c and hence Λ, so r and Λ are stored once per kernel
([out, in, 1, 1]) or filter ([out, 1, 1, 1]) and broadcast in the prox: the same numbers
as per-entry storage, in less memory.

Implementation notes. The step runs on lists of tensors (torch._foreach_*), one list per
param group and device. Large CPU tensors (>= SCRATCH_MIN_NUMEL entries) instead write into
one preallocated scratch tensor each with per-tensor `out=` calls, because fresh CPU memory
of that size costs page faults on every step; kernel/channel means are per tensor too.
c·h is computed as h·f·M·ε / (r + ε) with ε = max(r) / (M − 1): the same number as
h·f·M / (1 + (M − 1)·r / max r), in one addcdiv; M = 1 is the constant h·f. The eager step
makes about 13 elementwise passes over the weights to SGD's 4 (about 3x SGD's time on the
CPU); `fused=True` compiles the same step with torch.compile (one fused loop per tensor,
about SGD's time) at the price of a compile on the first step.
"""
import math

import torch

from .base import is_penalized

MODES = ("elementwise", "kernel", "channel")
# CPU tensors with at least this many entries use preallocated scratch (see _Penalized).
SCRATCH_MIN_NUMEL = 1 << 16


def _split_apply(big, many, one):
    """[result per index]: `many(indices)` (a foreach call) for the small ones, `one(i)` for
    each big one."""
    out = [None] * len(big)
    small = [i for i, b in enumerate(big) if not b]
    if small:
        for i, t in zip(small, many(small)):
            out[i] = t
    for i, b in enumerate(big):
        if b:
            out[i] = one(i)
    return out


def _reduce_dims(p, mode):
    """Dimensions whose entries share one running magnitude (None: elementwise)."""
    if p.dim() == 4 and mode == "kernel":
        return (2, 3)
    if p.dim() == 4 and mode == "channel":
        return (1, 2, 3)
    return None


def _state_shape(p, mode):
    """Shape of r and Λ: p's shape, or 1 along the dimensions that share one magnitude."""
    dims = _reduce_dims(p, mode)
    return p.shape if dims is None else torch.Size(1 if d in dims else s for d, s in enumerate(p.shape))


def _mode_factor(p, mode):
    """√(kh·kw) in kernel mode, √(in·kh·kw) in channel mode, 1 otherwise (linear weights)."""
    dims = _reduce_dims(p, mode)
    return 1.0 if dims is None else math.sqrt(math.prod(p.shape[d] for d in dims))


def _check_group(g):
    def bad(key, need):
        raise ValueError(f"XRDA: {key} must be {need}, got {g[key]!r}")
    if not g["lr"] >= 0:
        bad("lr", ">= 0")
    if not 0.0 <= g["avg"] <= 1.0:
        bad("avg", "in [0, 1]")
    if not g["lam"] >= 0:
        bad("lam", ">= 0")
    if not g["max_factor"] >= 1:
        bad("max_factor", ">= 1")
    for key in ("momentum_ts", "magnitude_ts"):
        if not g[key] > 0:
            bad(key, "> 0")
    if not g["weight_decay"] >= 0:
        bad("weight_decay", ">= 0")
    if g["mode"] not in MODES:
        bad("mode", "one of " + ", ".join(MODES))


class _Penalized:
    """The penalized tensors of one step (weights w, z, r, Λ) and the scratch they share:
    large CPU tensors write into one scratch tensor each (`out=`), as fresh CPU memory of
    that size costs page faults on every step. The rest (all tensors on a GPU, where the
    caching allocator makes temporaries free) use one foreach call per operation instead of
    one call per tensor."""

    def __init__(self, pen, mode):
        self.mode = mode
        self.pw = [p for p, _ in pen]
        self.pz = [s["z"] for _, s in pen]
        self.rs = [s["r"] for _, s in pen]
        self.lams = [s["Lambda"] for _, s in pen]
        self.dims = [_reduce_dims(p, mode) for p in self.pw]
        for p, r in zip(self.pw, self.rs):
            if r.shape != _state_shape(p, mode):
                raise ValueError("XRDA: optimizer state was created in another mode")
        self.big = [p.device.type == "cpu" and p.numel() >= SCRATCH_MIN_NUMEL for p in self.pw]
        self.tmp = [torch.empty_like(p) if b else None for p, b in zip(self.pw, self.big)]

    def magnitudes(self, beta_b):
        """r ← β_b·r + (1 − β_b)·m(w)"""
        pw, big = self.pw, self.big
        elem = [i for i, d in enumerate(self.dims) if d is None and not big[i]]
        mags = [None] * len(pw)
        for i, m in zip(elem, torch._foreach_abs([pw[i] for i in elem]) if elem else ()):
            mags[i] = m
        for i, (p, t, d) in enumerate(zip(pw, self.tmp, self.dims)):
            if mags[i] is None:
                m = torch.abs(p, out=t) if t is not None else p.abs()
                mags[i] = m if d is None else m.mean(d, keepdim=True)
        torch._foreach_lerp_(self.rs, mags, 1.0 - beta_b)

    def weights(self, h, a, M):
        """Λ ← a·Λ + h·c with c = f·M / (1 + (M − 1)·r / max r) = f·M·ε / (r + ε),
        ε = max r / (M − 1); c = 0 where max r = 0."""
        rs, lams, tmp = self.rs, self.lams, self.tmp
        rmax = torch.stack(torch._foreach_max(rs))
        pos = rmax > 0
        hf = [h * _mode_factor(p, self.mode) for p in self.pw]  # Python floats: no host-device copy
        if M == 1.0:
            hc = torch._foreach_mul(list(pos.to(rmax.dtype).unbind()), hf)
            if a == 0.0:
                torch._foreach_zero_(lams)
            elif a != 1.0:
                torch._foreach_mul_(lams, a)
            torch._foreach_add_(lams, hc)
            return
        eps = torch.where(pos, rmax / (M - 1.0), 1.0)
        num = torch._foreach_mul(list(torch.where(pos, eps * M, 0.0).unbind()), hf)
        eps = list(eps.unbind())
        den = _split_apply(self.big, lambda ix: torch._foreach_add([rs[i] for i in ix],
                                                                   [eps[i] for i in ix]),
                           lambda i: torch.add(rs[i], eps[i], out=tmp[i])
                           if rs[i].shape == tmp[i].shape else rs[i] + eps[i])
        if a == 0.0:
            for lm, n, d in zip(lams, num, den):
                torch.div(n, d, out=lm)
        else:
            if a != 1.0:
                torch._foreach_mul_(lams, a)
            torch._foreach_addcdiv_(lams, num, den)

    def shrink(self, lam):
        """w ← S(z, λ·Λ), computed as clamp(0, z − λΛ, z + λΛ) (the median of the three) or
        max(z − λΛ, min(z + λΛ, 0)): the same numbers as sign(z)·max(|z| − λΛ, 0) in fewer
        passes."""
        pw, pz, lams = self.pw, self.pz, self.lams
        ix = [i for i, b in enumerate(self.big) if not b]
        if ix:
            sz, sl = [pz[i] for i in ix], [lams[i] for i in ix]
            lo = torch._foreach_add(sz, sl, alpha=-lam)
            hi = torch._foreach_add(sz, sl, alpha=lam)
            torch._foreach_clamp_max_(hi, 0.0)
            torch._foreach_maximum_(lo, hi)
            torch._foreach_copy_([pw[i] for i in ix], lo)
            del lo, hi
        zero = pw[0].new_zeros(())
        for p, t, z, lm in zip(pw, self.tmp, pz, lams):
            if t is not None:
                torch.add(z, lm, alpha=-lam, out=t)
                torch.add(z, lm, alpha=lam, out=p)
                torch.clamp(zero, min=t, max=p, out=p)


class XRDA(torch.optim.Optimizer):
    """xRDA (Siegel et al. 2020). `lr` is the step size h and `avg` the averaging weight a;
    both (and `lam`) may be changed in the param groups between steps, e.g. by
    optim.schedules.Schedule. `mode` is fixed once a tensor has state."""

    def __init__(self, params, lr, avg=0.0, lam=0.0, max_factor=500.0, momentum_ts=9.5,
                 magnitude_ts=9.5, weight_decay=5e-4, mode="elementwise", fused=False):
        defaults = dict(lr=lr, avg=avg, lam=lam, max_factor=max_factor, momentum_ts=momentum_ts,
                        magnitude_ts=magnitude_ts, weight_decay=weight_decay, mode=mode)
        _check_group(defaults)
        super().__init__(params, defaults)
        # fused: the same step as one torch.compile'd function (opt-in; the first step
        # compiles, tens of seconds; needs a C++ compiler on CPU or Triton on GPU).
        self.fused = bool(fused)
        for g in self.param_groups:
            _check_group(g)

    def _init_state(self, p, mode):
        state = self.state[p]
        state["z"] = p.detach().clone(memory_format=torch.preserve_format)
        state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if is_penalized(p) and p.numel() > 0:
            if _reduce_dims(p, mode) is None:
                r = torch.zeros_like(p, memory_format=torch.preserve_format)
            else:
                r = p.new_zeros(_state_shape(p, mode))
            state["r"] = r
            state["Lambda"] = torch.zeros_like(r)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            _check_group(group)
            by_device = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("XRDA does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state = self._init_state(p, group["mode"])
                by_device.setdefault(p.device, []).append((p, state))
            for items in by_device.values():
                if self.fused:
                    self._step_fused(group, items)
                else:
                    self._step_tensors(group, items)
        return loss

    def _step_tensors(self, group, items):
        # one step of the authors' update, line by line: v, then (penalized tensors) r and Λ,
        # then z, then w; the _Penalized methods are the lines for r, Λ and w
        h, a, lam = float(group["lr"]), float(group["avg"]), float(group["lam"])
        M, wd, mode = float(group["max_factor"]), float(group["weight_decay"]), group["mode"]
        beta_m = math.exp(-h / group["momentum_ts"])
        beta_b = math.exp(-h / group["magnitude_ts"])
        params = [p for p, _ in items]
        zs = [s["z"] for _, s in items]
        vs = [s["v"] for _, s in items]

        # g ← g + wd·w;  v ← β_m·v + (1 − β_m)·g   (p.grad itself is left untouched)
        torch._foreach_lerp_(vs, [p.grad for p in params], 1.0 - beta_m)
        if wd != 0.0:
            torch._foreach_add_(vs, params, alpha=(1.0 - beta_m) * wd)

        pen = [(p, s) for p, s in items if "r" in s]
        pen = _Penalized(pen, mode) if pen else None
        if pen is not None:
            pen.magnitudes(beta_b)
            pen.weights(h, a, M)

        # z ← a·z + (1 − a)·w;  z ← z − h·v
        if a == 0.0:
            torch._foreach_copy_(zs, params)
        elif a != 1.0:
            torch._foreach_lerp_(zs, params, 1.0 - a)
        torch._foreach_add_(zs, vs, alpha=-h)

        if pen is not None and lam != 0.0:
            pen.shrink(lam)
            rest = [(p, s["z"]) for p, s in items if "r" not in s]
        else:
            rest = [(p, s["z"]) for p, s in items]
        if rest:     # w ← z on tensors without a penalty (and on all of them when λ = 0)
            torch._foreach_copy_([p for p, _ in rest], [z for _, z in rest])

    def _step_fused(self, group, items):
        global _COMPILED
        if _COMPILED is None:
            _COMPILED = torch.compile(_fused_update, dynamic=False, fullgraph=True)
        h, a, lam = float(group["lr"]), float(group["avg"]), float(group["lam"])
        mode = group["mode"]
        # The scalars travel as one tensor so that a new lr or avg does not recompile; on a
        # GPU through pinned memory, so that the copy does not wait for the device.
        hp = torch.tensor([h, a, lam, math.exp(-h / group["momentum_ts"]),
                           math.exp(-h / group["magnitude_ts"]), float(group["weight_decay"]),
                           float(group["max_factor"])], dtype=torch.float64)
        device = items[0][0].device
        if device.type == "cuda":
            hp = hp.pin_memory().to(device, non_blocking=True)
        pen = [s for _, s in items if "r" in s]
        meta = tuple(("r" in s, _reduce_dims(p, mode), _mode_factor(p, mode)) for p, s in items)
        for p, s in items:
            if "r" in s and s["r"].shape != _state_shape(p, mode):
                raise ValueError("XRDA: optimizer state was created in another mode")
        _COMPILED([p for p, _ in items], [p.grad for p, _ in items], [s["z"] for _, s in items],
                  [s["v"] for _, s in items], [s["r"] for s in pen], [s["Lambda"] for s in pen],
                  meta, hp)


_COMPILED = None


def _fused_update(ps, gs, zs, vs, rs, lams, meta, hp):
    """The step of XRDA._step_tensors written per tensor for torch.compile to fuse."""
    h, a, lam, beta_m, beta_b, wd, M = hp.unbind()
    j = 0
    for p, g, z, v, (penalized, dims, f) in zip(ps, gs, zs, vs, meta):
        g = g + wd * p
        if penalized:
            r, lm = rs[j], lams[j]
            j += 1
            m = p.abs() if dims is None else p.abs().mean(dims, keepdim=True)
            r_new = beta_b * r + (1 - beta_b) * m
            rmax = r_new.amax()
            c = torch.where(rmax > 0, (f * M) / (1 + (M - 1) * (r_new / rmax)), 0.0)
            lm_new = a * lm + h * c
            r.copy_(r_new)
            lm.copy_(lm_new)
        v_new = beta_m * v + (1 - beta_m) * g
        z_new = a * z + (1 - a) * p - h * v_new
        v.copy_(v_new)
        z.copy_(z_new)
        if penalized:
            p.copy_(torch.sign(z_new) * torch.clamp(z_new.abs() - lam * lm_new, min=0))
        else:
            p.copy_(z_new)
