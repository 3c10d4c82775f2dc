"""Per-step schedules of the step size (and, for xRDA, of the averaging weight a).

Steps are counted t = 1..N as in docs/methods.md; `step()` is called after every optimizer
step and writes the values for the next step into the optimizer's param groups.
"""
import math

KINDS = ("cosine", "step", "constant")


class Schedule:
    """lr_t = base_lr * factor(t); with `avg`, also sets group["avg"] = avg(t).

    cosine:   factor = (1 + cos(pi t / N)) / 2,  avg = (1 - cos(pi t / N)) / 2
    step:     from epoch m (0-indexed) of each milestone on, factor *= gamma and
              (1 - avg) *= gamma (the paper's step schedule: gamma = 0.5, avg starts at 0)
    constant: factor = 1, avg = avg0

    warmup (W = warmup epochs x steps per epoch, config key `warmup_epochs`, paper B's
    ImageNet recipe): factor rises linearly, t / W, over steps 1..W, and the cosine then runs
    over the remaining N - W steps, t -> t - W (its avg stays 0 during the warm-up); under
    step and constant the warm-up multiplies factor only. W = 0: none.

    t = 1..N counts optimizer steps (N = total_steps); epoch index of step t is
    (t - 1) // steps_per_epoch, so milestone m changes the values from the first step of
    epoch m on, after m epochs. The authors' step schedule halves at the end of epoch
    index 60, 100, ..., 420 (`if epoch in [60, ...]` after training that epoch): that is
    milestones [61, 101, ..., 421] here. With avg=None the schedule never touches a.
    """

    def __init__(self, optimizer, kind, total_steps, steps_per_epoch, milestones=(), gamma=0.1,
                 avg=None, warmup_steps=0):
        if kind not in KINDS:
            raise ValueError(f"unknown schedule '{kind}'; known: {', '.join(KINDS)}")
        if not 0 < gamma <= 1:
            raise ValueError(f"schedule gamma must be in (0, 1], got {gamma!r}")
        if avg is not None and not 0 <= avg <= 1:
            raise ValueError(f"schedule avg must be in [0, 1], got {avg!r}")
        self.optimizer = optimizer
        self.kind = kind
        self.total_steps = max(1, int(total_steps))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.avg0 = avg  # None: this optimizer has no averaging weight
        self.warmup = int(warmup_steps)
        if not 0 <= self.warmup < self.total_steps:
            raise ValueError(f"warm-up of {self.warmup} steps must be shorter than the run "
                             f"({self.total_steps} steps)")
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.t = 1
        self._apply()

    def factor(self, t):
        warm = t / self.warmup if t < self.warmup else 1.0
        if self.kind == "cosine":
            return warm * (1 + math.cos(math.pi * self._after_warmup(t))) / 2
        if self.kind == "step":
            return warm * self.gamma ** self._passed(t)
        return warm

    def _after_warmup(self, t):
        """Where step t is in the cosine, in [0, 1]: t / N without warm-up."""
        if not self.warmup:
            return t / self.total_steps
        return max(0, t - self.warmup) / (self.total_steps - self.warmup)

    def avg(self, t):
        if self.kind == "cosine":
            return (1 - math.cos(math.pi * self._after_warmup(t))) / 2
        if self.kind == "step":
            return 1 - (1 - self.avg0) * self.gamma ** self._passed(t)
        return self.avg0

    def _passed(self, t):
        epoch = (t - 1) // self.steps_per_epoch
        return sum(epoch >= m for m in self.milestones)

    def _apply(self):
        f = self.factor(self.t)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
            if self.avg0 is not None:
                g["avg"] = self.avg(self.t)

    def step(self):
        self.t += 1
        self._apply()

    def state_dict(self):
        return {"t": self.t, "base_lrs": self.base_lrs}

    def load_state_dict(self, state):
        self.t = state["t"]
        self.base_lrs = state["base_lrs"]
        self._apply()


# The one hp key a method does not declare itself: train.py sets it from the run's
# top-level `warmup_epochs`, so every method's schedule gets the same warm-up.
WARMUP_KEY = "warmup_epochs"


def warmup_steps(hp, steps_per_epoch):
    return int(hp.get(WARMUP_KEY, 0)) * int(steps_per_epoch)
