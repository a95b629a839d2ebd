"""MobileNetV1 at width multipliers 1.0, 0.75, 0.5 and 0.25, and at input resolutions 224, 192, 160 and 128.

Paper: "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
Howard et al., 2017, https://arxiv.org/abs/1704.04861.

Not in torchvision: built from the paper's Table 1 (the second-to-last depthwise conv has stride 1;
the table's "s2" there is a known typo: the output is already 7x7). Every conv is followed by batch
norm and ReLU, as in the paper.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ._layers import ConvNormAct, init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1704.04861"


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv (spatial filtering) then 1x1 pointwise conv (channel mixing), each BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = ConvNormAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


# Paper Table 1, after the 32-channel stride-2 stem: one row per depthwise-separable layer.
_LAYERS: Sequence[tuple[int, int]] = (
    # c, s
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(nn.Module):
    def __init__(
        self,
        layers: Sequence[tuple[int, int]] = _LAYERS,
        *,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.001,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def width(c: int) -> int:
            # The reference (TF-slim) truncates and keeps at least 8 channels.
            return max(8, int(c * width_mult))

        c = width(32)
        features: list[nn.Module] = [ConvNormAct(3, c, 3, 2)]
        for out, s in layers:
            features.append(DepthwiseSeparable(c, width(out), s))
            c = width(out)
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # TF-slim's reference keeps 99.9% of activations; kept for parity with its checkpoints.
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(c, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    return MobileNetV1(_LAYERS, **kwargs)


def _published(params: float, macs: float, top1: float) -> Published:
    return Published(params=int(params), macs=macs, top1=top1, source="Howard et al. 2017, Table 6 (224x224)")


@register_model(family="mobilenet_v1", paper=PAPER, min_resolution=1, published=_published(4.2e6, 569e6, 70.6))
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(**kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, min_resolution=1, published=_published(2.6e6, 325e6, 68.4))
def mobilenet_v1_0_75(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(width_mult=0.75, **kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, min_resolution=1, published=_published(1.3e6, 149e6, 63.7))
def mobilenet_v1_0_5(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(width_mult=0.5, **kwargs)


@register_model(family="mobilenet_v1", paper=PAPER, min_resolution=1, published=_published(0.5e6, 41e6, 50.6))
def mobilenet_v1_0_25(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(width_mult=0.25, **kwargs)


# Table 7: the resolution multiplier. The same network (1.0 width) at smaller inputs; only the cost and the
# accuracy change. Registered at that input size, so export and info use it by default.
def _table7(resolution: int, macs: float, top1: float) -> dict[str, Any]:
    return dict(family="mobilenet_v1", paper=PAPER, min_resolution=1, resolution=resolution,
                published=Published(params=4_200_000, macs=macs, top1=top1, resolution=resolution,
                                    source=f"Howard et al. 2017, Table 7 (1.0 MobileNet-{resolution})"))


@register_model(**_table7(192, 418e6, 69.1))
def mobilenet_v1_192(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(**kwargs)


@register_model(**_table7(160, 290e6, 67.2))
def mobilenet_v1_160(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(**kwargs)


@register_model(**_table7(128, 186e6, 64.4))
def mobilenet_v1_128(**kwargs: Any) -> MobileNetV1:
    return _mobilenet_v1(**kwargs)
