"""DenseNet-BC 121/161/169/201, laid out as torchvision's (checkpoints load with ``strict=True``).

Paper: https://arxiv.org/abs/1608.06993 (Huang et al., "Densely Connected Convolutional Networks").
Every layer sees the concatenation of all earlier feature maps of its block; "BC" = 1x1
bottlenecks (B) and transitions that halve the channels (C, compression 0.5).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import Published, Weights, register_model


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (to ``bn_size * growth_rate``) then BN-ReLU-3x3 (to ``growth_rate``)."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        x = self.conv2(self.relu2(self.norm2(x)))
        if self.dropout > 0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return x


class DenseBlock(nn.ModuleDict):
    """Keeps every layer's output and hands each layer the whole list (concatenated once per layer)."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int, dropout: float) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dropout)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to ``out_channels``, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(
        self,
        growth_rate: int,
        depths: tuple[int, int, int, int],
        stem_channels: int,
        *,
        bn_size: int = 4,
        num_classes: int = 1000,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # One ``features`` Sequential holds everything but the classifier: the checkpoint's keys.
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(stem_channels)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        channels = stem_channels
        for i, depth in enumerate(depths, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(depth, channels, growth_rate, bn_size, dropout))
            channels += depth * growth_rate
            if i != len(depths):
                self.features.add_module(f"transition{i}", Transition(channels, channels // 2))
                channels //= 2
        # Pre-activation layers end un-normalised: this BN (and the ReLU in forward) closes the last block.
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def _densenet(
    *, growth_rate: int, depths: tuple[int, int, int, int], stem_channels: int, num_classes: int, dropout: float = 0.0
) -> DenseNet:
    model = DenseNet(growth_rate, depths, stem_channels, num_classes=num_classes, dropout=dropout)
    # The paper's (Lua Torch) init, as torchvision: fan-in Kaiming convs, default-init classifier weight.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


# torchvision's checkpoints predate PyTorch's ban on '.' in module names: "norm.1" is our "norm1".
_LEGACY_KEY = re.compile(r"(denselayer\d+\.(?:norm|conv))\.([12])\.")


def _rename_legacy_keys(state_dict: dict) -> dict:
    return {_LEGACY_KEY.sub(r"\1\2.", k): v for k, v in state_dict.items()}


_PAPER = "https://arxiv.org/abs/1608.06993"
_URL = "https://download.pytorch.org/models/"


def _table3(top1_err: float, top5_err: float) -> Published:
    return Published(top1=round(100 - top1_err, 2), top5=round(100 - top5_err, 2),
                     source="Huang et al. 2017, Table 3 (single-crop 224, ImageNet val error)")


@register_model(
    family="densenet",
    paper=_PAPER,
    min_resolution=29,
    published=Published(
        params=7978856, macs=2.834e9, top1=74.434,
        kind="torchvision", source="torchvision DenseNet121_Weights.IMAGENET1K_V1 model card",
        paper=_table3(25.02, 7.71),
    ),
    weights=Weights(url=_URL + "densenet121-a639ec97.pth", sha256="a639ec97", convert=_rename_legacy_keys),
)
def densenet121(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _densenet(growth_rate=32, depths=(6, 12, 24, 16), stem_channels=64, num_classes=num_classes, **options)


@register_model(
    family="densenet",
    paper=_PAPER,
    min_resolution=29,
    published=Published(
        params=28681000, macs=7.728e9, top1=77.138,
        kind="torchvision", source="torchvision DenseNet161_Weights.IMAGENET1K_V1 model card",
        paper=_table3(22.33, 6.15),
    ),
    weights=Weights(url=_URL + "densenet161-8d451a50.pth", sha256="8d451a50", convert=_rename_legacy_keys),
)
def densenet161(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _densenet(growth_rate=48, depths=(6, 12, 36, 24), stem_channels=96, num_classes=num_classes, **options)


@register_model(
    family="densenet",
    paper=_PAPER,
    min_resolution=29,
    published=Published(
        params=14149480, macs=3.36e9, top1=75.6,
        kind="torchvision", source="torchvision DenseNet169_Weights.IMAGENET1K_V1 model card",
        paper=_table3(23.8, 6.85),
    ),
    weights=Weights(url=_URL + "densenet169-b2777c0a.pth", sha256="b2777c0a", convert=_rename_legacy_keys),
)
def densenet169(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _densenet(growth_rate=32, depths=(6, 12, 32, 32), stem_channels=64, num_classes=num_classes, **options)


@register_model(
    family="densenet",
    paper=_PAPER,
    min_resolution=29,
    published=Published(
        params=20013928, macs=4.291e9, top1=76.896,
        kind="torchvision", source="torchvision DenseNet201_Weights.IMAGENET1K_V1 model card",
        paper=_table3(22.58, 6.34),
    ),
    weights=Weights(url=_URL + "densenet201-c1103571.pth", sha256="c1103571", convert=_rename_legacy_keys),
)
def densenet201(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _densenet(growth_rate=32, depths=(6, 12, 48, 32), stem_channels=64, num_classes=num_classes, **options)


@register_model(
    family="densenet",
    paper=_PAPER,
    min_resolution=29,
    published=Published(
        # stem 9,536 + per dense layer (c input channels) 2c + 128c + 256 + 36,864, per transition 2c + c^2/2,
        # final BN + classifier: summed in closed form, independently of the builder.
        params=33337704, kind="computed", source="closed-form count of Huang et al. 2017, Table 1 (k=32, 6-12-64-48)",
        paper=_table3(22.15, 6.12),
    ),
)
def densenet264(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _densenet(growth_rate=32, depths=(6, 12, 64, 48), stem_channels=64, num_classes=num_classes, **options)
