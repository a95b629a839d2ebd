"""SqueezeNext: 1.0-, 1.5- and 2.0-SqNxt-23 and -23v5.

Paper: "SqueezeNext: Hardware-Aware Neural Network Design", Gholami et al., CVPR-W 2018,
https://arxiv.org/abs/1803.10615. Laid out as the authors' Caffe definitions
(https://github.com/amirgholami/SqueezeNext, ``*/train_val.prototxt``), whose parameter counts are
the reference. A block squeezes twice with 1x1s (to 1/2 then 1/4 of its width), runs a separable
3x1 + 1x3 pair instead of a 3x3, expands back with a 1x1 and adds a shortcut; every conv is
conv-BN-ReLU without bias. Variants: width multiplier (1.0 / 1.5 / 2.0 of 32-64-128-256 per stage; the
64-channel stem and the final 128-channel 1x1 are not scaled) and block distribution over the four
stages (23: 6-6-8-1; 23v5: 2-4-14-1, which moves work to the lower-resolution stages, with a 5x5
stem instead of 7x7).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._layers import ConvNormAct, init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1803.10615"
REPO = "https://github.com/amirgholami/SqueezeNext"


class SqnxtBlock(nn.Module):
    """Reduction 1x1, 1x1, 3x1, 1x3, expansion 1x1, added to the input (projected where a stage starts).

    Reductions are fractions of the width the body reads: /2 and /4 in a plain block, /1 and /2 in a
    downsampling one (stride 2 on the first 1x1), /4 and /8 where the block narrows. The first block
    of every stage projects its shortcut with a strided 1x1 (even at equal widths, as the Caffe
    definitions do); in the v5 definitions that projection comes first and the body reads it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, first: bool, project_first: bool) -> None:
        super().__init__()
        self.project = self.shortcut = None
        if first and project_first:
            self.project = ConvNormAct(in_channels, out_channels, 1, stride)
            in_channels, stride = out_channels, 1
        elif first:
            self.shortcut = ConvNormAct(in_channels, out_channels, 1, stride)
        den = 1 if stride == 2 else (4 if in_channels > out_channels else 2)
        r1, r2 = in_channels // den, in_channels // (2 * den)
        self.body = nn.Sequential(
            ConvNormAct(in_channels, r1, 1, stride), ConvNormAct(r1, r2, 1),
            ConvNormAct(r2, r1, (3, 1), padding=(1, 0)), ConvNormAct(r1, r1, (1, 3), padding=(0, 1)),
            ConvNormAct(r1, out_channels, 1),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            x = self.project(x)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.body(x) + identity)


#   widths per stage at 1.0 (block counts per stage are the variant's)
_WIDTHS = (32, 64, 128, 256)


class SqueezeNext(nn.Module):
    def __init__(self, width: float, depths: tuple[int, ...], stem_kernel: int, project_first: bool, *,
                 num_classes: int = 1000) -> None:
        super().__init__()
        # Caffe: no padding, pooling rounds up; 227 -> 111 (7x7) or 112 (5x5) -> 55/56.
        self.stem = nn.Sequential(ConvNormAct(3, 64, stem_kernel, 2, padding=0),
                                  nn.MaxPool2d(3, 2, ceil_mode=True))
        blocks, channels = [], 64
        for i, (w, n) in enumerate(zip(_WIDTHS, depths)):
            out = int(w * width)
            for j in range(n):
                blocks.append(SqnxtBlock(channels, out, 2 if (j == 0 and i > 0) else 1, j == 0, project_first))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvNormAct(channels, 128, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _squeezenext(width: float, v5: bool, *, num_classes: int) -> SqueezeNext:
    depths, stem_kernel = ((2, 4, 14, 1), 5) if v5 else ((6, 6, 8, 1), 7)
    model = SqueezeNext(width, depths, stem_kernel, project_first=v5, num_classes=num_classes)
    init_conv_bn_linear(model)
    return model


def _spec(name: str, params: int, mparams: float, top1: float, top5: float) -> dict[str, Any]:
    return dict(family="squeezenext", paper=PAPER, resolution=227, min_resolution=9, published=Published(
        params=params, kind="reference",
        source=f"{REPO} {name}/train_val.prototxt: conv weights + BN scale/shift + FC, counted from the definition",
        paper=Published(params=int(mparams * 1e6), top1=top1, top5=top5, resolution=227,
                        source="Gholami et al. 2018, Tables 2-3 (227 px, single crop)")))


@register_model(**_spec("1.0-SqNxt-23", 718280, 0.72, 59.05, 82.60))
def squeezenext23_w1(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(1.0, False, num_classes=num_classes)


@register_model(**_spec("1.0-SqNxt-23v5", 931016, 0.94, 59.24, 82.41))
def squeezenext23v5_w1(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(1.0, True, num_classes=num_classes)


@register_model(**_spec("2.0-SqNxt-23", 2362728, 2.36, 67.18, 88.17))
def squeezenext23_w2(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(2.0, False, num_classes=num_classes)


@register_model(**_spec("2.0-SqNxt-23v5", 3223912, 3.23, 67.44, 88.20))
def squeezenext23v5_w2(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(2.0, True, num_classes=num_classes)


# 1.5x: the authors publish no definition for it (their repository holds 1.0 and 2.0): the same layout at
# 48-96-192-384 channels, counted from it. The paper's figures for it were not transcribed (see the paper's Table 3).
def _spec_w3d2(name: str, params: int) -> dict[str, Any]:
    return dict(family="squeezenext", paper=PAPER, resolution=227, min_resolution=9, published=Published(
        params=params, kind="computed",
        source=f"{name}: the 1.0/2.0 Caffe layout of {REPO} at 1.5x width, counted (no published definition)",
        paper=Published(source=f"Gholami et al. 2018 report {name} (Tables 2-3); its figures are not transcribed "
                               "here")))


@register_model(**_spec_w3d2("1.5-SqNxt-23", 1_404_832))
def squeezenext23_w3d2(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(1.5, False, num_classes=num_classes)


@register_model(**_spec_w3d2("1.5-SqNxt-23v5", 1_890_456))
def squeezenext23v5_w3d2(*, num_classes: int = 1000) -> nn.Module:
    return _squeezenext(1.5, True, num_classes=num_classes)
