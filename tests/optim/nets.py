"""The small conv net and one training step that the method tests share."""
import torch
from torch import nn


def tiny_model():
    """conv 3→8 (3x3), BN, ReLU, pool, linear 8→5; seeded, channels_last as the training loop."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 5))
    return m.to(memory_format=torch.channels_last)


def layers(model):
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


def one_step(model, method, seed=0):
    """One step of the method on the loss sum(out²) of a seeded batch of six 8x8 images."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, 8, 8, generator=g).to(memory_format=torch.channels_last)
    method.zero_grad()
    model(x).square().sum().backward()
    method.step()
