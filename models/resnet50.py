"""ResNet-50 for ImageNet (He et al. 2016): torchvision's architecture, random init.

width 1 is torchvision.models.resnet50 itself (25,557,032 parameters at 1000 classes). Other
widths scale every stage's planes (stem 64, stages 64/128/256/512, bottleneck expansion 4)
by `width`, built with torchvision's own Bottleneck, _make_layer, forward and init; at
width 1 that build is the same network, module for module (tests/models/test_models.py checks it).

`resnet50_str` is the same network initialized as STR and LATS (paper B's code, built on
STR) initialize theirs: RAIVNLab/STR utils/builder.py with its ImageNet configs' `init:
kaiming_normal, mode: fan_in, nonlinearity: relu`, i.e. every conv N(0, 2 / fan_in); the
classifier bias-free with the same init (theirs is a bias-free 1×1 conv on the pooled 1×1
features, `builder.conv1x1`: the same function, gradient, weight count and init as the
bias-free Linear used here, whose weight is that conv's [out, in] matrix); BatchNorm γ = 1,
β = 0 (their LearnedBatchNorm is nn.BatchNorm2d; no zero-init of the last BN of a block).
The bias matters for a soft threshold shared by every layer: theirs has none to escape it.
"""
import torch.nn as nn
from torchvision.models import resnet as tv

INPUT_SHAPE = (3, 224, 224)


def _w(c, width):
    return max(1, int(round(c * width)))


class ScaledResNet50(tv.ResNet):
    """torchvision's ResNet with Bottleneck blocks [3, 4, 6, 3] and planes scaled by width."""

    def __init__(self, num_classes=1000, width=1.0):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = _w(64, width), 1, 1, 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [_w(p, width) for p in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(tv.Bottleneck, planes[0], 3)
        self.layer2 = self._make_layer(tv.Bottleneck, planes[1], 4, stride=2)
        self.layer3 = self._make_layer(tv.Bottleneck, planes[2], 6, stride=2)
        self.layer4 = self._make_layer(tv.Bottleneck, planes[3], 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * tv.Bottleneck.expansion, num_classes)
        for m in self.modules():   # torchvision's init (zero_init_residual=False)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def resnet50(num_classes=1000, width=1.0, in_channels=3):
    m = tv.resnet50(weights=None, num_classes=num_classes) if width == 1 else ScaledResNet50(num_classes, width)
    if in_channels != 3:   # another stem input, initialized as torchvision initializes it
        m.conv1 = nn.Conv2d(in_channels, m.conv1.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    m.input_shape = INPUT_SHAPE
    return m


def resnet50_str(num_classes=1000, width=1.0, in_channels=3):
    """ResNet-50 as STR / LATS initialize it (module docstring): Kaiming-normal fan-in convs
    and a bias-free Kaiming-normal fan-in classifier (num_classes parameters fewer than
    resnet50's)."""
    m = resnet50(num_classes, width, in_channels)
    m.fc = nn.Linear(m.fc.in_features, num_classes, bias=False)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
    return m
