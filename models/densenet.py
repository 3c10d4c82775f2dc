"""DenseNet-40 and DenseNet-BC-100 for CIFAR, as in the network-slimming code.

Pre-activation layers (BN-ReLU-conv) whose outputs are concatenated onto their input;
transitions halve the resolution so three blocks take 32x32 down to 8x8.
"""
import math

import torch
import torch.nn as nn


def _w(c, width):
    return max(1, int(round(c * width)))


def _bn_relu_conv(c_in, c_out, k):
    return [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)]


class DenseLayer(nn.Module):
    def __init__(self, c_in, growth, bottleneck):
        super().__init__()
        if bottleneck:  # 1x1 to 4*growth first keeps the 3x3 conv cheap as c_in grows
            layers = _bn_relu_conv(c_in, 4 * growth, 1) + _bn_relu_conv(4 * growth, growth, 3)
        else:
            layers = _bn_relu_conv(c_in, growth, 3)
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    def __init__(self, depth, growth=12, bottleneck=False, compression=1.0,
                 num_classes=10, width=1.0, in_channels=3):
        super().__init__()
        # Each bottleneck layer holds two convs, hence the extra factor 2.
        n = (depth - 4) // (6 if bottleneck else 3)
        g = _w(growth, width)
        c = _w(2 * growth, width)
        layers = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        for i in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, g, bottleneck))
                c += g
            if i < 2:
                c_out = max(1, int(math.floor(c * compression)))
                layers += _bn_relu_conv(c, c_out, 1) + [nn.AvgPool2d(2)]
                c = c_out
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)]   # 8x8 at 32x32
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            # Network-slimming init: fan-out conv init, gamma = 0.5; the Linear keeps
            # PyTorch's default, as there.
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def densenet40(num_classes=10, width=1.0, in_channels=3):
    return DenseNet(40, 12, bottleneck=False, compression=1.0,
                    num_classes=num_classes, width=width, in_channels=in_channels)


def densenet_bc100(num_classes=10, width=1.0, in_channels=3):
    return DenseNet(100, 12, bottleneck=True, compression=0.5,
                    num_classes=num_classes, width=width, in_channels=in_channels)
