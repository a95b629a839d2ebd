"""MNASNet: the B1 architecture at depth multipliers 0.5, 0.75, 1.0 and 1.3, and MnasNet-A1.

Paper: "MnasNet: Platform-Aware Neural Architecture Search for Mobile", Tan et al., 2018,
https://arxiv.org/abs/1807.11626.

State-dict keys and forward are identical to torchvision's ``mnasnet*`` (its "version 2", where
the stem scales with ``alpha`` too). ``mnasnet_a1`` is the paper's headline model (Fig. 7), with
squeeze-excitation in three of its stages (Google's checkpoint, ported as timm's ``semnasnet_100``,
is the parameter reference).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ._layers import SqueezeExcitation, make_divisible
from ._spec import Published, Weights, register_model

PAPER = "https://arxiv.org/abs/1807.11626"
# The paper's TF decay of 0.9997 expressed as PyTorch momentum (1 - decay).
_BN_MOMENTUM = 1 - 0.9997


class _InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int,
                 se: bool = False) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        mid = in_ch * expansion
        self.apply_residual = in_ch == out_ch and stride == 1
        layers = [
            nn.Conv2d(in_ch, mid, 1, bias=False),
            nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        if se:  # A1: squeeze to a quarter of the block's *input* width (TF's se_ratio 0.25)
            layers.append(SqueezeExcitation(mid, max(1, in_ch // 4)))
        # Linear bottleneck, as MobileNetV2.
        layers += [nn.Conv2d(mid, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch, momentum=_BN_MOMENTUM)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _stack(in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int, repeats: int,
           se: bool = False) -> nn.Sequential:
    blocks = [_InvertedResidual(in_ch, out_ch, kernel_size, stride, expansion, se)]
    blocks += [_InvertedResidual(out_ch, out_ch, kernel_size, 1, expansion, se) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)


# MnasNet-B1 (the paper's first arXiv version; no squeeze-excitation): after a 32-channel stem
# and a 16-channel separable conv, six stacks of inverted residuals.
_STEM, _SEP = 32, 16
_STACKS: Sequence[tuple[int, int, int, int, int]] = (
    # t, c, n, s, k
    (3, 24, 3, 2, 3),
    (3, 40, 3, 2, 5),
    (6, 80, 3, 2, 5),
    (6, 96, 2, 1, 3),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)


class MNASNet(nn.Module):
    # torchvision reads this from checkpoints: version 1 would make it rebuild the old fixed-size
    # stem, so state_dicts saved from this class must say 2 to load there unchanged.
    _version = 2

    def __init__(self, alpha: float, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        if alpha <= 0.0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        # Channel rounding prefers rounding up, as the reference MobileNet code does.
        stem, sep = make_divisible(_STEM * alpha, 8), make_divisible(_SEP * alpha, 8)
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, 1, 1, groups=stem, bias=False),
            nn.BatchNorm2d(stem, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, sep, 1, bias=False),
            nn.BatchNorm2d(sep, momentum=_BN_MOMENTUM),
        ]
        c = sep
        for t, out, n, s, k in _STACKS:
            out = make_divisible(out * alpha, 8)
            layers.append(_stack(c, out, k, s, t, n))
            c = out
        layers += [
            nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM), nn.ReLU(inplace=True)
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))


def _mnasnet(alpha: float, **kwargs: Any) -> MNASNet:
    return MNASNet(alpha, **kwargs)


_URL = "https://download.pytorch.org/models/"


def _published(enum: str, params: int, gmacs: float, top1: float) -> Published:
    return Published(params=params, macs=gmacs * 1e9, top1=top1, kind="torchvision",
                     source=f"torchvision {enum}.IMAGENET1K_V1 model card",
                     paper=Published(source="Tan et al. 2019 tabulates the A1 model (mnasnet_a1); B1 is from its first "
                                     "arXiv version, without figures per depth multiplier"))


@register_model(
    family="mnasnet",
    paper=PAPER,
    min_resolution=1,
    published=_published("MNASNet0_5_Weights", 2218512, 0.104, 67.734),
    weights=Weights(url=_URL + "mnasnet0.5_top1_67.823-3ffadce67e.pth", sha256="3ffadce67e"),
)
def mnasnet0_5(**kwargs: Any) -> MNASNet:
    return _mnasnet(0.5, **kwargs)


# 0.75 and 1.3 were trained later with torchvision's newer recipe (eval resize 232).
@register_model(
    family="mnasnet",
    paper=PAPER,
    min_resolution=1,
    published=_published("MNASNet0_75_Weights", 3170208, 0.215, 71.18),
    weights=Weights(url=_URL + "mnasnet0_75-7090bc5f.pth", sha256="7090bc5f", crop_pct=224 / 232),
)
def mnasnet0_75(**kwargs: Any) -> MNASNet:
    return _mnasnet(0.75, **kwargs)


@register_model(
    family="mnasnet",
    paper=PAPER,
    min_resolution=1,
    published=_published("MNASNet1_0_Weights", 4383312, 0.314, 73.456),
    weights=Weights(url=_URL + "mnasnet1.0_top1_73.512-f206786ef8.pth", sha256="f206786ef8"),
)
def mnasnet1_0(**kwargs: Any) -> MNASNet:
    return _mnasnet(1.0, **kwargs)


@register_model(
    family="mnasnet",
    paper=PAPER,
    min_resolution=1,
    published=_published("MNASNet1_3_Weights", 6282256, 0.526, 76.506),
    weights=Weights(url=_URL + "mnasnet1_3-a4c69d6f.pth", sha256="a4c69d6f", crop_pct=224 / 232),
)
def mnasnet1_3(**kwargs: Any) -> MNASNet:
    return _mnasnet(1.3, **kwargs)


# MnasNet-A1 (paper Fig. 7(a)): after the 32-channel stem, a separable conv to 16 (no skip), then
# inverted residuals, squeeze-excitation in the 40-, 112- and 160-channel stages.
_A1_STACKS: Sequence[tuple[int, int, int, int, int, bool]] = (
    # t, c, n, s, k, SE
    (6, 24, 2, 2, 3, False),
    (3, 40, 3, 2, 5, True),
    (6, 80, 4, 2, 3, False),
    (6, 112, 2, 1, 3, True),
    (6, 160, 3, 2, 5, True),
    (6, 320, 1, 1, 3, False),
)


class MnasNetA1(nn.Module):
    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, _STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(_STEM, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(_STEM, _STEM, 3, 1, 1, groups=_STEM, bias=False), nn.BatchNorm2d(_STEM, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True), nn.Conv2d(_STEM, _SEP, 1, bias=False), nn.BatchNorm2d(_SEP, momentum=_BN_MOMENTUM),
        ]
        c = _SEP
        for t, out, n, s, k, se in _A1_STACKS:
            layers.append(_stack(c, out, k, s, t, n, se))
            c = out
        layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM),
                   nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))
        MNASNet._init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))


@register_model(
    family="mnasnet",
    paper=PAPER,
    min_resolution=1,
    published=Published(params=3887038, kind="reference", source="timm semnasnet_100 (Google's MnasNet-A1 checkpoint)",
                        paper=Published(params=3_900_000, macs=312e6, top1=75.2, top5=92.5,
                                        source="Tan et al. 2019, Table 1 (224 px)")),
)
def mnasnet_a1(**kwargs: Any) -> MnasNetA1:
    return MnasNetA1(**kwargs)
