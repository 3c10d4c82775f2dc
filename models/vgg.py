"""VGG-BN for CIFAR as in the network-slimming code (docs/methods.md §4).

Four max-pools, not five: a 32x32 input is 2x2 after four, and the global average pool
(2x2 there; 1x1 for a 28x28 input) then gives one 512-vector, so a single Linear replaces ImageNet's three FC layers.
"""
import math

import torch.nn as nn

CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512],
}


def _w(c, width):
    return max(1, int(round(c * width)))


class VGG(nn.Module):
    def __init__(self, depth, num_classes=10, width=1.0, in_channels=3):
        super().__init__()
        layers, c_in = [], in_channels
        for v in CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                c = _w(v, width)
                # No conv bias: BatchNorm's beta follows and would make it redundant.
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # docs/methods.md §4: fan-in and gamma = 1 for VGG (network-slimming's
                # vgg.py used fan-out and gamma = 0.5; the paper's models use fan-in).
                k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def vgg11(num_classes=10, width=1.0, in_channels=3):
    return VGG(11, num_classes, width, in_channels)


def vgg13(num_classes=10, width=1.0, in_channels=3):
    return VGG(13, num_classes, width, in_channels)


def vgg16(num_classes=10, width=1.0, in_channels=3):
    return VGG(16, num_classes, width, in_channels)


def vgg19(num_classes=10, width=1.0, in_channels=3):
    return VGG(19, num_classes, width, in_channels)
