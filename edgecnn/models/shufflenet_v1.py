"""ShuffleNet (v1) with 1, 2, 3, 4 or 8 groups, at width 0.25x to 2.0x.

Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
Zhang et al., 2017, https://arxiv.org/abs/1707.01083 (v2, CVPR 2018 version).

Not in torchvision: built from the paper (Table 1 and Fig. 2). Pointwise convolutions are grouped
to cut their cost by ``groups``; a channel shuffle after the first one lets information cross
groups, which otherwise never mix.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._layers import ConvNormAct, init_conv_bn_linear
from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1707.01083"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Reshape channels to (groups, n), transpose, flatten (paper Sec. 3.1); plain ONNX ops."""
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """Paper Fig. 2(b) (stride 1, residual add) and 2(c) (stride 2, concat with an average-pooled shortcut).

    The bottleneck is a quarter of the output width. No ReLU after the depthwise conv (as Xception).
    With stride 2 the branch only produces ``out - in`` channels: concatenating the shortcut
    widens the output for free.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.groups = groups
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4
        # The first unit's input (24 channels) is too narrow to split into groups.
        self.compress = ConvNormAct(in_channels, mid, 1, groups=groups if group_first else 1)
        self.depthwise = ConvNormAct(mid, mid, 3, stride, groups=mid, activation_layer=None)
        self.expand = ConvNormAct(mid, branch_out, 1, groups=groups, activation_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compress(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 1:
            return F.relu(x + out)
        return F.relu(torch.cat((F.avg_pool2d(x, 3, 2, 1), out), dim=1))


# Paper Table 1: output channels of Stage2 at 1x per group count (Stage3, Stage4 double each time),
# chosen so all variants cost about 140 MFLOPs.
_STAGE2_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
_REPEATS: Sequence[int] = (4, 8, 4)  # units per stage, the first with stride 2
# conv1 width per width multiplier, as in the authors' models: the paper's 292 MFLOPs for 1.5x
# needs a 24-channel conv1, not 36. Other widths scale 24.
_STEM = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


class ShuffleNetV1(nn.Module):
    def __init__(
        self, *, groups: int = 3, width_mult: float = 1.0, num_classes: int = 1000, repeats: Sequence[int] = _REPEATS
    ) -> None:
        super().__init__()
        if groups not in _STAGE2_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(_STAGE2_CHANNELS)}, got {groups}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        # "ShuffleNet s x" scales every layer's filters by s. Rounding keeps the group convolutions
        # valid: bottlenecks (out / 4) and stride-2 branches (out - in) must split into `groups`.
        c = max(groups, round(_STEM.get(width_mult, 24 * width_mult) / groups) * groups)
        self.conv1 = ConvNormAct(3, c, 3, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        step = 4 * groups
        for i, n in enumerate(repeats):
            out = max(step, round(_STAGE2_CHANNELS[groups] * 2**i * width_mult / step) * step)
            units = [ShuffleUnit(c, out, groups, 2, group_first=i > 0)]
            units += [ShuffleUnit(out, out, groups, 1) for _ in range(n - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            c = out
        self.fc = nn.Linear(c, num_classes)
        init_conv_bn_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean([2, 3]))


def _shufflenet_v1(**kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(**kwargs)


# Figures: MFLOPs (= mult-adds) from Table 1 (1x, per group count) and Tables 2/5 (other widths);
# top-1 = 100 - the paper's top-1 error. The paper gives no parameter counts; those are from the
# authors' implementation (megvii-model/ShuffleNet-Series README), where it lists the variant.
def _published(mflops: float, top1: float, params: float | None = None) -> Published:
    source = "Zhang et al. 2017 (arXiv 1707.01083v2) Tables 1, 2, 5"
    if params is not None:
        source += "; params: megvii-model/ShuffleNet-Series ShuffleNetV1 README"
    # Table 1 rounds to whole MFLOPs and appears to leave out the final FC layer (~1.1M MACs at 1.0x):
    # without it all five group counts round exactly to the table, with it g4/g8 land 1.0% above.
    return Published(params=None if params is None else int(params), macs=mflops * 1e6, top1=top1, source=source,
                     macs_tolerance=0.015, note="Table 1 rounds to whole MFLOPs and leaves out the final FC layer "
                     "(~1.1M MACs at 1.0x): with it, g4 and g8 count 1.0% above the table")


def _spec(published: Published) -> dict[str, Any]:
    return dict(family="shufflenet_v1", paper=PAPER, min_resolution=1, published=published)


@register_model(**_spec(_published(143, 66.4)))
def shufflenet_v1_g1(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=1, **kwargs)


@register_model(**_spec(_published(140, 67.3)))
def shufflenet_v1_g2(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=2, **kwargs)


@register_model(**_spec(_published(137, 67.4, 1.9e6)))
def shufflenet_v1_g3(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=3, **kwargs)


@register_model(**_spec(_published(133, 67.2)))
def shufflenet_v1_g4(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=4, **kwargs)


@register_model(**_spec(_published(137, 67.6, 2.4e6)))
def shufflenet_v1_g8(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=8, **kwargs)


@register_model(**_spec(_published(38, 56.8, 0.7e6)))
def shufflenet_v1_g3_x0_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=3, width_mult=0.5, **kwargs)


@register_model(**_spec(_published(292, 71.5, 3.4e6)))
def shufflenet_v1_g3_x1_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=3, width_mult=1.5, **kwargs)


@register_model(**_spec(_published(524, 73.7, 5.4e6)))
def shufflenet_v1_g3_x2_0(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=3, width_mult=2.0, **kwargs)


# Table 2: 0.5x and 0.25x at every group count (the table gives one complexity per width, 38 and 13 MFLOPs);
# 0.5x with g = 3 is registered above.
_TABLE2_TOP1 = {0.5: {1: 54.9, 2: 55.6, 4: 58.4, 8: 57.7}, 0.25: {1: 42.9, 2: 43.2, 3: 45.0, 4: 45.8, 8: 47.3}}


def _table2(width: float, groups: int) -> Published:
    mflops = {0.5: 38, 0.25: 13}[width]
    return Published(macs=mflops * 1e6, top1=_TABLE2_TOP1[width][groups], macs_tolerance=0.2,
                     source=f"Zhang et al. 2017 (arXiv 1707.01083v2) Table 2 (ShuffleNet {width}x, g = {groups}; "
                            f"one complexity, {mflops} MFLOPs, for the whole row)",
                     note="Table 2 states one complexity per width for all five group counts ('similar complexity'); "
                          "counted per group count, 0.5x runs 36-40.5M and 0.25x 10.6-12.4M (conv1 scaled to 6 "
                          "channels at 0.25x, as 'filters x s' says)")


@register_model(**_spec(_table2(0.5, 1)))
def shufflenet_v1_g1_x0_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=1, width_mult=0.5, **kwargs)


@register_model(**_spec(_table2(0.5, 2)))
def shufflenet_v1_g2_x0_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=2, width_mult=0.5, **kwargs)


@register_model(**_spec(_table2(0.5, 4)))
def shufflenet_v1_g4_x0_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=4, width_mult=0.5, **kwargs)


@register_model(**_spec(_table2(0.5, 8)))
def shufflenet_v1_g8_x0_5(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=8, width_mult=0.5, **kwargs)


@register_model(**_spec(_table2(0.25, 1)))
def shufflenet_v1_g1_x0_25(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=1, width_mult=0.25, **kwargs)


@register_model(**_spec(_table2(0.25, 2)))
def shufflenet_v1_g2_x0_25(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=2, width_mult=0.25, **kwargs)


@register_model(**_spec(_table2(0.25, 3)))
def shufflenet_v1_g3_x0_25(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=3, width_mult=0.25, **kwargs)


@register_model(**_spec(_table2(0.25, 4)))
def shufflenet_v1_g4_x0_25(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=4, width_mult=0.25, **kwargs)


@register_model(**_spec(_table2(0.25, 8)))
def shufflenet_v1_g8_x0_25(**kwargs: Any) -> ShuffleNetV1:
    return _shufflenet_v1(groups=8, width_mult=0.25, **kwargs)
