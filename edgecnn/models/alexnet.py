"""AlexNet, in the single-tower form of Krizhevsky's "One weird trick" paper (torchvision's layout).

Paper: https://arxiv.org/abs/1404.5997 (the original two-GPU network:
https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html).
It differs from the 2012 network in its widths (64-192-384-256-256) and has no local response
normalisation, which is why torchvision's checkpoint is laid out this way.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._spec import Published, WeightsSource, register_model

# Every row is a conv + ReLU; "pool" adds the overlapping 3x3/2 max-pool of the paper.
#   out, kernel, stride, padding, pool
_FEATURES = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)


class AlexNet(nn.Module):
    def __init__(
        self, features: tuple[tuple[int, int, int, int, bool], ...], *, num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out, kernel, stride, padding, pool in features:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            channels = out
        self.features = nn.Sequential(*layers)
        # Fixed 6x6 so that the classifier (and its checkpoint) works at any input size.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(channels * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _alexnet(
    features: tuple[tuple[int, int, int, int, bool], ...], *, num_classes: int, dropout: float = 0.5
) -> AlexNet:
    # torchvision keeps PyTorch's default init for AlexNet.
    return AlexNet(features, num_classes=num_classes, dropout=dropout)


@register_model(
    family="alexnet",
    paper="https://arxiv.org/abs/1404.5997",
    min_resolution=63,
    published=Published(
        params=61100840, macs=0.714e9, top1=56.522,
        kind="torchvision", source="torchvision AlexNet_Weights.IMAGENET1K_V1 model card",
    ),
    weights=WeightsSource(url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256="7be5be79"),
)
def alexnet(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _alexnet(_FEATURES, num_classes=num_classes, **options)
