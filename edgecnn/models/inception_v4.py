"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2.

Paper: "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
Szegedy et al., AAAI 2017, https://arxiv.org/abs/1602.07261. Figures 3-9 (Inception-v4), 10-14
(Inception-ResNet-v1), 16-19 (-v2) and 7 (reduction A, with Table 1's k, l, m, n). Every conv is
conv-BN-ReLU without bias (TF's eps 1e-3), except the 1x1 "linear" projection closing a residual
block, which has a bias and no BN (the paper puts BN only on the traditional layers, not on the
sums); residuals are scaled by 0.17 / 0.10 / 0.20 (Sec. 3.3: "between 0.1 and 0.3") before the add.

Inception-v4 and -ResNet-v2 are laid out as the released TF checkpoints (ported to timm, whose
parameter counts are the reference): -ResNet-v2 repeats its blocks 10/20/10 times, where Fig. 15
draws 5/10/5, and ends with a 1536-channel 1x1 conv. Inception-ResNet-v1 was never released; it
follows the figures (5/10/5 blocks) and its count is computed from them.

Blocks are tables: a branch is a sequence of convolutions ``(out, kernel, stride, padding)`` and
pools (:data:`POOLS`), and may end in a ``Fork`` of two convolutions whose outputs are concatenated
(Inception-v4's C block). BN-Inception (``bn_inception.py``) is written in the same tables.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import Published, register_model
from .googlenet import BasicConv2d

PAPER = "https://arxiv.org/abs/1602.07261"


class Fork(NamedTuple):
    a: tuple
    b: tuple


def _k(kernel, padding) -> dict[str, Any]:
    return {"kernel_size": kernel, "padding": padding}


# "max": 3x3/2 max-pool, no padding (TF's VALID); "maxc": the same rounding up (Caffe); "max1": 3x3/1
# max-pool; "avg": 3x3/1 average pool whose padding is not counted.
POOLS: dict[str, Callable[[], nn.Module]] = {
    "max": lambda: nn.MaxPool2d(3, 2),
    "maxc": lambda: nn.MaxPool2d(3, 2, ceil_mode=True),
    "max1": lambda: nn.MaxPool2d(3, 1, 1),
    "avg": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
}


class Branch(nn.Sequential):
    def __init__(self, in_channels: int, ops: Sequence, conv: Callable[..., nn.Module] = BasicConv2d) -> None:
        super().__init__()
        c = in_channels
        for op in ops:
            if isinstance(op, str):
                self.append(POOLS[op]())
            elif isinstance(op, Fork):
                self.append(ForkConv(c, op, conv))
                c = op.a[0] + op.b[0]
            else:
                out, kernel, stride, padding = op
                self.append(conv(c, out, stride=stride, **_k(kernel, padding)))
                c = out
        self.out_channels = c


class ForkConv(nn.Module):
    """Two convolutions side by side on the same input (1x3 beside 3x1), concatenated."""

    def __init__(self, in_channels: int, fork: Fork, conv: Callable[..., nn.Module] = BasicConv2d) -> None:
        super().__init__()
        (oa, ka, sa, pa), (ob, kb, sb, pb) = fork
        self.a = conv(in_channels, oa, stride=sa, **_k(ka, pa))
        self.b = conv(in_channels, ob, stride=sb, **_k(kb, pb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


class Mixed(nn.Module):
    """Branches side by side, concatenated; with ``residual``, projected back and added to the input."""

    def __init__(self, in_channels: int, branches: Sequence[Sequence], residual: float | None = None,
                 relu: bool = True, conv: Callable[..., nn.Module] = BasicConv2d) -> None:
        super().__init__()
        self.branches = nn.ModuleList(Branch(in_channels, b, conv) for b in branches)
        width = sum(b.out_channels for b in self.branches)
        self.scale, self.relu = residual, relu
        self.up = nn.Conv2d(width, in_channels, 1) if residual is not None else None
        self.out_channels = in_channels if residual is not None else width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([b(x) for b in self.branches], 1)
        if self.up is None:
            return y
        y = x + self.scale * self.up(y)
        return F.relu(y, inplace=True) if self.relu else y


def _c(out, k=1, s=1, p=0) -> tuple:
    return (out, k, s, p)


_1x7, _7x1, _1x3, _3x1 = ((1, 7), (0, 3)), ((7, 1), (3, 0)), ((1, 3), (0, 1)), ((3, 1), (1, 0))


def _sep(out, kp) -> tuple:
    return (out, kp[0], 1, kp[1])


# ---- Inception-v4 (Figs. 3-8) -------------------------------------------------------------------
V4_STEM = [[_c(32, 3, 2), _c(32, 3), _c(64, 3, 1, 1)]]
V4_3A = [["max"], [_c(96, 3, 2)]]
V4_4A = [[_c(64), _c(96, 3)], [_c(64), _sep(64, _1x7), _sep(64, _7x1), _c(96, 3)]]
V4_5A = [[_c(192, 3, 2)], ["max"]]
V4_A = [[_c(96)], [_c(64), _c(96, 3, 1, 1)], [_c(64), _c(96, 3, 1, 1), _c(96, 3, 1, 1)], ["avg", _c(96)]]
V4_RA = [[_c(384, 3, 2)], [_c(192), _c(224, 3, 1, 1), _c(256, 3, 2)], ["max"]]  # k, l, m, n = 192, 224, 256, 384
V4_B = [[_c(384)], [_c(192), _sep(224, _1x7), _sep(256, _7x1)],
        [_c(192), _sep(192, _7x1), _sep(224, _1x7), _sep(224, _7x1), _sep(256, _1x7)], ["avg", _c(128)]]
V4_RB = [[_c(192), _c(192, 3, 2)], [_c(256), _sep(256, _1x7), _sep(320, _7x1), _c(320, 3, 2)], ["max"]]
_FORK = Fork(_sep(256, _1x3), _sep(256, _3x1))
V4_C = [[_c(256)], [_c(384), _FORK], [_c(384), _sep(448, _3x1), _sep(512, _1x3), _FORK], ["avg", _c(256)]]
#   blocks in order: (table, repeats, residual scale or None)
V4 = [(V4_STEM, 1, None), (V4_3A, 1, None), (V4_4A, 1, None), (V4_5A, 1, None), (V4_A, 4, None), (V4_RA, 1, None),
      (V4_B, 7, None), (V4_RB, 1, None), (V4_C, 3, None)]

# ---- Inception-ResNet-v2 (Figs. 3 stem as released, 16-19) -----------------------------------------
IR2_STEM = [[_c(32, 3, 2), _c(32, 3), _c(64, 3, 1, 1), "max", _c(80), _c(192, 3), "max"]]
IR2_5B = [[_c(96)], [_c(48), _c(64, 5, 1, 2)], [_c(64), _c(96, 3, 1, 1), _c(96, 3, 1, 1)], ["avg", _c(64)]]
IR2_A = [[_c(32)], [_c(32), _c(32, 3, 1, 1)], [_c(32), _c(48, 3, 1, 1), _c(64, 3, 1, 1)]]
IR2_RA = [[_c(384, 3, 2)], [_c(256), _c(256, 3, 1, 1), _c(384, 3, 2)], ["max"]]  # k, l, m, n = 256, 256, 384, 384
IR2_B = [[_c(192)], [_c(128), _sep(160, _1x7), _sep(192, _7x1)]]
IR2_RB = [[_c(256), _c(384, 3, 2)], [_c(256), _c(288, 3, 2)], [_c(256), _c(288, 3, 1, 1), _c(320, 3, 2)], ["max"]]
IR2_C = [[_c(192)], [_c(192), _sep(224, _1x3), _sep(256, _3x1)]]
IR2 = [(IR2_STEM, 1, None), (IR2_5B, 1, None), (IR2_A, 10, 0.17), (IR2_RA, 1, None), (IR2_B, 20, 0.10),
       (IR2_RB, 1, None), (IR2_C, 9, 0.20), (IR2_C, 1, 1.0), ([[_c(1536)]], 1, None)]

# ---- Inception-ResNet-v1 (Figs. 14, 10, 7, 11, 12, 13, 15) ------------------------------------------
IR1_STEM = [[_c(32, 3, 2), _c(32, 3), _c(64, 3, 1, 1), "max", _c(80), _c(192, 3), _c(256, 3, 2)]]
IR1_A = [[_c(32)], [_c(32), _c(32, 3, 1, 1)], [_c(32), _c(32, 3, 1, 1), _c(32, 3, 1, 1)]]
IR1_RA = [[_c(384, 3, 2)], [_c(192), _c(192, 3, 1, 1), _c(256, 3, 2)], ["max"]]  # k, l, m, n = 192, 192, 256, 384
IR1_B = [[_c(128)], [_c(128), _sep(128, _1x7), _sep(128, _7x1)]]
IR1_RB = [[_c(256), _c(384, 3, 2)], [_c(256), _c(256, 3, 2)], [_c(256), _c(256, 3, 1, 1), _c(256, 3, 2)], ["max"]]
IR1_C = [[_c(192)], [_c(192), _sep(192, _1x3), _sep(192, _3x1)]]
IR1 = [(IR1_STEM, 1, None), (IR1_A, 5, 0.17), (IR1_RA, 1, None), (IR1_B, 10, 0.10), (IR1_RB, 1, None),
       (IR1_C, 5, 0.20)]


class InceptionV4(nn.Module):
    """Inception-v4 and the Inception-ResNets: the same skeleton, different block tables."""

    def __init__(self, plan: Sequence[tuple], *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        blocks, c = [], 3
        for table, repeats, scale in plan:
            for i in range(repeats):
                # The last -v2 C block (scale 1.0) feeds the head un-activated, as the released model.
                block = Mixed(c, table, scale, relu=scale != 1.0) if scale is not None else Mixed(c, table)
                blocks.append(block)
                c = block.out_channels
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)  # Fig. 9 / 15: keep 0.8
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(self.features(x)), 1)))


def _inception_v4(plan: Sequence[tuple], *, num_classes: int, **options: Any) -> InceptionV4:
    model = InceptionV4(plan, num_classes=num_classes, **options)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.1 if isinstance(m, nn.Conv2d) else 0.01, a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _table2(top1_err: float, top5_err: float, note: str = "") -> Published:
    return Published(top1=round(100 - top1_err, 2), top5=round(100 - top5_err, 2), resolution=299, note=note,
                     source="Szegedy et al. 2017, Table 2 (single crop, 299 px; non-blacklisted val subset)")


_SPEC = dict(family="inception_v4", paper=PAPER, resolution=299, min_resolution=75, crop_pct=0.875)


@register_model(**_SPEC, published=Published(params=42679816, kind="reference", paper=_table2(20.0, 5.0),
                                             source="timm inception_v4 (port of the released TF checkpoint)"))
def inception_v4(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _inception_v4(V4, num_classes=num_classes, **options)


@register_model(**_SPEC, published=Published(params=55843464, kind="reference", paper=_table2(19.9, 4.9),
                                             source="timm inception_resnet_v2 (port of the released TF checkpoint)"))
def inception_resnet_v2(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _inception_v4(IR2, num_classes=num_classes, **options)


@register_model(**_SPEC, published=_table2(21.3, 5.5))
def inception_resnet_v1(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _inception_v4(IR1, num_classes=num_classes, **options)
