"""BN-Inception ("Inception v2" of the batch-normalisation paper).

Paper: "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
Shift", Ioffe & Szegedy, ICML 2015, https://arxiv.org/abs/1502.03167. Its Fig. 5 is GoogLeNet
with every 5x5 replaced by two stacked 3x3s, BatchNorm after every convolution, the 28x28 and
14x14 grids each ending in a stride-2 module (3c, 4e) that concatenates a max-pool instead of a
pooling layer, and average pooling in most modules' pool branch. Laid out as the Caffe model
of the paper's authors' follow-up work (ported to PyTorch as pytorchcv's / Cadene's
``bninception``, the parameter reference): convolutions keep their biases, Caffe's pools round up.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import Published, register_model
from .inception_v4 import Mixed

PAPER = "https://arxiv.org/abs/1502.03167"


class ConvBNReLU(nn.Module):
    """conv (with bias, as the Caffe model) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _c(out, k=1, s=1, p=0) -> tuple:
    return (out, k, s, p)


def _module(c1: int, r3: int, c3: int, rd: int, cd: int, pool: str, proj: int) -> list:
    """A Fig. 5 row: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool + proj."""
    return [[_c(c1)], [_c(r3), _c(c3, 3, 1, 1)], [_c(rd), _c(cd, 3, 1, 1), _c(cd, 3, 1, 1)], [pool, _c(proj)]]


def _reduction(r3: int, c3: int, rd: int, cd: int) -> list:
    """A stride-2 row: no 1x1 branch, the second 3x3s strided, a max-pool passed through."""
    return [[_c(r3), _c(c3, 3, 2, 1)], [_c(rd), _c(cd, 3, 1, 1), _c(cd, 3, 2, 1)], ["maxc"]]


_STEM = [[_c(64, 7, 2, 3), "maxc", _c(64), _c(192, 3, 1, 1), "maxc"]]
# Fig. 5, in order (the stem above: 7x7/2 conv, pool, 1x1 + 3x3 conv, pool).
_PLAN = [
    _STEM,
    _module(64, 64, 64, 64, 96, "avg", 32),  # 3a
    _module(64, 64, 96, 64, 96, "avg", 64),  # 3b
    _reduction(128, 160, 64, 96),  # 3c
    _module(224, 64, 96, 96, 128, "avg", 128),  # 4a
    _module(192, 96, 128, 96, 128, "avg", 128),  # 4b
    _module(160, 128, 160, 128, 160, "avg", 128),  # 4c
    _module(96, 128, 192, 160, 192, "avg", 128),  # 4d
    _reduction(128, 192, 192, 256),  # 4e
    _module(352, 192, 320, 160, 224, "avg", 128),  # 5a
    _module(352, 192, 320, 192, 224, "max1", 128),  # 5b
]


class BNInception(nn.Module):
    def __init__(self, *, num_classes: int = 1000) -> None:
        super().__init__()
        blocks, c = [], 3
        for table in _PLAN:
            blocks.append(Mixed(c, table, conv=ConvBNReLU))
            c = blocks[-1].out_channels
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(
    family="bn_inception",
    paper=PAPER,
    min_resolution=31,
    published=Published(
        params=11295240, kind="reference", source="pytorchcv bninception (port of the Caffe model)",
        paper=Published(top1=74.8, source="Ioffe & Szegedy 2015, Table 2 (BN-x30, single crop 224)"),
    ),
)
def bn_inception(*, num_classes: int = 1000) -> nn.Module:
    model = BNInception(num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model
