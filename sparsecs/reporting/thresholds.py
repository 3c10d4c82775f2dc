"""The soft threshold d of a soft_threshold run and the ℓ1 coefficient it implies, per epoch
(paper B; reporting/threshold_figure.py draws them): computed from a run's metrics.csv rows and
its resolved config, which reporting/load.py reads.
"""
import math

import numpy as np

METHOD = "soft_threshold"


def steps_per_epoch(cfg):
    """Optimizer steps of one epoch of `cfg` (the last partial batch kept, as data.py)."""
    from sparsecs import data

    spec = data.DATASETS.get(cfg["dataset"])
    n = spec.n_train if spec else 0
    if cfg.get("train_subset"):
        n = min(n, int(cfg["train_subset"])) if n else int(cfg["train_subset"])
    return max(1, math.ceil(n / cfg["batch_size"])) if n else 0


def epoch_lr_sums(cfg, steps=None):
    """[Σ η_s over epoch e for e = 1..epochs] of the run `cfg` (a resolved config), from the
    schedule it trained with; `steps`: steps per epoch (default: from the data set)."""
    import torch

    from sparsecs.optim.schedules import Schedule, warmup_steps

    o = cfg["optim"]
    steps = steps or steps_per_epoch(cfg) or 100    # unknown size: the shape at 100 steps
    base = float(o["lr"]) * float(cfg.get("lr_scale", 1.0))
    n = steps * cfg["epochs"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    warm = warmup_steps({"warmup_epochs": cfg.get("warmup_epochs", 0)}, steps)
    sched = Schedule(opt, o.get("schedule", "cosine"), n, steps, o.get("milestones", ()), o.get("gamma", 0.1),
                     warmup_steps=warm)
    per_step = np.array([base * sched.factor(t) for t in range(1, n + 1)])
    return per_step.reshape(cfg["epochs"], steps).sum(1)


def implied(m, cfg, summary):
    """A soft_threshold run's per-epoch threshold and implied ℓ1 coefficient from its metrics
    `m` (load.metrics_of), resolved config `cfg` and summary: a DataFrame with epoch,
    threshold, lr_sum (Σ η of the epoch), lam (λ_e), and the run's D and mean λ (attrs D,
    lam_mean). None when the run has no threshold column, no config or no threshold."""
    import pandas as pd

    if cfg is None or "threshold" not in m.columns or not len(m):
        return None
    sums = epoch_lr_sums(cfg)[: len(m)]
    D, lam = float(summary.get("final_threshold") or 0.0), float(summary.get("lam") or 0.0)
    if D > 0 and lam > 0 and len(m) == cfg["epochs"]:
        sums = sums * (D / lam) / sums.sum()       # the run's own Σ η (summary: D / λ)
    d = m["threshold"].to_numpy(float)
    out = pd.DataFrame({"epoch": m["epoch"].to_numpy(int), "threshold": d, "lr_sum": sums,
                        "lam": np.diff(d, prepend=0.0) / np.where(sums > 0, sums, np.nan)})
    out.attrs.update(D=D if D > 0 else float(d[-1]), lam_mean=lam)
    return out if out.attrs["D"] > 0 else None


