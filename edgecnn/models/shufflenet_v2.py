"""ShuffleNetV2 0.5x, 1.0x, 1.5x and 2.0x.

Paper: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", Ma et al., 2018,
https://arxiv.org/abs/1807.11164.

State-dict keys and forward are identical to torchvision's ``shufflenet_v2_x*``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ._spec import Published, Weights, register_model

PAPER = "https://arxiv.org/abs/1807.11164"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across groups; reshape/transpose/reshape exports to plain ONNX ops."""
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(b, c, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


class InvertedResidual(nn.Module):
    """Channel split, one branch transformed, concat, shuffle (paper Fig. 3c/d).

    Stride 1 splits the input in half and keeps one half as is (G1: equal widths, G4: fewer
    element-wise ops); stride 2 feeds the whole input to both branches to double the width.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        branch = out_channels // 2
        if stride == 1 and in_channels != branch * 2:
            raise ValueError(f"stride 1 needs in_channels == out_channels, got {in_channels} -> {out_channels}")
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch, 1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels if stride > 1 else branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            _depthwise(branch, stride),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


# Paper Table 5: units per stage, and output channels of conv1, stage2..4, conv5 per width.
_REPEATS = (4, 8, 4)
_CHANNELS: dict[str, tuple[int, int, int, int, int]] = {
    # conv1, stage2, stage3, stage4, conv5
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats: Sequence[int], channels: Sequence[int], *, num_classes: int = 1000) -> None:
        super().__init__()
        if len(repeats) != 3 or len(channels) != 5:
            raise ValueError("expected 3 stage repeats and 5 channel counts")
        c = channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for i, (n, out) in enumerate(zip(repeats, channels[1:4]), start=2):
            units = [InvertedResidual(c, out, 2)] + [InvertedResidual(out, out, 1) for _ in range(n - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            c = out
        self.conv5 = nn.Sequential(
            nn.Conv2d(c, channels[4], 1, bias=False), nn.BatchNorm2d(channels[4]), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(channels[4], num_classes)
        # PyTorch's default init, as torchvision (its checkpoints were trained from it).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


def _shufflenet_v2(width: str, **kwargs: Any) -> ShuffleNetV2:
    return ShuffleNetV2(_REPEATS, _CHANNELS[width], **kwargs)


_URL = "https://download.pytorch.org/models/"


# Ma et al. 2018, Table 8 (224 px): MFLOPs (= multiply-adds) and top-1 error, per width.
_TABLE8 = {"0_5": (41, 39.7), "1_0": (146, 30.6), "1_5": (299, 27.4), "2_0": (591, 25.1)}


def _published(enum: str, params: int, gmacs: float, top1: float) -> Published:
    mflops, err = _TABLE8[enum.split("_X")[1].removesuffix("_Weights")]
    return Published(params=params, macs=gmacs * 1e9, top1=top1, kind="torchvision",
                     source=f"torchvision {enum}.IMAGENET1K_V1 model card",
                     paper=Published(macs=mflops * 1e6, top1=round(100 - err, 1), source="Ma et al. 2018, Table 8",
                                     note="Table 8 rounds to whole MFLOPs: 0.5x counts 40.5M here, 1.3% under its 41M"))


@register_model(
    family="shufflenet_v2",
    paper=PAPER,
    min_resolution=1,
    published=_published("ShuffleNet_V2_X0_5_Weights", 1366792, 0.04, 60.552),
    weights=Weights(url=_URL + "shufflenetv2_x0.5-f707e7126e.pth", sha256="f707e7126e"),
)
def shufflenet_v2_x0_5(**kwargs: Any) -> ShuffleNetV2:
    return _shufflenet_v2("x0_5", **kwargs)


@register_model(
    family="shufflenet_v2",
    paper=PAPER,
    min_resolution=1,
    published=_published("ShuffleNet_V2_X1_0_Weights", 2278604, 0.145, 69.362),
    weights=Weights(url=_URL + "shufflenetv2_x1-5666bf0f80.pth", sha256="5666bf0f80"),
)
def shufflenet_v2_x1_0(**kwargs: Any) -> ShuffleNetV2:
    return _shufflenet_v2("x1_0", **kwargs)


# The 1.5x and 2.0x checkpoints were trained later with torchvision's newer recipe (eval resize 232).
@register_model(
    family="shufflenet_v2",
    paper=PAPER,
    min_resolution=1,
    published=_published("ShuffleNet_V2_X1_5_Weights", 3503624, 0.296, 72.996),
    weights=Weights(url=_URL + "shufflenetv2_x1_5-3c479a10.pth", sha256="3c479a10", crop_pct=224 / 232),
)
def shufflenet_v2_x1_5(**kwargs: Any) -> ShuffleNetV2:
    return _shufflenet_v2("x1_5", **kwargs)


@register_model(
    family="shufflenet_v2",
    paper=PAPER,
    min_resolution=1,
    published=_published("ShuffleNet_V2_X2_0_Weights", 7393996, 0.583, 76.23),
    weights=Weights(url=_URL + "shufflenetv2_x2_0-8be3c8ee.pth", sha256="8be3c8ee", crop_pct=224 / 232),
)
def shufflenet_v2_x2_0(**kwargs: Any) -> ShuffleNetV2:
    return _shufflenet_v2("x2_0", **kwargs)
