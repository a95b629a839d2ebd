"""Xception: Inception modules taken to the limit, as depthwise separable convolutions with residuals.

Paper: "Xception: Deep Learning with Depthwise Separable Convolutions", Chollet, CVPR 2017,
https://arxiv.org/abs/1610.02357. Fig. 5: an entry flow (two plain convs and three downsampling
blocks), a middle flow of eight identical 728-channel blocks (repeated, so the network learns most
of its features at 19x19), and an exit flow. Every separable convolution is a 3x3 depthwise and a
1x1 pointwise convolution with no non-linearity between them (Sec. 4.7 found one hurts), followed
by BatchNorm. Table 3 gives 22,855,952 parameters, reproduced exactly.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._layers import init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1610.02357"


class SeparableConv2d(nn.Sequential):
    """3x3 depthwise then 1x1 pointwise, no bias and nothing in between."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False))


class XceptionBlock(nn.Module):
    """``reps`` x (ReLU, separable conv, BN), a strided max-pool where the block downsamples, plus a shortcut.

    ``grow_first``: widen in the first separable conv (entry and middle flow) or in the last (exit flow).
    ``start_with_relu``: False for the first block, whose input just left a ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int, *,
                 start_with_relu: bool = True, grow_first: bool = True) -> None:
        super().__init__()
        widths = [out_channels] * reps if grow_first else [in_channels] * (reps - 1) + [out_channels]
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            if i > 0 or start_with_relu:
                # Not in place on the block's input: the shortcut still reads it.
                layers.append(nn.ReLU(inplace=i > 0))
            layers += [SeparableConv2d(c, w), nn.BatchNorm2d(w)]
            c = w
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)
        self.skip = None
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep(x) + (x if self.skip is None else self.skip(x))


# Fig. 5, after the two stem convs (32, 64 channels, 3x3, no padding).
#   in, out, reps, stride, start_with_relu, grow_first
_BLOCKS = (
    [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True), (256, 728, 2, 2, True, True)]  # entry flow
    + [(728, 728, 3, 1, True, True)] * 8  # middle flow
    + [(728, 1024, 2, 2, True, False)]  # exit flow
)


class Xception(nn.Module):
    def __init__(self, *, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[XceptionBlock(i, o, r, s, start_with_relu=sr, grow_first=g)
                                      for i, o, r, s, sr, g in _BLOCKS])
        self.exit = nn.Sequential(
            SeparableConv2d(1024, 1536), nn.BatchNorm2d(1536), nn.ReLU(inplace=True),
            SeparableConv2d(1536, 2048), nn.BatchNorm2d(2048), nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    family="xception",
    paper=PAPER,
    resolution=299,
    min_resolution=29,
    crop_pct=0.875,
    published=Published(params=22855952, top1=79.0, top5=94.5, resolution=299,
                        source="Chollet 2017, Table 1 (single crop, 299 px) and Table 3 (parameters)"),
)
def xception(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    model = Xception(num_classes=num_classes, **options)
    init_conv_bn_linear(model)
    return model
