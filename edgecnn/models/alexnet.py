"""AlexNet (torchvision's single-tower form and the 2012 two-tower original) and ZFNet.

Paper: https://arxiv.org/abs/1404.5997 (the original two-GPU network:
https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html).
It differs from the 2012 network in its widths (64-192-384-256-256) and has no local response
normalisation, which is why torchvision's checkpoint is laid out this way.

``alexnet_2012`` is the NIPS 2012 network: 227 px input (the paper's "224" does not divide through
its 11x11/4 conv), 96-256-384-384-256 filters, local response normalisation after conv1 and conv2,
and the two GPU towers as grouped convolutions (conv2, conv4, conv5 see only their own tower's
maps; conv3 and the FC layers cross). ``zfnet`` is Zeiler & Fergus's ILSVRC 2013 revision
(https://arxiv.org/abs/1311.2901): a 7x7/2 first conv (the 11x11/4 one aliased), one tower, and the
wider 512-1024-512 middle of their Table 2 row (b), the best single model there.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._spec import Published, Weights, register_model

# Every row is a conv + ReLU; "pool" adds the overlapping 3x3/2 max-pool of the paper; "lrn" local
# response normalisation before it; groups 2 = the two GPU towers of 2012.
#   out, kernel, stride, padding, pool, lrn, groups
_FEATURES = (
    (64, 11, 4, 2, True, False, 1),
    (192, 5, 1, 2, True, False, 1),
    (384, 3, 1, 1, False, False, 1),
    (256, 3, 1, 1, False, False, 1),
    (256, 3, 1, 1, True, False, 1),
)
_FEATURES_2012 = (
    (96, 11, 4, 0, True, True, 1),
    (256, 5, 1, 2, True, True, 2),
    (384, 3, 1, 1, False, False, 1),
    (384, 3, 1, 1, False, False, 2),
    (256, 3, 1, 1, True, False, 2),
)
# ZFNet pools 110 -> 55 and 26 -> 13 as the paper's Fig. 3 does (Caffe rounds up: ceil_mode).
_FEATURES_ZF = (
    (96, 7, 2, 1, True, True, 1),
    (256, 5, 2, 0, True, True, 1),
    (512, 3, 1, 1, False, False, 1),
    (1024, 3, 1, 1, False, False, 1),
    (512, 3, 1, 1, True, False, 1),
)


def _lrn() -> nn.LocalResponseNorm:
    # The paper's b = a / (k + alpha * sum a^2)^beta with n=5, k=2, alpha=1e-4, beta=0.75; PyTorch divides
    # alpha by n (as Caffe does), so the paper's alpha is 5 x 1e-4 here.
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    def __init__(
        self, features: tuple[tuple, ...], *, num_classes: int = 1000, dropout: float = 0.5, ceil_pool: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out, kernel, stride, padding, pool, lrn, groups in features:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding, groups=groups), nn.ReLU(inplace=True)]
            if lrn:
                layers.append(_lrn())
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_pool))
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


def _alexnet(features: tuple[tuple, ...], *, num_classes: int, dropout: float = 0.5,
             ceil_pool: bool = False) -> AlexNet:
    # torchvision keeps PyTorch's default init for AlexNet.
    return AlexNet(features, num_classes=num_classes, dropout=dropout, ceil_pool=ceil_pool)


@register_model(
    family="alexnet",
    paper="https://arxiv.org/abs/1404.5997",
    min_resolution=63,
    published=Published(
        params=61100840, macs=0.714e9, top1=56.522,
        kind="torchvision", source="torchvision AlexNet_Weights.IMAGENET1K_V1 model card",
        paper=Published(source="Krizhevsky 2014 reports multi-GPU training runs, no per-model figures to set "
                        "beside this card (alexnet_2012 is the 2012 paper's network)"),
    ),
    weights=Weights(url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256="7be5be79"),
)
def alexnet(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _alexnet(_FEATURES, num_classes=num_classes, **options)


@register_model(
    family="alexnet",
    paper="https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html",
    resolution=227,
    min_resolution=67,
    published=Published(
        # conv 34,944 + 307,456 + 885,120 + 663,936 + 442,624; FC 37,752,832 + 16,781,312 + 4,097,000
        params=60965224, macs=0.724e9, kind="computed",
        source="computed from Krizhevsky et al. 2012, Sec. 3.5 / Fig. 2 (the count of Caffe's bvlc_alexnet)",
        paper=Published(params=60_000_000, top1=59.3, top5=81.8, resolution=227,
                        source="Krizhevsky et al. 2012: '60 million parameters'; Table 2, 1 CNN (val 40.7/18.2 err)"),
    ),
)
def alexnet_2012(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _alexnet(_FEATURES_2012, num_classes=num_classes, **options)


@register_model(
    family="zfnet",
    paper="https://arxiv.org/abs/1311.2901",
    min_resolution=47,
    published=Published(
        # conv 14,208 + 614,656 + 1,180,160 + 4,719,616 + 4,719,104; FC 75,501,568 + 16,781,312 + 4,097,000
        params=107627624, kind="computed",
        source="computed from Zeiler & Fergus 2014, Fig. 3 with Table 2 (b)'s 512-1024-512 layers",
        paper=Published(top1=62.5, top5=84.0, source="Zeiler & Fergus 2014, Table 2 row (b), val 37.5/16.0 err"),
    ),
)
def zfnet(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _alexnet(_FEATURES_ZF, num_classes=num_classes, ceil_pool=True, **options)
