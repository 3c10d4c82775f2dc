"""The method interface: everything that changes weights lives behind it.

train.py only calls zero_grad(), step() after each backward pass, end_epoch() after
each epoch, and state_dict()/load_state_dict() for checkpoints. A new method is one
file with one subclass and one registry line in optim/__init__.py.
"""
import torch
from torch import nn


def penalized_modules(model):
    """Conv and linear layers: the weights that sparsity is counted on and penalized."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# The sparsity types whose savings are structural (whole kernels or filters): compared on the
# multiply-adds slim export removes. Declared once; reporting/ reads it from here.
STRUCTURED_MODES = ("kernel", "channel")

def probe_shape(model, batch=1):
    """(batch, C, H, W) of a probe input for `model`: its `input_shape` (C, H, W), which
    models.get_model sets from the data set's registry entry. No guess: a guessed shape would
    count another image size's multiply-adds without a word."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no input_shape: build it with "
                         f"models.get_model(..., input_shape=data.get(DATASET).input_shape)")
    return (batch, *shape)


@torch.no_grad()
def probe(model, hooks, input_shape=None):
    """One forward pass of zeros in eval mode (running statistics untouched), then remove
    `hooks`: for hooks that record output shapes or which layer feeds which. The input is
    `input_shape` (N, C, H, W), by default one image of the model's own `input_shape`."""
    if input_shape is None:
        input_shape = probe_shape(model)
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def is_penalized(p):
    """Conv (4-D) and linear (2-D) weights; BatchNorm parameters and biases are 1-D."""
    return p.dim() in (2, 4)


class Method:
    name = ""
    # How the report shows the method and what it is in a comparison (the registry is the
    # one place a new method declares these): dense, reference (the paper's method),
    # baseline or ablation; a colour from the Okabe-Ito colour-blind-safe palette.
    label = ""
    role = "baseline"
    color = "#000000"
    marker = "o"
    # Display names of the profile entries that are variants of the method, by the entry's
    # name after "<method>_" (e.g. {"sine": "..."} for an entry soft_threshold_sine), where
    # "label (variant)" would misread; other variants read "label (variant)" (reporting/style.py).
    variants = {}
    # The method's `optim.*` keys with their defaults: any other key is a config error. Each
    # key's type, range, help and role (epochs, target, run-name tag) are declared once in
    # schema.OPTIM; a key only this method has is declared in `keys`: {name: dict of
    # schema.Key arguments}, e.g. {"prune_epoch": dict(type="int", range=">= 1", role="epochs")}.
    defaults = {}
    keys = {}
    # What the run is sparse in: dense, elementwise, kernel or channel.
    mode = "elementwise"
    # The revision of the method's behaviour: raised when a correction changes what a run of
    # the same config trains. config.config_hash hashes it where it is not 1, so a run of an
    # earlier revision is never taken for one of the current (other methods' hashes unchanged).
    revision = 1
    def __init__(self, model, hp, steps_per_epoch, epochs):
        self.model = model
        self.hp = hp
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.optimizer = None
        self.schedule = None

    @classmethod
    def validate(cls, hp):
        """Raise ValueError (one line) where keys that are each valid (schema.py checked them)
        do not go together; called before anything is built."""

    @classmethod
    def budget_factor(cls, key, old, new):
        """(factor, why): what a value of optim.`key` calibrated at budget `old` is multiplied
        by to give about the same sparsity at budget `new` (a λ search's start_from); each a
        dict {"hp": the optim keys, lr scaled, "steps": N, "lr_sum": Σ_{t≤N} lr_t}. Default 1,
        no scaling derived; docs/methods.md §7 gives each method's."""
        return 1.0, "no budget scaling derived"

    @classmethod
    def revision_of(cls, hp):
        """The revision of a run with `optim` keys `hp`: `revision`, unless a method revised one
        variant only (soft_threshold's sine schedule), so that the others keep their hashes."""
        return cls.revision

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)

    def step(self):
        """Called once per batch after loss.backward()."""
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()

    def end_epoch(self, epoch):
        """Called after each epoch (0-indexed); returns extra metrics.csv columns."""
        return {}

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict() if self.schedule is not None else None}

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])

    def export(self):
        """The weights as the forward pass uses them, under plain module keys. Callers only
        read it (load_state_dict and torch.save copy), so no copy is made here."""
        return self.model.state_dict()

    def summary(self):
        """Extra summary.json fields: the penalty for penalty-driven methods, target and
        achieved sparsity for target-driven ones."""
        return {"lam": float(self.hp.get("lam", 0.0))}


def split_decay(model, weight_decay):
    """One param group: the papers decay every tensor, BatchNorm and biases included."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]

