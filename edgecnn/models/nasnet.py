"""NASNet-A Mobile (4 @ 1056) and Large (6 @ 4032).

Paper: "Learning Transferable Architectures for Scalable Image Recognition", Zoph et al., CVPR 2018,
https://arxiv.org/abs/1707.07012. The architecture search found two cells (Fig. 4): a Normal cell
that keeps the size and a Reduction cell that halves it. Each cell reads the outputs of the two
previous cells ("cur" and "prev", each first projected to the cell's width C), forms five
combinations, each the sum of two operations on inputs it picks, and concatenates the unused ones.
The network (Fig. 2) is a 3x3/2 stem conv, two reduction cells as a stem, then three stages of N
normal cells with a reduction cell between them; the width doubles at each reduction. "N @ F" names
the repeats N and the penultimate width F = 24 C.

Operations are separable convolutions applied twice (ReLU, separable conv, BN, ReLU, separable conv,
BN), 3x3 average / max pools and identities. Where "prev" has twice cur's resolution it is reduced
by the factorized path of the reference code: two 1x1 convs on the even and on the odd pixels,
concatenated. Laid out as the released TF models (ported by Cadene, and to timm): their parameter
counts are the reference; symmetric padding stands in for TF's "SAME" (same shapes and counts).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import Published, register_model

PAPER = "https://arxiv.org/abs/1707.07012"


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=0.001)


def _separable(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel, stride, kernel // 2, groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
    )


class SepBranch(nn.Sequential):
    """ReLU-separable-BN twice; the first one strides. ``mid``: its width (the stem's raw input: the output's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, mid: int | None = None) -> None:
        mid = in_channels if mid is None else mid
        super().__init__(nn.ReLU(), _separable(in_channels, mid, kernel, stride), _bn(mid),
                         nn.ReLU(inplace=True), _separable(mid, out_channels, kernel, 1), _bn(out_channels))


class ActConvBn(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(in_channels, out_channels, 1, bias=False), _bn(out_channels))


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: 1x1 convs on the even and the odd pixel grids, concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.path_1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.path_2 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.bn = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        odd = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # shifted by one pixel (zero where it runs off the edge)
        return self.bn(torch.cat([self.path_1(x[:, :, ::2, ::2]), self.path_2(odd[:, :, ::2, ::2])], 1))


# Fig. 4. Each combination sums two (operation, input) pairs; an input is "cur", "prev" or an earlier
# combination's index. "/2" operations stride (reduction cells). The cell outputs the listed inputs, concatenated.
NORMAL = (
    (("sep5", "cur"), ("sep3", "prev")),
    (("sep5", "prev"), ("sep3", "prev")),
    (("avg", "cur"), ("id", "prev")),
    (("avg", "prev"), ("avg", "prev")),
    (("sep3", "cur"), ("id", "cur")),
)
NORMAL_OUT = ("prev", 0, 1, 2, 3, 4)
REDUCTION = (
    (("sep5/2", "cur"), ("sep7/2", "prev")),
    (("max/2", "cur"), ("sep7/2", "prev")),
    (("avg/2", "cur"), ("sep5/2", "prev")),
    (("avg", 0), ("id", 1)),
    (("sep3", 0), ("max/2", "cur")),
)
REDUCTION_OUT = (1, 2, 3, 4)


def _op(name: str, channels: int, raw_channels: int | None) -> nn.Module:
    op, _, s = name.partition("/")
    stride = int(s or 1)
    if op.startswith("sep"):
        if raw_channels is not None:  # the first stem cell reads the stem conv's output itself
            return SepBranch(raw_channels, channels, int(op[3:]), stride, mid=channels)
        return SepBranch(channels, channels, int(op[3:]), stride)
    if op == "avg":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if op == "max":
        return nn.MaxPool2d(3, stride, 1)
    return nn.Identity()


class Cell(nn.Module):
    """One Normal or Reduction cell of width ``channels``.

    ``prev_mode``: "1x1" (prev at cur's resolution), "reduce" (prev at twice it: factorized reduction),
    "raw" (the first stem cell: its "prev" is the stem conv's output, used without projection).
    """

    def __init__(self, cur_channels: int, prev_channels: int, channels: int, reduction: bool, prev_mode: str) -> None:
        super().__init__()
        self.combos, self.outputs = (REDUCTION, REDUCTION_OUT) if reduction else (NORMAL, NORMAL_OUT)
        self.cur = ActConvBn(cur_channels, channels)
        self.prev = {"1x1": lambda: ActConvBn(prev_channels, channels),
                     "reduce": lambda: FactorizedReduce(prev_channels, channels), "raw": nn.Identity}[prev_mode]()
        raw = prev_channels if prev_mode == "raw" else None
        self.ops = nn.ModuleList(
            nn.ModuleList(_op(op, channels, raw if src == "prev" else None) for op, src in pair) for pair in self.combos
        )
        self.out_channels = channels * len(self.outputs)

    def forward(self, cur: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states: dict[Any, torch.Tensor] = {"cur": self.cur(cur), "prev": self.prev(prev)}
        for i, (pair, ops) in enumerate(zip(self.combos, self.ops)):
            states[i] = ops[0](states[pair[0][1]]) + ops[1](states[pair[1][1]])
        return torch.cat([states[k] for k in self.outputs], 1)


class NASNetA(nn.Module):
    def __init__(self, repeats: int, penultimate: int, stem: int, *, num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        c = penultimate // 24
        self.conv0 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 0, bias=False), _bn(stem))
        # (channels, resolution divisor) of every state a later cell may read: conv0, then each cell.
        states = [(stem, 2)]
        cells = [Cell(stem, stem, c // 4, True, "raw")]  # stem cell 0: prev is conv0 itself
        states.append((cells[-1].out_channels, 4))
        cells.append(Cell(states[-1][0], stem, c // 2, True, "reduce"))
        states.append((cells[-1].out_channels, 8))
        for stage in range(3):
            width = c * 2**stage
            if stage > 0:
                cells.append(Cell(states[-1][0], states[-2][0], width, True, "1x1"))
                states.append((cells[-1].out_channels, states[-1][1] * 2))
            for _ in range(repeats):
                (cur, cur_div), (prev, prev_div) = states[-1], states[-2]
                cells.append(Cell(cur, prev, width, False, "reduce" if prev_div < cur_div else "1x1"))
                states.append((cells[-1].out_channels, cur_div))
        self.cells = nn.ModuleList(cells)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(states[-1][0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = cur = self.conv0(x)
        for cell in self.cells:
            prev, cur = cur, cell(cur, prev)
        x = torch.flatten(self.avgpool(F.relu(cur)), 1)
        return self.last_linear(self.dropout(x))


def _nasnet(repeats: int, penultimate: int, stem: int, *, num_classes: int, **options: Any) -> NASNetA:
    model = NASNetA(repeats, penultimate, stem, num_classes=num_classes, **options)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


@register_model(
    family="nasnet",
    paper=PAPER,
    min_resolution=32,
    published=Published(
        params=5289978, kind="reference", source="Cadene pretrainedmodels nasnetamobile (port of the TF checkpoint)",
        paper=Published(params=5_300_000, macs=564e6, top1=74.0, top5=91.6,
                        source="Zoph et al. 2018, Table 3 (mobile setting, NASNet-A (4 @ 1056), 224 px)"),
    ),
)
def nasnet_a_mobile(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _nasnet(4, 1056, 32, num_classes=num_classes, **options)


@register_model(
    family="nasnet",
    paper=PAPER,
    resolution=331,
    min_resolution=32,
    crop_pct=0.911,
    published=Published(
        params=88753150, kind="reference", source="timm nasnetalarge (port of the TF checkpoint)",
        paper=Published(params=88_900_000, macs=23.8e9, top1=82.7, top5=96.2, resolution=331,
                        source="Zoph et al. 2018, Table 2 (NASNet-A (6 @ 4032), 331 px)"),
    ),
)
def nasnet_a_large(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _nasnet(6, 4032, 96, num_classes=num_classes, **options)
