"""MobileNetV2.

Paper: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Sandler et al., 2018,
https://arxiv.org/abs/1801.04381.

State-dict keys and forward are identical to torchvision's ``mobilenet_v2``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ._layers import ConvNormAct, init_conv_bn_linear, make_divisible
from ._spec import Published, Weights, register_model


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear projection (1x1), residual when shapes allow.

    The projection has no activation: the paper shows ReLU in the narrow bottleneck destroys information.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            ConvNormAct(hidden, hidden, stride=stride, groups=hidden, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# Paper Table 2. t: expansion factor, c: output channels, n: repeats, s: stride of the first repeat.
_SETTING: Sequence[tuple[int, int, int, int]] = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        setting: Sequence[tuple[int, int, int, int]] = _SETTING,
        *,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        round_nearest: int = 8,
    ) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult, round_nearest)
        # The last layer only grows: shrinking it below 1280 costs accuracy for little compute.
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvNormAct(3, channels, stride=2, activation_layer=nn.ReLU6)]
        for t, c, n, s in setting:
            out = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, expand_ratio=t))
                channels = out
        features.append(ConvNormAct(channels, self.last_channel, kernel_size=1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def _mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(_SETTING, **kwargs)


PAPER = "https://arxiv.org/abs/1801.04381"
# Google's table of the published checkpoints (1001 classes: a background class; parameters and MACs as TF counts
# them): https://github.com/tensorflow/models/tree/master/research/slim/nets/mobilenet (README, "Pretrained models").
GOOGLE_TABLE = "https://github.com/tensorflow/models/tree/master/research/slim/nets/mobilenet"
_GOOGLE_NOTE = ("Google's table counts convolution and classifier weights only (no BatchNorm scale/shift) at 1001 "
                "classes: measured - 2 x BN channels + 1,281 gives its figures (tests/test_zoo_literature.py)")


def _google(width: float, mmacs: float, mparams: float, top1: float, top5: float) -> Published:
    return Published(params=int(mparams * 1e6), macs=mmacs * 1e6, top1=top1, top5=top5, resolution=224,
                     source=f"{GOOGLE_TABLE} README, mobilenet_v2_{width}_224", note=_GOOGLE_NOTE,
                     params_tolerance=0.015)


@register_model(
    family="mobilenet_v2",
    paper=PAPER,
    min_resolution=1,
    published=Published(
        params=3504872, macs=0.301e9, top1=71.878, kind="torchvision",
        source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=3_400_000, macs=300e6, top1=72.0, source="Sandler et al. 2018, Table 4 (224 px)",
                        note="the paper rounds to 3.4M what Google's table gives as 3.47M (weights only, see there)"),
        others=(_google(1.0, 300, 3.47, 71.8, 91.0),),
    ),
    weights=Weights(url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", sha256="b0353104"),
)
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(**kwargs)


# Width multipliers of Google's table. The multiplier scales every layer but the last 1x1 conv, which stays
# at 1280 below width 1 (shrinking it costs accuracy for little compute) and grows above it: the rounding
# rule of make_divisible(1280 * max(1, width), 8), which is also TF's.
def _width_spec(width: str, mmacs: float, mparams: float, top1: float, top5: float) -> dict[str, Any]:
    return dict(family="mobilenet_v2", paper=PAPER, min_resolution=1, published=_google(float(width), mmacs, mparams,
                                                                                        top1, top5))


@register_model(**_width_spec("0.35", 59, 1.66, 60.3, 82.9))
def mobilenet_v2_035(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(width_mult=0.35, **kwargs)


@register_model(**_width_spec("0.5", 97, 1.95, 65.4, 86.4))
def mobilenet_v2_050(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(width_mult=0.5, **kwargs)


@register_model(**_width_spec("0.75", 209, 2.61, 69.8, 89.6))
def mobilenet_v2_075(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(width_mult=0.75, **kwargs)


@register_model(**_width_spec("1.3", 509, 5.34, 74.4, 92.1))
def mobilenet_v2_130(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(width_mult=1.3, **kwargs)


@register_model(**_width_spec("1.4", 582, 6.06, 75.0, 92.5))
def mobilenet_v2_140(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(width_mult=1.4, **kwargs)
