"""MobileNet-V1 (Howard et al. 2017, Table 1) for ImageNet.

A 3x3 conv of stride 2 to 32 channels, then 13 depthwise-separable blocks (3x3 depthwise conv
+ BN + ReLU, 1x1 pointwise conv + BN + ReLU) up to 1024 channels, global average pooling and
one linear classifier. `width` is the paper's width multiplier α (every layer's channels,
rounded, at least 1). At α = 1 and 1000 classes: 4,231,976 parameters, 569M multiply-adds at
224x224 (the paper's Table 4: 4.2M, 569M). Init (the paper gives none): kaiming normal
(fan_out) convs, BN 1/0, linear N(0, 0.01) with zero bias, as torchvision's MobileNets.

`mobilenet_v1_str` is the same network as STR and LATS (paper B's code) build and initialize
theirs (RAIVNLab/STR models/mobilenetv1.py): every conv through `builder.conv2d`, which keeps
PyTorch's default init (kaiming_uniform_ with a = √5: U(−1/√fan_in, 1/√fan_in), std
1/√(3·fan_in)); BN PyTorch's default (γ = 1, β = 0); the classifier `builder.conv1x1(1024,
1000)`, a bias-free 1×1 conv that builder initializes Kaiming-normal fan-in (N(0, 2/fan_in),
their configs' `init: kaiming_normal, mode: fan_in`): here a bias-free Linear with that init
(the same function, gradient, weight count and init).
"""
import torch.nn as nn

INPUT_SHAPE = (3, 224, 224)

# (output channels, stride) of the 13 depthwise-separable blocks
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _w(c, width):
    return max(1, int(round(c * width)))


def _conv_bn(c_in, c_out, kernel, stride, groups=1):
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class MobileNetV1(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes=1000, width=1.0, in_channels=3, init="torchvision"):
        super().__init__()
        c = _w(32, width)
        layers = _conv_bn(in_channels, c, 3, 2)
        for c_out, stride in BLOCKS:
            c_out = _w(c_out, width)
            layers += _conv_bn(c, c, 3, stride, groups=c)     # depthwise
            layers += _conv_bn(c, c_out, 1, 1)                 # pointwise
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if init == "str":   # PyTorch's default init for the convs and BN, as constructed
            self.fc = nn.Linear(c, num_classes, bias=False)
            nn.init.kaiming_normal_(self.fc.weight, mode="fan_in", nonlinearity="relu")
            return
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def mobilenet_v1(num_classes=1000, width=1.0, in_channels=3):
    return MobileNetV1(num_classes, width, in_channels)


def mobilenet_v1_str(num_classes=1000, width=1.0, in_channels=3):
    """MobileNet-V1 as STR / LATS initialize it (module docstring)."""
    return MobileNetV1(num_classes, width, in_channels, init="str")
