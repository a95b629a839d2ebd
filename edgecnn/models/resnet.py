"""ResNet, ResNeXt and Wide ResNet, laid out as torchvision's (checkpoints load with ``strict=True``).

Papers: ResNet https://arxiv.org/abs/1512.03385, ResNeXt https://arxiv.org/abs/1611.05431,
Wide ResNet https://arxiv.org/abs/1605.07146.

``resnet*`` are torchvision's "v1.5" (stride on the 3x3 of a downsampling bottleneck);
``resnet50_v1``/``101_v1``/``152_v1`` are the paper's (stride on the first 1x1, as in the authors'
Caffe models): ~6% fewer multiply-adds, the paper's 3.8/7.6/11.3 G, same parameters.

The three families are one network: a bottleneck's inner width is ``planes * width_per_group / 64
* groups``, so ResNeXt is "more groups" and Wide ResNet is "wider groups" of the same builder.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn

from ._layers import init_conv_bn_linear
from ._spec import Published, Weights, register_model


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, stride: int, downsample: nn.Module | None, groups: int, base_width: int
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class PlainBlock(BasicBlock):
    """ResNet's two 3x3 convolutions with no shortcut: the paper's "plain" baseline (Sec. 4.1, Fig. 3 middle)."""

    residual = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand.

    The stride sits on the 3x3 convolution, not the first 1x1 as in the paper ("ResNet v1.5"):
    torchvision's checkpoints were trained that way and it is ~0.5% more accurate.
    """

    expansion = 4
    stride_in_1x1 = False

    def __init__(
        self, in_channels: int, planes: int, stride: int, downsample: nn.Module | None, groups: int, base_width: int
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if self.stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, s3, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BottleneckV1(Bottleneck):
    """The paper's bottleneck: the stride on the first 1x1, so the 3x3 already runs at the reduced size."""

    stride_in_1x1 = True


# The four stages after the stem; the block count of each stage is the variant's data.
#   planes, stride
_STAGES = (
    (64, 1),
    (128, 2),
    (256, 2),
    (512, 2),
)


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for i, ((planes, stride), depth) in enumerate(zip(_STAGES, depths), start=1):
            out_channels = planes * block.expansion
            downsample = None
            if getattr(block, "residual", True) and (stride != 1 or channels != out_channels):
                downsample = nn.Sequential(
                    nn.Conv2d(channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
                )
            blocks = [block(channels, planes, stride, downsample, groups, width_per_group)]
            blocks += [block(out_channels, planes, 1, None, groups, width_per_group) for _ in range(depth - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(
    block: type[BasicBlock | PlainBlock | Bottleneck],
    depths: tuple[int, int, int, int],
    *,
    num_classes: int,
    groups: int = 1,
    width_per_group: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    model = ResNet(block, depths, num_classes=num_classes, groups=groups, width_per_group=width_per_group)
    init_conv_bn_linear(model)
    # torchvision leaves the classifier at PyTorch's default init.
    model.fc.reset_parameters()
    if zero_init_residual:
        # Each residual branch starts as zero, so each block starts as the identity
        # (Goyal et al. 2017, https://arxiv.org/abs/1706.02677): +0.2-0.3% top-1.
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock) and getattr(m, "residual", True):  # a plain block would pass nothing on
                nn.init.zeros_(m.bn2.weight)
    return model


_RESNET = "https://arxiv.org/abs/1512.03385"
_RESNEXT = "https://arxiv.org/abs/1611.05431"
_WIDE = "https://arxiv.org/abs/1605.07146"
_URL = "https://download.pytorch.org/models/"
# torchvision's bottleneck ResNets differ from the paper by design: say so wherever the two are shown together.
_TRUNCATED = "the paper truncates its FLOP counts to one decimal (SENet's Table 2 re-counts ResNet-50 at 3.86G)"
_V15 = ("torchvision's 'v1.5' strides the 3x3, not the first 1x1: more multiply-adds at the same parameters "
        "(the paper's: *_v1)")


def _paper(gmacs: float | None, top1: float, top5: float | None, where: str, note: str = "", params=None) -> Published:
    return Published(params=params, macs=gmacs * 1e9 if gmacs else None, top1=top1, top5=top5,
                     source=f"He et al. 2016 (CVPR), {where}", note=note)


def _paper_resnet(depth: int, note: str = "") -> Published:
    """Table 1 (FLOPs = multiply-adds) and the 10-crop ImageNet-val errors of Tables 2 (18) and 3 (34-152)."""
    gmacs = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}[depth]
    top1, top5 = {18: (72.12, None), 34: (75.48, 92.54), 50: (77.15, 93.29), 101: (78.25, 93.95),
                  152: (78.57, 94.29)}[depth]
    where = "Table 1 (FLOPs), " + ("Table 2" if depth == 18 else "Table 3") + " (top-1/5, 10-crop testing)"
    return _paper(gmacs, top1, top5, where, note)


@register_model(
    family="resnet",
    paper=_RESNET,
    min_resolution=1,
    published=Published(
        params=11689512, macs=1.814e9, top1=69.758,
        kind="torchvision", source="torchvision ResNet18_Weights.IMAGENET1K_V1 model card",
        paper=_paper_resnet(18),
    ),
    weights=Weights(url=_URL + "resnet18-f37072fd.pth", sha256="f37072fd"),
)
def resnet18(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **options)


@register_model(
    family="resnet",
    paper=_RESNET,
    min_resolution=1,
    published=Published(
        params=21797672, macs=3.664e9, top1=73.314,
        kind="torchvision", source="torchvision ResNet34_Weights.IMAGENET1K_V1 model card",
        paper=_paper_resnet(34, _TRUNCATED),
    ),
    weights=Weights(url=_URL + "resnet34-b627a593.pth", sha256="b627a593"),
)
def resnet34(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, **options)


@register_model(
    family="resnet",
    paper=_RESNET,
    min_resolution=1,
    published=Published(
        params=25557032, macs=4.089e9, top1=76.13,
        kind="torchvision", source="torchvision ResNet50_Weights.IMAGENET1K_V1 model card",
        paper=_paper_resnet(50, _V15),
    ),
    weights=Weights(url=_URL + "resnet50-0676ba61.pth", sha256="0676ba61"),
)
def resnet50(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, **options)


@register_model(
    family="resnet",
    paper=_RESNET,
    min_resolution=1,
    published=Published(
        params=44549160, macs=7.801e9, top1=77.374,
        kind="torchvision", source="torchvision ResNet101_Weights.IMAGENET1K_V1 model card",
        paper=_paper_resnet(101, _V15),
    ),
    weights=Weights(url=_URL + "resnet101-63fe2227.pth", sha256="63fe2227"),
)
def resnet101(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, **options)


@register_model(
    family="resnet",
    paper=_RESNET,
    min_resolution=1,
    published=Published(
        params=60192808, macs=11.514e9, top1=78.312,
        kind="torchvision", source="torchvision ResNet152_Weights.IMAGENET1K_V1 model card",
        paper=_paper_resnet(152, _V15),
    ),
    weights=Weights(url=_URL + "resnet152-394f9c45.pth", sha256="394f9c45"),
)
def resnet152(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 8, 36, 3), num_classes=num_classes, **options)


@register_model(
    family="resnext",
    paper=_RESNEXT,
    min_resolution=1,
    published=Published(
        params=25028904, macs=4.23e9, top1=77.618,
        kind="torchvision", source="torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=25_000_000, macs=4.2e9, top1=77.8, source="Xie et al. 2017, Table 1 (parameters, FLOPs) "
                        "and Table 3 (224 px single crop, 22.2% error)"),
    ),
    weights=Weights(url=_URL + "resnext50_32x4d-7cdf4587.pth", sha256="7cdf4587"),
)
def resnext50_32x4d(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, num_classes=num_classes, **options)


@register_model(
    family="resnext",
    paper=_RESNEXT,
    min_resolution=1,
    published=Published(
        params=88791336, macs=16.414e9, top1=79.312,
        kind="torchvision", source="torchvision ResNeXt101_32X8D_Weights.IMAGENET1K_V1 model card",
        paper=Published(source="not in Xie et al. 2017 (32x8d is torchvision's own training)"),
    ),
    weights=Weights(url=_URL + "resnext101_32x8d-8ba56ff5.pth", sha256="8ba56ff5"),
)
def resnext101_32x8d(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8, num_classes=num_classes, **options)


@register_model(
    family="resnext",
    paper=_RESNEXT,
    min_resolution=1,
    published=Published(
        params=83455272, macs=15.46e9, top1=83.246,
        kind="torchvision", source="torchvision ResNeXt101_64X4D_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=83_600_000, macs=15.6e9, top1=79.6, top5=94.7,
                        source="Xie et al. 2017, Table 5 (224 px single crop, 20.4% / 5.3% error)"),
    ),
    # trained with torchvision's newer recipe: resize 232, crop 224
    weights=Weights(url=_URL + "resnext101_64x4d-173b62eb.pth", sha256="173b62eb", crop_pct=224 / 232),
)
def resnext101_64x4d(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 23, 3), groups=64, width_per_group=4, num_classes=num_classes, **options)


@register_model(
    family="wide_resnet",
    paper=_WIDE,
    min_resolution=1,
    published=Published(
        params=68883240, macs=11.398e9, top1=78.468,
        kind="torchvision", source="torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=68_900_000, top1=78.1, top5=93.97, source="Zagoruyko & Komodakis 2016, ImageNet "
                        "table (WRN-50-2-bottleneck, 224 px single crop, 21.9% / 6.03% error)"),
    ),
    weights=Weights(url=_URL + "wide_resnet50_2-95faca4d.pth", sha256="95faca4d"),
)
def wide_resnet50_2(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 6, 3), width_per_group=128, num_classes=num_classes, **options)


@register_model(
    family="wide_resnet",
    paper=_WIDE,
    min_resolution=1,
    published=Published(
        params=126886696, macs=22.753e9, top1=78.848,
        kind="torchvision", source="torchvision Wide_ResNet101_2_Weights.IMAGENET1K_V1 model card",
        paper=Published(source="not in Zagoruyko & Komodakis 2016 (WRN-101-2 is torchvision's own training)"),
    ),
    weights=Weights(url=_URL + "wide_resnet101_2-32ee1156.pth", sha256="32ee1156"),
)
def wide_resnet101_2(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 23, 3), width_per_group=128, num_classes=num_classes, **options)


# ---- the paper's ResNet ("v1": stride on the first 1x1) ------------------------------------------
# Same parameters as torchvision's v1.5 (the stride moves, no weight changes shape); the figures held
# to are the paper's own Table 1 multiply-adds, and the parameter counts of the v1.5 cards.


def _v1_spec(depth: int, params: int, **changes: Any) -> dict[str, Any]:
    paper = _paper_resnet(depth)
    return dict(family="resnet", paper=_RESNET, min_resolution=1,
                published=dataclasses.replace(paper, params=params, source=paper.source + "; parameters: torchvision "
                                              f"ResNet{depth}_Weights card (the stride does not change any weight)",
                                              **changes))


@register_model(**_v1_spec(50, 25557032, note=_TRUNCATED, macs_tolerance=0.02))
def resnet50_v1(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(BottleneckV1, (3, 4, 6, 3), num_classes=num_classes, **options)


@register_model(**_v1_spec(101, 44549160))
def resnet101_v1(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(BottleneckV1, (3, 4, 23, 3), num_classes=num_classes, **options)


@register_model(**_v1_spec(152, 60192808))
def resnet152_v1(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(BottleneckV1, (3, 8, 36, 3), num_classes=num_classes, **options)


@register_model(
    family="resnext",
    paper=_RESNEXT,
    min_resolution=1,
    published=Published(
        params=44177704, kind="reference",
        source="torchvision's ResNeXt layout at 32 groups x 4 channels (timm resnext101_32x4d: 44,177,704)",
        paper=Published(macs=7.8e9, top1=78.8, source="Xie et al. 2017, Table 3 (101 layers, 224 single crop); "
                        "its complexity is ResNet-101's ~7.8 GFLOPs",
                        note="the paper quotes ResNet-101's complexity for all 101-layer variants; counted with the "
                             "stride on the 3x3 as in the paper's code: 8.0G"),
    ),
)
def resnext101_32x4d(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=4, num_classes=num_classes, **options)


# ---- the paper's plain baselines (Table 2, Fig. 4): ResNet-18/34's layers without any shortcut ------
def _plain(depth: int) -> dict[str, Any]:
    top1_err = {18: 27.94, 34: 28.54}[depth]
    return dict(family="resnet", paper=_RESNET, min_resolution=1, published=Published(
        macs={18: 1.8e9, 34: 3.6e9}[depth], top1=round(100 - top1_err, 2),
        source=f"He et al. 2016 (CVPR), Table 1 (FLOPs, as ResNet-{depth}: Sec. 3.3 gives plain and residual "
               f"nets the same cost) and Table 2 (plain-{depth}, 10-crop top-1 error {top1_err}%)",
        note="" if depth == 18 else _TRUNCATED + "; no projection shortcuts here, so 19M fewer than ResNet-34"))


@register_model(**_plain(18))
def plain18(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(PlainBlock, (2, 2, 2, 2), num_classes=num_classes, **options)


@register_model(**_plain(34))
def plain34(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _resnet(PlainBlock, (3, 4, 6, 3), num_classes=num_classes, **options)
