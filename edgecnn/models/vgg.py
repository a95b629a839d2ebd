"""VGG-11/13/16/19 (configurations A, B, D, E), with and without BatchNorm, laid out as torchvision's.

Paper: https://arxiv.org/abs/1409.1556 (Simonyan & Zisserman, 2014). The ``_bn`` variants add
BatchNorm after every convolution (not in the paper; torchvision trained them from scratch).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._layers import init_conv_bn_linear
from ._spec import Published, Weights, register_model

# Five stages of 3x3 convolutions, each closed by a 2x2/2 max-pool; the variants (paper, Table 1)
# differ only in how many convolutions each stage has.
#   channels per stage
_WIDTHS = (64, 128, 256, 512, 512)


class VGG(nn.Module):
    def __init__(
        self, depths: tuple[int, ...], *, batch_norm: bool, num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width, depth in zip(_WIDTHS, depths):
            for _ in range(depth):
                layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        # One flat Sequential: the checkpoint's keys are features.<index>.
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(depths: tuple[int, ...], *, batch_norm: bool, num_classes: int, dropout: float = 0.5) -> VGG:
    model = VGG(depths, batch_norm=batch_norm, num_classes=num_classes, dropout=dropout)
    init_conv_bn_linear(model)
    return model


_PAPER = "https://arxiv.org/abs/1409.1556"
_URL = "https://download.pytorch.org/models/"
# Table 2 (parameters, millions) and Table 3 (single-scale evaluation, train S=256 / test Q=256; val error %).
_TABLES = {"A": (133, 29.6, 10.4), "B": (133, 28.7, 9.9), "D": (138, 27.0, 8.8), "E": (144, 27.3, 9.0)}


def _paper(config: str, bn: bool = False, **fields) -> Published:
    mparams, top1_err, top5_err = _TABLES[config]
    return Published(params=mparams * 1_000_000, top1=round(100 - top1_err, 1), top5=round(100 - top5_err, 1),
                     source=f"Simonyan & Zisserman 2015, Tables 2-3 (configuration {config}, S=256, Q=256)",
                     note="BatchNorm is not in the paper: these are the plain network's figures" if bn else "",
                     **fields)


# CS231n's VGG-16 table (literature/003): its rows, input included, add up to 15,237,608 activations.
_CS231N = Published(
    params=138_000_000, activations=24_000_000, kind="lecture",
    source="CS231n ConvNets notes, VGG-16 memory table ('TOTAL memory: 24M * 4 bytes ~= 93MB / image')",
    note="the lecture's own rows add up to 15,237,608 activations (58.1 MiB in fp32), not 24M (93 MB): an arithmetic "
         "slip; measured adds 25,088 for torchvision's 7x7 adaptive average pool (a copy at 224 px, not in VGG); "
         "its params count weights only (138,344,128), the measured column counts biases too (+13,416)")


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=132863336, macs=7.609e9, top1=69.02,
        kind="torchvision", source="torchvision VGG11_Weights.IMAGENET1K_V1 model card",
        paper=_paper("A"),
    ),
    weights=Weights(url=_URL + "vgg11-8a719046.pth", sha256="8a719046"),
)
def vgg11(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((1, 1, 2, 2, 2), batch_norm=False, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=133047848, macs=11.308e9, top1=69.928,
        kind="torchvision", source="torchvision VGG13_Weights.IMAGENET1K_V1 model card",
        paper=_paper("B"),
    ),
    weights=Weights(url=_URL + "vgg13-19584684.pth", sha256="19584684"),
)
def vgg13(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 2, 2, 2), batch_norm=False, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=138357544, macs=15.47e9, top1=71.592,
        kind="torchvision", source="torchvision VGG16_Weights.IMAGENET1K_V1 model card",
        paper=_paper("D"),
        others=(_CS231N,),
    ),
    weights=Weights(url=_URL + "vgg16-397923af.pth", sha256="397923af"),
)
def vgg16(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 3, 3, 3), batch_norm=False, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=143667240, macs=19.632e9, top1=72.376,
        kind="torchvision", source="torchvision VGG19_Weights.IMAGENET1K_V1 model card",
        paper=_paper("E"),
    ),
    weights=Weights(url=_URL + "vgg19-dcbb9e9d.pth", sha256="dcbb9e9d"),
)
def vgg19(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 4, 4, 4), batch_norm=False, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=132868840, macs=7.609e9, top1=70.37,
        kind="torchvision", source="torchvision VGG11_BN_Weights.IMAGENET1K_V1 model card",
        paper=_paper("A", bn=True),
    ),
    weights=Weights(url=_URL + "vgg11_bn-6002323d.pth", sha256="6002323d"),
)
def vgg11_bn(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((1, 1, 2, 2, 2), batch_norm=True, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=133053736, macs=11.308e9, top1=71.586,
        kind="torchvision", source="torchvision VGG13_BN_Weights.IMAGENET1K_V1 model card",
        paper=_paper("B", bn=True),
    ),
    weights=Weights(url=_URL + "vgg13_bn-abd245e5.pth", sha256="abd245e5"),
)
def vgg13_bn(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 2, 2, 2), batch_norm=True, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=138365992, macs=15.47e9, top1=73.36,
        kind="torchvision", source="torchvision VGG16_BN_Weights.IMAGENET1K_V1 model card",
        paper=_paper("D", bn=True),
    ),
    weights=Weights(url=_URL + "vgg16_bn-6c64b313.pth", sha256="6c64b313"),
)
def vgg16_bn(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 3, 3, 3), batch_norm=True, num_classes=num_classes, **options)


@register_model(
    family="vgg",
    paper=_PAPER,
    min_resolution=32,
    published=Published(
        params=143678248, macs=19.632e9, top1=74.218,
        kind="torchvision", source="torchvision VGG19_BN_Weights.IMAGENET1K_V1 model card",
        paper=_paper("E", bn=True),
    ),
    weights=Weights(url=_URL + "vgg19_bn-c79401a0.pth", sha256="c79401a0"),
)
def vgg19_bn(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _vgg((2, 2, 4, 4, 4), batch_norm=True, num_classes=num_classes, **options)
