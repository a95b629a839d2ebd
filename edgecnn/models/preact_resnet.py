"""Pre-activation ResNet ("ResNet v2"): BN-ReLU-conv order, clean identity shortcuts; 18 to 200 layers.

Paper: "Identity Mappings in Deep Residual Networks", He et al., ECCV 2016, https://arxiv.org/abs/1603.05027.
Each residual unit normalises and activates its *input* (Fig. 1b, "full pre-activation"), so the
shortcut carries the raw sum from block to block and nothing sits on the identity path; the
network therefore ends with one more BN-ReLU before pooling. Where a unit changes shape, the
projection shortcut reads the pre-activated input (as the authors' code does), and the stride sits
on the 3x3 (fb.resnet.torch, which the paper's ImageNet models were trained with). The stem is the
ResNet one (conv-BN-ReLU-pool), so the very first unit skips its own pre-activation.

The paper reports ImageNet results for 152 and 200 layers only; the shallower depths are the same
units on ResNet's stage layout (Table 1 of He et al. 2016a). Parameter reference: pytorchcv's
``preresnet*`` (which also pre-activates the first unit: 128 parameters more).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._layers import init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1603.05027"


class PreActBlock(nn.Module):
    """Two 3x3 convolutions, each preceded by BN-ReLU (18 and 34 layers)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, preact: bool) -> None:
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = _projection(in_channels, planes * self.expansion, stride)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn2(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.preact(x)
        # The projection reads the pre-activated input; an identity shortcut carries x untouched.
        identity = x if self.shortcut is None else self.shortcut(pre)
        return self.residual(pre) + identity


class PreActBottleneck(PreActBlock):
    """BN-ReLU-1x1, BN-ReLU-3x3 (strided), BN-ReLU-1x1 to 4x (50 layers and deeper)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, preact: bool) -> None:
        nn.Module.__init__(self)
        self.preact = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(in_channels, planes * self.expansion, stride)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.relu(self.bn2(self.conv1(x))))
        return self.conv3(self.relu(self.bn3(x)))


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)  # no BN: the next unit normalises


#   planes, stride (block counts per stage are the depth's)
_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
_DEPTHS = {18: (PreActBlock, (2, 2, 2, 2)), 34: (PreActBlock, (3, 4, 6, 3)), 50: (PreActBottleneck, (3, 4, 6, 3)),
           101: (PreActBottleneck, (3, 4, 23, 3)), 152: (PreActBottleneck, (3, 8, 36, 3)),
           200: (PreActBottleneck, (3, 24, 36, 3))}


class PreActResNet(nn.Module):
    def __init__(self, depth: int, *, num_classes: int = 1000) -> None:
        super().__init__()
        block, depths = _DEPTHS[depth]
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        channels, first = 64, True
        for i, ((planes, stride), n) in enumerate(zip(_STAGES, depths), start=1):
            units = []
            for j in range(n):
                units.append(block(channels, planes, stride if j == 0 else 1, preact=not first))
                channels, first = planes * block.expansion, False
            self.add_module(f"layer{i}", nn.Sequential(*units))
        # The last unit's sum is un-normalised: one more BN-ReLU closes the network.
        self.post = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(self.post(x)), 1))


def _preact_resnet(depth: int, *, num_classes: int) -> PreActResNet:
    model = PreActResNet(depth, num_classes=num_classes)
    init_conv_bn_linear(model)
    return model


def _spec(depth: int, params: int, paper: Published | None = None) -> dict[str, Any]:
    paper = paper or Published(source="He et al. 2016 (ECCV) reports ImageNet results for 152 and 200 layers only")
    return dict(family="preact_resnet", paper=PAPER, min_resolution=1, published=Published(
        params=params, kind="reference", paper=paper,
        source=f"pytorchcv preresnet{depth} (its first unit is pre-activated too: 128 parameters more)"))


# Table 5 of the paper: ImageNet 1-crop validation error, trained on 224 px crops, tested on 320 px. Its pre-activation
# ResNet-152 row is trained with scale augmentation only; the ResNet-200 row quoted here adds aspect-ratio augmentation
# (with scale only, ResNet-200 reaches 20.7% / 5.3%).
_TABLE5 = "He et al. 2016 (ECCV), Table 5 (1-crop validation error; the shallower depths have no ImageNet result)"


@register_model(**_spec(18, 11687848))
def preact_resnet18(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(18, num_classes=num_classes)


@register_model(**_spec(34, 21796008))
def preact_resnet34(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(34, num_classes=num_classes)


@register_model(**_spec(50, 25549480))
def preact_resnet50(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(50, num_classes=num_classes)


@register_model(**_spec(101, 44541608))
def preact_resnet101(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(101, num_classes=num_classes)


@register_model(**_spec(152, 60185256, Published(top1=78.9, top5=94.5, resolution=320, source=_TABLE5 + ", 320 crop, scale augmentation only")))
def preact_resnet152(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(152, num_classes=num_classes)


@register_model(**_spec(200, 64666280, Published(top1=79.9, top5=95.2, resolution=320, source=_TABLE5 + ", 320 crop, scale + aspect-ratio augmentation")))
def preact_resnet200(*, num_classes: int = 1000) -> nn.Module:
    return _preact_resnet(200, num_classes=num_classes)


# ---- Wide ResNet on CIFAR (Zagoruyko & Komodakis 2016, https://arxiv.org/abs/1605.07146) --------------
# WRN-d-k: a 3x3 16-channel stem, then three groups of (d - 4) / 6 pre-activation basic blocks of widths 16k, 32k,
# 64k at 32, 16 and 8 px, a final BN-ReLU, global average pool and the classifier (the paper's Table 1). The stem
# has no BN-ReLU of its own, so the first unit pre-activates too. Dropout between the two convs is the paper's
# option (WRN-28-10-dropout); the figures held to are those without it.
_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class WideResNetCIFAR(nn.Module):
    def __init__(self, depth: int, widen: int, *, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a CIFAR Wide ResNet's depth is 6n + 4, got {depth}")
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        channels, n = 16, (depth - 4) // 6
        for i, (width, stride) in enumerate(((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)), start=1):
            units = [PreActBlock(channels if j == 0 else width, width, stride if j == 0 else 1, preact=True)
                     for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*units))
            channels = width
        self.post = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(self.post(x)), 1))


@register_model(family="wide_resnet", paper="https://arxiv.org/abs/1605.07146", resolution=32, min_resolution=4,
                num_classes=10, mean=_CIFAR_MEAN, std=_CIFAR_STD, crop_pct=1.0, published=Published(
                    params=36_500_000, resolution=32,
                    source="Zagoruyko & Komodakis 2016, CIFAR comparison table (WRN-28-10, 36.5M parameters; test "
                           "error 4.17% on CIFAR-10, 20.50% on CIFAR-100: not an ImageNet top-1, so not in that column)"))
def wrn28_10(*, num_classes: int = 10) -> nn.Module:
    model = WideResNetCIFAR(28, 10, num_classes=num_classes)
    init_conv_bn_linear(model)
    return model
