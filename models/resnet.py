"""CIFAR ResNets: He et al.'s 6n+2 family with option-A shortcuts, and ResNet-18.

ResNet-20..110 follow akamaster/pytorch_resnet_cifar10: the shortcut is parameter-free
(subsample + zero channels), so every weight in these nets is a conv/linear we can prune.
ResNet-18 is the ImageNet design with a CIFAR stem (kuangliu/pytorch-cifar).
"""
import torch.nn as nn
import torch.nn.functional as F


def _w(c, width):
    return max(1, int(round(c * width)))


class ShortcutA(nn.Module):
    """Stride-2 subsampling and zero-padded channels: no parameters."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        # Pad the extra channels on both sides, as akamaster does (planes // 4 each side
        # there); at odd widths the split is uneven, which is harmless.
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif option == "A":
            self.shortcut = ShortcutA(c_in, c_out, stride)
        else:  # option B: 1x1 projection, used by ResNet-18
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks, channels, num_classes=10, width=1.0, option="A", in_channels=3):
        super().__init__()
        chans = [_w(c, width) for c in channels]
        c = chans[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        layers = []
        for i, (n, c_out) in enumerate(zip(blocks, chans)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(c, c_out, stride, option))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            # akamaster's init: kaiming_normal_ defaults (fan_in, gain sqrt(2)) on convs
            # and the linear; biases and BN keep PyTorch's defaults (bias U(.), gamma 1).
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def _cifar(depth, num_classes, width, in_channels=3):
    assert (depth - 2) % 6 == 0
    n = (depth - 2) // 6
    return ResNet([n] * 3, [16, 32, 64], num_classes, width, option="A", in_channels=in_channels)


def resnet20(num_classes=10, width=1.0, in_channels=3):
    return _cifar(20, num_classes, width, in_channels)


def resnet32(num_classes=10, width=1.0, in_channels=3):
    return _cifar(32, num_classes, width, in_channels)


def resnet44(num_classes=10, width=1.0, in_channels=3):
    return _cifar(44, num_classes, width, in_channels)


def resnet56(num_classes=10, width=1.0, in_channels=3):
    return _cifar(56, num_classes, width, in_channels)


def resnet110(num_classes=10, width=1.0, in_channels=3):
    return _cifar(110, num_classes, width, in_channels)


def resnet18(num_classes=10, width=1.0, in_channels=3):
    return ResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, width, option="B",
                  in_channels=in_channels)
