"""Inception v3, laid out as torchvision's (checkpoints load with ``strict=True``), and the paper's Inception-v2.

Paper: https://arxiv.org/abs/1512.00567 (Szegedy et al., "Rethinking the Inception Architecture
for Computer Vision"). Module names (``Conv2d_1a_3x3``, ``Mixed_5b``...) are those of the
TensorFlow checkpoint torchvision's weights were ported from. Blocks A-E are the paper's
figures 5, 6 (grid reduction, fig. 10), 6, 10 and 7.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import Published, Weights, register_model
from .googlenet import BasicConv2d, imagenet_to_half_range


class InceptionA(nn.Module):
    """35x35 grid: the 5x5 of Inception v1 kept as one conv, plus two stacked 3x3s."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: strided convs beside a max-pool, so no representational bottleneck."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 grid: 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 grid: 1x3 and 3x1 side by side (expanded filter bank) for high-dimensional features."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], 1)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: a training-time regulariser, never run in eval mode."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


# After the stem (35x35x192 at 299x299 input): three grids of 35, 17 and 8 pixels.
#   name        block       in channels  block options
_MIXED: tuple[tuple[str, type[nn.Module], int, dict[str, int]], ...] = (
    ("Mixed_5b", InceptionA, 192, {"pool_features": 32}),
    ("Mixed_5c", InceptionA, 256, {"pool_features": 64}),
    ("Mixed_5d", InceptionA, 288, {"pool_features": 64}),
    ("Mixed_6a", InceptionB, 288, {}),
    ("Mixed_6b", InceptionC, 768, {"channels_7x7": 128}),
    ("Mixed_6c", InceptionC, 768, {"channels_7x7": 160}),
    ("Mixed_6d", InceptionC, 768, {"channels_7x7": 160}),
    ("Mixed_6e", InceptionC, 768, {"channels_7x7": 192}),
    ("Mixed_7a", InceptionD, 768, {}),
    ("Mixed_7b", InceptionE, 1280, {}),
    ("Mixed_7c", InceptionE, 2048, {}),
)
_AUX_AFTER = "Mixed_6e"


class Inception3(nn.Module):
    """Returns logits; in training mode with ``aux_logits`` it returns ``(logits, aux)`` as torchvision."""

    def __init__(
        self,
        mixed: tuple[tuple[str, type[nn.Module], int, dict[str, int]], ...],
        *,
        aux_after: str,
        num_classes: int = 1000,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.5,
        stem_7x7: bool = False,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.aux_after = aux_after
        # No padding in most of the stem: 299 -> 35, the size the Mixed blocks were designed for.
        if stem_7x7:  # Inception-v2 (Table 3): one 7x7/2 conv, 299 -> 147x147x64 as the three 3x3s below give
            self.Conv2d_1a_7x7 = BasicConv2d(3, 64, kernel_size=7, stride=2)
        else:
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self._mixed = [name for name, *_ in mixed]
        for name, block, in_channels, block_options in mixed:
            self.add_module(name, block(in_channels, **block_options))
            if name == aux_after:
                # Registered here, as in torchvision, so the state_dict keys come in its order.
                self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.transform_input:
            x = imagenet_to_half_range(x)
        if hasattr(self, "Conv2d_1a_7x7"):
            x = self.maxpool1(self.Conv2d_1a_7x7(x))
        else:
            x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        aux = None
        for name in self._mixed:
            x = getattr(self, name)(x)
            if name == self.aux_after and self.AuxLogits is not None and self.training:
                aux = self.AuxLogits(x)
        x = self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))
        return x if aux is None else (x, aux)


def _inception_v3(
    mixed: tuple[tuple[str, type[nn.Module], int, dict[str, int]], ...], *, num_classes: int, **options: Any
) -> Inception3:
    model = Inception3(mixed, aux_after=_AUX_AFTER, num_classes=num_classes, **options)
    # torchvision's init. It tags the aux head's 5x5 conv for std 0.01, but on the BasicConv2d
    # wrapper, which its loop never matches: that conv gets 0.1 there, and so here.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.1, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if model.AuxLogits is not None:
        nn.init.trunc_normal_(model.AuxLogits.fc.weight, mean=0.0, std=0.001, a=-2, b=2)
    return model


def _drop_aux_head(state_dict: dict) -> dict:
    """torchvision's checkpoint carries the aux head; our default model, built for inference, has none."""
    return {k: v for k, v in state_dict.items() if not k.startswith("AuxLogits.")}


@register_model(
    family="inception",
    paper="https://arxiv.org/abs/1512.00567",
    resolution=299,
    min_resolution=75,
    published=Published(
        params=27161264, macs=5.713e9, top1=77.294,
        kind="torchvision", source="torchvision Inception_V3_Weights.IMAGENET1K_V1 model card",
        options={"aux_logits": True},  # the card's parameter count includes the aux head
        note="the card counts the auxiliary classifier (3,326,696 parameters), a training-time head the default "
             "inference build omits (23,834,568): --model-arg aux_logits=true builds it",
        paper=Published(macs=5e9, top1=78.8, top5=94.4, resolution=299,
                        source="Szegedy et al. 2016, Sec. 6 ('5 billion multiply-adds'), Table 3 (Inception-v3, "
                               "single crop 299: 21.2% / 5.6% error)",
                        note="the paper's '5 billion' is a round figure: 5.71G counting every convolution and the "
                             "classifier"),
    ),
    weights=Weights(
        crop_pct=299 / 342,
        url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        sha256="0cc3c7bd",
        # The ported TensorFlow weights expect inputs scaled to [-1, 1].
        options={"transform_input": True},
        convert=_drop_aux_head,
    ),
)
def inception_v3(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _inception_v3(_MIXED, num_classes=num_classes, **options)


# Inception-v2 as the Rethinking paper names it: Table 3's "Inception-v2" row, the network of Sec. 6 / Table 1 before
# the two changes that row's successors add and that make Inception-v3 ("Factorized 7x7": the first 7x7 convolution
# replaced by the stack of 3x3s; "BN-auxiliary": a batch-normalised auxiliary head). Not BN-Inception (Ioffe &
# Szegedy 2015, `bn_inception`), which the paper's Table 3 lists as a separate row. The 7x7's width (64) and its
# unpadded stride 2 are read off the 3x3 stack it stands for (same 147x147x64 output at 299 px).
@register_model(
    family="inception",
    paper="https://arxiv.org/abs/1512.00567",
    resolution=299,
    min_resolution=75,
    published=Published(
        macs=5.30e9, kind="computed",
        source="Szegedy et al. 2016, Table 1's network with a 7x7/2 conv (3 -> 64) for its first three 3x3s, counted: "
               "Inception-v3's 5.71G less the 3x3 stack's 616M plus the 7x7's 203M",
        paper=Published(macs=3.8e9, top1=76.6, resolution=299,
                        source="Szegedy et al. 2016, Table 3 ('Inception-v2': 23.4% top-1 error, 3.8 Bn ops)",
                        note="Table 3's cost column does not match the layers the paper lists: it puts Inception-v3 at "
                             "4.8 Bn ops where Sec. 6 says 5 billion and every convolution counts 5.71G, and the "
                             "factorized stem at +1.0 Bn where the two stems differ by 0.41G"),
    ),
)
def inception_v2(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _inception_v3(_MIXED, num_classes=num_classes, stem_7x7=True, **options)
