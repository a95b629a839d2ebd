"""Squeeze-and-Excitation networks: SE-ResNet-50/101/152, SE-ResNeXt-50/101 (32x4d) and SENet-154.

Paper: "Squeeze-and-Excitation Networks", Hu et al., CVPR 2018 / TPAMI 2019, https://arxiv.org/abs/1709.01507.
Laid out as the authors' Caffe models (https://github.com/hujie-frank/SENet) as ported by Cadene's
``pretrainedmodels``, whose parameter counts are the reference: each residual branch ends in an SE
gate (global pool, FC to C/16, ReLU, FC to C, sigmoid) that rescales the channels before the add.
The three variants differ only in the bottleneck's widths and where its stride sits:

- SE-ResNet: ResNet's bottleneck with the stride on the first 1x1 (the Caffe ResNets');
- SE-ResNeXt: ResNeXt's grouped bottleneck (32 x 4d), stride on the 3x3;
- SENet-154: a 64-group bottleneck twice as wide inside, a three-conv stem, 3x3 projection
  shortcuts and dropout before the classifier (the ILSVRC 2017 winner).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ._layers import init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1709.01507"
REDUCTION = 16


class SEGate(nn.Module):
    """Squeeze (global average) and excite (two FCs as 1x1 convs, with biases): a per-channel scale."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class Variant(NamedTuple):
    groups: int
    width_per_group: int  # the 3x3's width is planes * width_per_group / 64 * groups (ResNeXt's rule)
    stride_in_1x1: bool
    inner_first: int  # width of the first 1x1 relative to the 3x3's (SENet-154: half of it)
    stem: str  # "7x7": one 7x7/2 conv (64); "3x3": three 3x3 convs (64, 64, 128)
    shortcut_kernel: int
    dropout: float | None


class SEBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, v: Variant) -> None:
        super().__init__()
        width = math.floor(planes * v.width_per_group / 64) * v.groups
        first = width // v.inner_first
        s1, s3 = (stride, 1) if v.stride_in_1x1 else (1, stride)
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, first, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.conv2 = nn.Conv2d(first, width, 3, s3, 1, groups=v.groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEGate(out, REDUCTION)
        self.downsample = None
        if stride != 1 or in_channels != out:
            k = v.shortcut_kernel if stride > 1 else 1  # SENet-154's 3x3 shortcuts only where they downsample
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, k, stride, k // 2, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se_module(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


#   planes, stride (the block counts per stage are the variant's depth)
_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


class SENet(nn.Module):
    def __init__(self, v: Variant, depths: tuple[int, int, int, int], *, num_classes: int = 1000) -> None:
        super().__init__()
        if v.stem == "7x7":
            stem = [("conv1", nn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("bn1", nn.BatchNorm2d(64)),
                    ("relu1", nn.ReLU(inplace=True))]
            channels = 64
        else:  # three 3x3s see as far as one 7x7 with fewer weights and two more non-linearities
            stem, c_in = [], 3
            for i, (c, s) in enumerate(((64, 2), (64, 1), (128, 1)), start=1):
                stem += [(f"conv{i}", nn.Conv2d(c_in, c, 3, s, 1, bias=False)), (f"bn{i}", nn.BatchNorm2d(c)),
                         (f"relu{i}", nn.ReLU(inplace=True))]
                c_in = c
            channels = 128
        # Caffe's pooling rounds up (ceil_mode) instead of padding: the same 56x56 at 224 px.
        self.layer0 = nn.Sequential(OrderedDict(stem + [("pool", nn.MaxPool2d(3, 2, ceil_mode=True))]))
        for i, ((planes, stride), depth) in enumerate(zip(_STAGES, depths), start=1):
            blocks = []
            for j in range(depth):
                blocks.append(SEBottleneck(channels, planes, stride if j == 0 else 1, v))
                channels = planes * SEBottleneck.expansion
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(v.dropout) if v.dropout else nn.Identity()
        self.last_linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        return self.last_linear(self.dropout(torch.flatten(self.avg_pool(x), 1)))


_SE_RESNET = Variant(groups=1, width_per_group=64, stride_in_1x1=True, inner_first=1, stem="7x7",
                     shortcut_kernel=1, dropout=None)
_SE_RESNEXT = Variant(groups=32, width_per_group=4, stride_in_1x1=False, inner_first=1, stem="7x7",
                      shortcut_kernel=1, dropout=None)
_SENET154 = Variant(groups=64, width_per_group=4, stride_in_1x1=False, inner_first=2, stem="3x3",
                    shortcut_kernel=3, dropout=0.2)


def _senet(v: Variant, depths: tuple[int, int, int, int], *, num_classes: int) -> SENet:
    model = SENet(v, depths, num_classes=num_classes)
    init_conv_bn_linear(model)
    return model


def _spec(params: int, reference: str, gmacs: float | None, top1_err: float, top5_err: float,
          table: str, note: str = "") -> dict[str, Any]:
    return dict(family="senet", paper=PAPER, min_resolution=1, published=Published(
        params=params, kind="reference",
        source=f"Cadene pretrainedmodels {reference} (port of the authors' Caffe model)",
        paper=Published(macs=gmacs * 1e9 if gmacs else None, top1=round(100 - top1_err, 2),
                        top5=round(100 - top5_err, 2), note=note,
                        source=f"Hu et al. 2018, {table} (224 px single crop; GFLOPs = multiply-adds)")))


@register_model(**_spec(28088024, "se_resnet50", 3.87, 23.29, 6.62, "Table 2"))
def se_resnet50(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SE_RESNET, (3, 4, 6, 3), num_classes=num_classes)


@register_model(**_spec(49326872, "se_resnet101", 7.60, 22.38, 6.07, "Table 2"))
def se_resnet101(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SE_RESNET, (3, 4, 23, 3), num_classes=num_classes)


@register_model(**_spec(66821848, "se_resnet152", 11.32, 21.57, 5.73, "Table 2"))
def se_resnet152(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SE_RESNET, (3, 8, 36, 3), num_classes=num_classes)


@register_model(**_spec(27559896, "se_resnext50_32x4d", 4.25, 20.97, 5.54, "Table 2"))
def se_resnext50_32x4d(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SE_RESNEXT, (3, 4, 6, 3), num_classes=num_classes)


@register_model(**_spec(48955416, "se_resnext101_32x4d", 8.00, 20.70, 5.01, "Table 2"))
def se_resnext101_32x4d(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SE_RESNEXT, (3, 4, 23, 3), num_classes=num_classes)


@register_model(**_spec(115088984, "senet154", None, 18.68, 4.47, "Table 8 (ILSVRC 2017 entry, 224 crop)"))
def senet154(*, num_classes: int = 1000) -> nn.Module:
    return _senet(_SENET154, (3, 8, 36, 3), num_classes=num_classes)
