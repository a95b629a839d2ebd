"""SqueezeNet 1.0 and 1.1.

Paper: "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
Iandola et al., 2016, https://arxiv.org/abs/1602.07360. Version 1.1 is from the authors' repository
(https://github.com/forresti/SqueezeNet/tree/master/SqueezeNet_v1.1): 2.4x less compute, same accuracy.

State-dict keys and forward are identical to torchvision's ``squeezenet1_0`` / ``squeezenet1_1``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ._spec import Published, Weights, register_model

PAPER = "https://arxiv.org/abs/1602.07360"


class Fire(nn.Module):
    """Squeeze (1x1) then expand with parallel 1x1 and 3x3 convolutions, concatenated."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


# A layer is "M" (3x3/2 max pool) or a Fire module as (squeeze, expand1x1, expand3x3).
_FireCfg = tuple[int, int, int]
_ARCHS: dict[str, tuple[tuple[int, int, int], Sequence[_FireCfg | str]]] = {
    # stem (channels, kernel, stride), then the layers
    "1_0": (
        (96, 7, 2),
        ["M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M",
         (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)],
    ),
    # 1.1 pools earlier and uses a 3x3 stem, hence the 2.4x saving.
    "1_1": (
        (64, 3, 2),
        ["M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
         (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)],
    ),
}


class Bypass(nn.Module):
    """A Fire module with a residual connection around it (paper Sec. 6, Fig. 2).

    "simple": identity, only where the module keeps its width (fire3, 5, 7, 9); "complex": a 1x1
    convolution on the shortcut where it changes width (fire2, 4, 6, 8), identity elsewhere.
    """

    def __init__(self, fire: Fire, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fire = fire
        self.shortcut = None if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fire(x) + (x if self.shortcut is None else self.shortcut(x))


class SqueezeNet(nn.Module):
    def __init__(
        self,
        stem: tuple[int, int, int],
        layers: Sequence[_FireCfg | str],
        *,
        num_classes: int = 1000,
        dropout: float = 0.5,
        bypass: str | None = None,
    ) -> None:
        super().__init__()
        if bypass not in (None, "simple", "complex"):
            raise ValueError(f"bypass must be None, 'simple' or 'complex', got {bypass!r}")
        channels, kernel, stride = stem
        features: list[nn.Module] = [nn.Conv2d(3, channels, kernel_size=kernel, stride=stride), nn.ReLU(inplace=True)]
        for layer in layers:
            if layer == "M":
                # ceil_mode keeps the border pixels that floor mode would drop (Caffe's pooling).
                features.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                squeeze, e1, e3 = layer
                fire: nn.Module = Fire(channels, squeeze, e1, e3)
                if bypass == "complex" or (bypass == "simple" and channels == e1 + e3):
                    fire = Bypass(fire, channels, e1 + e3)
                features.append(fire)
                channels = e1 + e3
        self.features = nn.Sequential(*features)
        # The classifier is a 1x1 conv per class followed by global pooling: no fully connected layer.
        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    # Small class logits at start, else the ReLU before pooling kills many classes.
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def _squeezenet(version: str, **kwargs: Any) -> SqueezeNet:
    stem, layers = _ARCHS[version]
    return SqueezeNet(stem, layers, **kwargs)


def _published(name: str, params: int, gmacs: float, top1: float, paper: Published | None = None) -> Published:
    return Published(params=params, macs=gmacs * 1e9, top1=top1, kind="torchvision",
                     source=f"torchvision {name}.IMAGENET1K_V1 model card", paper=paper)


# Table 6 of the paper (SqueezeNet 1.0 at 227 px; "model size" is the fp32 Caffe model, 4 bytes a parameter).
def _table6(mb: float, top1: float, top5: float, note: str = "") -> Published:
    return Published(params=int(mb * 2**20 / 4), top1=top1, top5=top5, resolution=227, note=note,
                     source=f"Iandola et al. 2016, Table 6 (model size {mb} MB, fp32)")


@register_model(
    family="squeezenet",
    paper=PAPER,
    min_resolution=21,
    published=_published("SqueezeNet1_0_Weights", 1248424, 0.819, 58.092, paper=_table6(4.8, 57.5, 80.3)),
    weights=Weights(url="https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth", sha256="b66bff10"),
)
def squeezenet1_0(**kwargs: Any) -> SqueezeNet:
    return _squeezenet("1_0", **kwargs)


@register_model(
    family="squeezenet",
    paper=PAPER,
    min_resolution=17,
    published=_published("SqueezeNet1_1_Weights", 1235496, 0.349, 58.178, paper=Published(
        source="not in the paper: the authors' SqueezeNet_v1.1 README (2.4x less computation, same accuracy)")),
    weights=Weights(url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", sha256="b8a52dc0"),
)
def squeezenet1_1(**kwargs: Any) -> SqueezeNet:
    return _squeezenet("1_1", **kwargs)


# The bypass variants exist only in the paper (no public checkpoint): their figures are the paper's Table 6, at the
# 227 px input of the authors' Caffe models.
@register_model(family="squeezenet", paper=PAPER, min_resolution=21, published=_table6(4.8, 60.4, 82.5))
def squeezenet1_0_simple_bypass(**kwargs: Any) -> SqueezeNet:
    return _squeezenet("1_0", bypass="simple", **kwargs)


# Sec. 6 / Fig. 2: the simple bypasses (fire3, 5, 7, 9) plus a 1x1 convolution on the shortcut of each module that
# changes width (fire2, 4, 6, 8). Held to that wiring's exact count; Table 6's 7.7 MB is set beside it.
@register_model(family="squeezenet", paper=PAPER, min_resolution=21, published=Published(
    params=1_589_672, kind="computed", resolution=227,
    source="Iandola et al. 2016, Sec. 6 and Fig. 2 (complex bypass wiring), counted: SqueezeNet 1.0's 1,248,424 "
           "+ 341,248 for the 1x1 shortcuts of fire2, 4, 6 and 8",
    paper=_table6(7.7, 58.8, 82.0, note="Table 6's 7.7 MB (2.02M fp32 parameters) is 27% over the wiring Sec. 6 "
                  "describes (1,589,672: 6.06 MiB); even 1x1 shortcuts around all eight modules give 2,082,472 "
                  "(7.94 MiB): the paper does not say what else its 7.7 MB holds")))
def squeezenet1_0_complex_bypass(**kwargs: Any) -> SqueezeNet:
    return _squeezenet("1_0", bypass="complex", **kwargs)
