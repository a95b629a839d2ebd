"""Dual Path Networks: DPN-68, DPN-92, DPN-98, DPN-107, DPN-131.

Paper: "Dual Path Networks", Chen et al., NeurIPS 2017, https://arxiv.org/abs/1707.01629. Each block
is a ResNeXt bottleneck (1x1, grouped 3x3, 1x1) whose output splits in two: the first ``width``
channels are *added* to a residual path (feature re-use, as ResNet), the last ``inc`` channels are
*concatenated* to a densely growing path (new features, as DenseNet). Pre-activation order
(BN-ReLU-conv) throughout; the first block of a stage projects both paths with a 1x1 (strided where
the stage downsamples). Laid out as the authors' MXNet models (https://github.com/cypw/DPNs) as
ported to timm, whose parameter counts are the reference; the classifier is a 1x1 convolution.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1707.01629"


class BnActConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.BatchNorm2d(in_channels, eps=0.001), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False))


class DualPathBlock(nn.Module):
    def __init__(self, in_channels: int, mid: int, width: int, inc: int, groups: int, project: bool, stride: int):
        super().__init__()
        self.width = width
        self.project = BnActConv(in_channels, width + 2 * inc, 1, stride) if project else None
        self.body = nn.Sequential(BnActConv(in_channels, mid, 1), BnActConv(mid, mid, 3, stride, groups),
                                  BnActConv(mid, width + inc, 1))

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = torch.cat(x, 1) if isinstance(x, tuple) else x  # the first block reads the stem's plain tensor
        if self.project is not None:
            s = self.project(x_in)
            resid, dense = s[:, :self.width], s[:, self.width:]
        else:
            resid, dense = x
        out = self.body(x_in)
        return resid + out[:, :self.width], torch.cat([dense, out[:, self.width:]], 1)


class Variant(NamedTuple):
    stem: int  # channels of the stem conv (DPN-68: a 3x3, the others a 7x7)
    k_r: int  # width of the grouped 3x3 in the first stage, x2 per stage
    groups: int
    depths: tuple[int, int, int, int]
    incs: tuple[int, int, int, int]  # channels each block adds to the dense path, per stage
    small: bool  # DPN-68: 3x3 stem and a quarter of the residual width


class DPN(nn.Module):
    def __init__(self, v: Variant, *, num_classes: int = 1000) -> None:
        super().__init__()
        k = 3 if v.small else 7
        self.stem = nn.Sequential(nn.Conv2d(3, v.stem, k, 2, k // 2, bias=False), nn.BatchNorm2d(v.stem, eps=0.001),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        bw_factor = 1 if v.small else 4
        blocks, c = [], v.stem
        for i, (depth, inc) in enumerate(zip(v.depths, v.incs)):
            width = 64 * 2**i * bw_factor  # residual path width
            mid = v.k_r * 2**i  # the grouped 3x3's width
            for j in range(depth):
                blocks.append(DualPathBlock(c, mid, width, inc, v.groups, project=j == 0,
                                            stride=2 if (j == 0 and i > 0) else 1))
                c = width + 3 * inc if j == 0 else c + inc
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(nn.BatchNorm2d(c, eps=0.001), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = self.stem(x)
        for block in self.blocks:
            paths = block(paths)
        x = self.post(torch.cat(paths, 1))
        return torch.flatten(self.classifier(self.avgpool(x)), 1)


def _dpn(v: Variant, *, num_classes: int) -> DPN:
    model = DPN(v, num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _spec(name: str, params: int, paper: Published) -> dict[str, Any]:
    return dict(family="dpn", paper=PAPER, min_resolution=1, published=Published(
        params=params, kind="reference", source=f"timm {name} (port of the authors' MXNet model)", paper=paper))


_TABLE2 = "Chen et al. 2017, Table 2 (224 px single crop; FLOPs = multiply-adds)"


@register_model(**_spec("dpn68", 12611602, Published(source="DPN-68 is in the authors' repository, not the paper")))
def dpn68(*, num_classes: int = 1000) -> nn.Module:
    return _dpn(Variant(10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64), True), num_classes=num_classes)


@register_model(**_spec("dpn92", 37668392, Published(params=37_800_000, macs=6.5e9, top1=79.3, top5=94.6,
                                                      source=_TABLE2)))
def dpn92(*, num_classes: int = 1000) -> nn.Module:
    return _dpn(Variant(64, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128), False), num_classes=num_classes)


@register_model(**_spec("dpn131", 79254504, Published(params=79_500_000, macs=16.0e9, top1=80.07, top5=94.88,
                                                       source=_TABLE2)))
def dpn131(*, num_classes: int = 1000) -> nn.Module:
    return _dpn(Variant(128, 160, 40, (4, 8, 28, 3), (16, 32, 32, 128), False), num_classes=num_classes)


@register_model(**_spec("dpn98", 61570728, Published(params=61_700_000, macs=11.7e9, top1=79.8, top5=94.8,
                                                      source=_TABLE2)))
def dpn98(*, num_classes: int = 1000) -> nn.Module:
    return _dpn(Variant(96, 160, 40, (3, 6, 20, 3), (16, 32, 32, 128), False), num_classes=num_classes)


@register_model(**_spec("dpn107", 86917800, Published(source="DPN-107 is in the authors' repository, not the paper")))
def dpn107(*, num_classes: int = 1000) -> nn.Module:
    return _dpn(Variant(128, 200, 50, (4, 8, 20, 3), (20, 64, 64, 128), False), num_classes=num_classes)
