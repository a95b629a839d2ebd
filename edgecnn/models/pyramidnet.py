"""PyramidNet for ImageNet: the 200-layer bottleneck network with widening factor alpha = 300 and 450.

Paper: "Deep Pyramidal Residual Networks", Han, Kim & Kim, CVPR 2017, https://arxiv.org/abs/1610.02915.
Instead of doubling the width at each downsampling, every residual unit widens by alpha / N
(N = number of units), so the width grows linearly from 64 to 64 + alpha across the network
("additive" pyramid, Eq. 2). Units are pre-activation bottlenecks with an extra BN after the last
conv and no ReLU before the first conv (Fig. 6(d)); the shortcut is the identity, zero-padded in
the channels the unit adds (Fig. 5, "zero-padded shortcut"), and a 2x2 average pool where the unit
downsamples. Follows the authors' implementation (https://github.com/jhkim89/PyramidNet-PyTorch),
whose widths are rounded to the nearest integer per unit.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._layers import init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1610.02915"


class PyramidBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        # BN - 1x1 - BN-ReLU - 3x3 - BN-ReLU - 1x1 - BN: no ReLU on the unit's input (Sec. 3.2).
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, planes, 1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.downsample = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else None
        self.extra = out - in_channels  # channels the shortcut gets as zeros

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return self.body(x) + shortcut


class PyramidNet(nn.Module):
    def __init__(self, depths: tuple[int, int, int, int], alpha: float, *, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        add = alpha / sum(depths)
        width, channels, units = 64.0, 64, []
        for i, n in enumerate(depths):
            for j in range(n):
                width += add
                units.append(PyramidBottleneck(channels, int(round(width)), 2 if (j == 0 and i > 0) else 1))
                channels = int(round(width)) * PyramidBottleneck.expansion
        self.units = nn.Sequential(*units)
        self.post = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post(self.units(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    family="pyramidnet",
    paper=PAPER,
    min_resolution=1,
    published=Published(params=62_100_000, top1=79.5, top5=94.7,
                        source="Han et al. 2017, Table 5 (PyramidNet-200, alpha=300; 224 px single crop)"),
)
def pyramidnet200_a300(*, num_classes: int = 1000, depths: tuple[int, int, int, int] = (3, 24, 36, 3),
                       alpha: float = 300, **options: Any) -> nn.Module:
    """The paper's ImageNet net; ``depths`` (units per stage) and ``alpha`` build the other members of the
    family from the same units (``--model-arg depths=(3,4,23,3) --model-arg alpha=250``)."""
    return _pyramidnet(depths, alpha, num_classes=num_classes, **options)


def _pyramidnet(depths: tuple[int, int, int, int], alpha: float, *, num_classes: int, **options: Any) -> nn.Module:
    model = PyramidNet(tuple(depths), alpha, num_classes=num_classes, **options)
    init_conv_bn_linear(model)
    return model


# The network the lecture's SENet table quotes as "PyramidNet-200" (20.1 / 5.4 at 224 px, 19.2 / 4.7 at 320 px).
_A450 = "Han et al. 2017, Table 5 (PyramidNet-200, alpha=450"


@register_model(
    family="pyramidnet",
    paper=PAPER,
    min_resolution=1,
    published=Published(params=116_400_000, top1=79.9, top5=94.6, source=_A450 + "; 224 px single crop)",
                        others=(Published(top1=80.8, top5=95.3, resolution=320, source=_A450 + "; 320 px single "
                                          "crop); the same in the lecture's SENet table (320 px column)"),)),
)
def pyramidnet200_a450(*, num_classes: int = 1000, depths: tuple[int, int, int, int] = (3, 24, 36, 3),
                       alpha: float = 450, **options: Any) -> nn.Module:
    return _pyramidnet(depths, alpha, num_classes=num_classes, **options)
