"""Dense baseline: momentum SGD with weight decay on every tensor."""
import torch

from .base import Method, split_decay
from .schedules import Schedule, warmup_steps


class SGD(Method):
    name = "sgd"
    label, role, color, marker = "dense SGD", "dense", "#000000", "."
    mode = "dense"
    defaults = {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
                "schedule": "cosine", "milestones": [], "gamma": 0.1}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.optimizer = torch.optim.SGD(split_decay(model, hp["weight_decay"]), lr=hp["lr"],
                                         momentum=hp["momentum"], nesterov=hp["nesterov"],
                                         foreach=True)
        self.schedule = Schedule(self.optimizer, hp["schedule"], steps_per_epoch * epochs,
                                 steps_per_epoch, hp["milestones"], hp["gamma"],
                                 warmup_steps=warmup_steps(hp, steps_per_epoch))

    @classmethod
    def validate(cls, hp):
        if hp["nesterov"] and hp["momentum"] <= 0:
            raise ValueError("optim.nesterov needs optim.momentum > 0")
