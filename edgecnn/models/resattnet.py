"""Residual Attention Network: Attention-56 and Attention-92.

Paper: "Residual Attention Network for Image Classification", Wang et al., CVPR 2017,
https://arxiv.org/abs/1704.06904. A ResNet of pre-activation bottlenecks in which attention
modules follow the first unit of each of the first three stages (Table 2: one per stage for
Attention-56, 1-2-3 for Attention-92). A module (Fig. 2, p=1, t=2, r=1) runs one unit, then a trunk
of two units beside a soft-mask branch: an hourglass that max-pools down to 7x7 (three times in
stage 1, twice in stage 2, once in stage 3) with one unit per level, climbs back by bilinear
up-sampling with a residual-unit skip connection added at each level, adds the trunk, and ends in
BN-ReLU-1x1 twice and a sigmoid. The module returns (1 + mask) x trunk ("attention residual
learning", Eq. 3), then one more unit. Units are :class:`.preact_resnet.PreActBottleneck`.
Parameter reference: pytorchcv's ``resattnet56`` / ``resattnet92``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._layers import init_conv_bn_linear
from ._spec import Published, register_model
from .preact_resnet import PreActBottleneck

PAPER = "https://arxiv.org/abs/1704.06904"


def _unit(in_channels: int, out_channels: int, stride: int = 1) -> PreActBottleneck:
    return PreActBottleneck(in_channels, out_channels // PreActBottleneck.expansion, stride, preact=True)


class AttentionModule(nn.Module):
    def __init__(self, channels: int, levels: int, p: int = 1, t: int = 2, r: int = 1) -> None:
        super().__init__()
        self.first = nn.Sequential(*[_unit(channels, channels) for _ in range(p)])
        self.trunk = nn.Sequential(*[_unit(channels, channels) for _ in range(t)])
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(3, 2, 1), *[_unit(channels, channels) for _ in range(r)])
                                  for _ in range(levels))
        self.up = nn.ModuleList(nn.Sequential(*[_unit(channels, channels) for _ in range(r)]) for _ in range(levels))
        self.skips = nn.ModuleList(_unit(channels, channels) for _ in range(levels - 1))
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.last = _unit(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        trunk = self.trunk(x)
        levels = [x]
        for down in self.down:
            levels.append(down(levels[-1]))
        m = levels.pop()
        for i in reversed(range(len(self.up))):
            # Up-sample to the level above (its exact size: odd sizes round up on the way down).
            m = F.interpolate(self.up[i](m), size=levels[i].shape[-2:], mode="bilinear", align_corners=True)
            m = m + (self.skips[i - 1](levels[i]) if i > 0 else trunk)
        return self.last((1 + self.mask_head(m)) * trunk)


#   channels per stage; stage i (0-based) has an hourglass of 3 - i levels
_WIDTHS = (256, 512, 1024, 2048)


class ResidualAttentionNet(nn.Module):
    def __init__(self, modules_per_stage: tuple[int, int, int], *, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        stages, c = [], 64
        for i, width in enumerate(_WIDTHS):
            blocks: list[nn.Module] = [_unit(c, width, 1 if i == 0 else 2)]
            if i < 3:
                blocks += [AttentionModule(width, 3 - i) for _ in range(modules_per_stage[i])]
            else:
                blocks += [_unit(width, width) for _ in range(2)]
            stages.append(nn.Sequential(*blocks))
            c = width
        self.stages = nn.Sequential(*stages)
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post(self.stages(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _spec(params: int, reference: str, paper: Published, others: tuple[Published, ...] = ()) -> dict[str, Any]:
    return dict(family="resattnet", paper=PAPER, min_resolution=32, published=Published(
        params=params, kind="reference", source=f"pytorchcv {reference}", paper=paper, others=others))


_TABLE6 = "Wang et al. 2017, Table 6 (224 px single crop; FLOPs = multiply-adds)"


_FLOPS = "the paper does not say what its FLOPs cover; every convolution and the classifier count here (+1.1-1.3%)"


@register_model(**_spec(31810728, "resattnet56", Published(params=31_900_000, macs=6.2e9, top1=78.24, top5=94.1,
                                                          source=_TABLE6, note=_FLOPS)))
def resattnet56(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    model = ResidualAttentionNet((1, 1, 1), num_classes=num_classes, **options)
    init_conv_bn_linear(model)
    return model


# Attention-92's errors in Table 6 (19.5% / 4.8%) are at a 320 px test crop, its parameters and FLOPs at 224 px; the
# authors' README and the lecture's SENet table (its 320 x 320 / 299 x 299 column) quote them at 320 too.
_ATTENTION92_320 = Published(top1=80.5, top5=95.2, resolution=320, source="Wang et al. 2017, Table 6 (320 px single "
                             "crop, 19.5% / 4.8% error); the same in the lecture's SENet table (320 px column)")


@register_model(**_spec(52466344, "resattnet92", Published(
    params=51_300_000, macs=10.4e9, source="Wang et al. 2017, Table 6 (parameters; FLOPs = multiply-adds at 224 px)",
    note="built as Attention-56's modules repeated 1-2-3 times, as the reference port: the paper's 51.3M is "
         "1.2M (about one 1024-wide unit) less, a difference its text does not explain; " + _FLOPS),
    others=(_ATTENTION92_320,)))
def resattnet92(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    model = ResidualAttentionNet((1, 2, 3), num_classes=num_classes, **options)
    init_conv_bn_linear(model)
    return model
