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
from ._spec import Published, WeightsSource, register_model


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


@register_model(
    family="mobilenet_v2",
    paper="https://arxiv.org/abs/1801.04381",
    min_resolution=1,
    published=Published(
        params=3504872, macs=0.301e9, top1=71.878, kind="torchvision", source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 model card"
    ),
    weights=WeightsSource(url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", sha256="b0353104"),
)
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return _mobilenet_v2(**kwargs)
