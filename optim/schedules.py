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

    t = 1..N counts optimizer steps (N = total_steps); epoch index of step t is
    (t - 1) // steps_per_epoch, so milestone m changes the values from the first step of
    epoch m on, after m epochs. The authors' step schedule halves at the end of epoch
    index 60, 100, ..., 420 (`if epoch in [60, ...]` after training that epoch): that is
    milestones [61, 101, ..., 421] here. With avg=None the schedule never touches a.
    """

    def __init__(self, optimizer, kind, total_steps, steps_per_epoch, milestones=(), gamma=0.1,
                 avg=None):
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
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.t = 1
        self._apply()

    def factor(self, t):
        if self.kind == "cosine":
            return (1 + math.cos(math.pi * t / self.total_steps)) / 2
        if self.kind == "step":
            return self.gamma ** self._passed(t)
        return 1.0

    def avg(self, t):
        if self.kind == "cosine":
            return (1 - math.cos(math.pi * t / self.total_steps)) / 2
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
