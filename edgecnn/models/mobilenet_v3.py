"""MobileNetV3 Large and Small, and their "minimalistic" versions.

Paper: "Searching for MobileNetV3", Howard et al., 2019, https://arxiv.org/abs/1905.02244.

State-dict keys and forward are identical to torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn as nn

from ._layers import ConvNormAct, SqueezeExcitation, init_conv_bn_linear, make_divisible
from ._spec import Published, Weights, register_model

PAPER = "https://arxiv.org/abs/1905.02244"
_TF_COUNT = "the paper counts TF's graph (1001 classes; its MAdds include the SE and hard-swish products)"
# The TF reference trains with these; the checkpoints' running statistics assume them.
_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class BlockCfg(NamedTuple):
    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    use_hs: bool  # hard-swish, else ReLU
    stride: int

    def scaled(self, width_mult: float, expand_from_input: bool = False) -> "BlockCfg":
        """``expand_from_input``: Google's rule, the expansion a ratio of the *scaled* input (TF's
        ``expand_input``); torchvision scales the table's expanded width itself."""
        c = partial(_adjust, width_mult=width_mult)
        expanded = _adjust(c(self.in_channels) * self.expanded / self.in_channels, 1.0) if expand_from_input \
            else c(self.expanded)
        return self._replace(in_channels=c(self.in_channels), expanded=expanded, out_channels=c(self.out_channels))


def _adjust(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck with optional squeeze-excitation (hard-sigmoid gate) and hard-swish."""

    def __init__(self, cfg: BlockCfg) -> None:
        super().__init__()
        if cfg.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {cfg.stride}")
        self.use_res_connect = cfg.stride == 1 and cfg.in_channels == cfg.out_channels
        act = nn.Hardswish if cfg.use_hs else nn.ReLU
        conv = partial(ConvNormAct, norm_layer=_NORM)
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_channels:
            layers.append(conv(cfg.in_channels, cfg.expanded, kernel_size=1, activation_layer=act))
        layers.append(
            conv(cfg.expanded, cfg.expanded, kernel_size=cfg.kernel, stride=cfg.stride, groups=cfg.expanded,
                 activation_layer=act)
        )
        if cfg.use_se:
            squeeze = make_divisible(cfg.expanded // 4, 8)
            layers.append(SqueezeExcitation(cfg.expanded, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(conv(cfg.expanded, cfg.out_channels, kernel_size=1, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


# Paper Tables 1 and 2. NL: HS = hard-swish, RE = ReLU.
_LARGE: Sequence[BlockCfg] = [
    BlockCfg(*row) for row in [
        # in, k, exp, out, SE, HS, s
        (16, 3, 16, 16, False, False, 1),
        (16, 3, 64, 24, False, False, 2),
        (24, 3, 72, 24, False, False, 1),
        (24, 5, 72, 40, True, False, 2),
        (40, 5, 120, 40, True, False, 1),
        (40, 5, 120, 40, True, False, 1),
        (40, 3, 240, 80, False, True, 2),
        (80, 3, 200, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 480, 112, True, True, 1),
        (112, 3, 672, 112, True, True, 1),
        (112, 5, 672, 160, True, True, 2),
        (160, 5, 960, 160, True, True, 1),
        (160, 5, 960, 160, True, True, 1),
    ]
]
_SMALL: Sequence[BlockCfg] = [
    BlockCfg(*row) for row in [
        # in, k, exp, out, SE, HS, s
        (16, 3, 16, 16, True, False, 2),
        (16, 3, 72, 24, False, False, 2),
        (24, 3, 88, 24, False, False, 1),
        (24, 5, 96, 40, True, True, 2),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 120, 48, True, True, 1),
        (48, 5, 144, 48, True, True, 1),
        (48, 5, 288, 96, True, True, 2),
        (96, 5, 576, 96, True, True, 1),
        (96, 5, 576, 96, True, True, 1),
    ]
]


class MobileNetV3(nn.Module):
    def __init__(
        self, setting: Sequence[BlockCfg], last_channel: int, *, num_classes: int = 1000, dropout: float = 0.2,
        activation: type[nn.Module] = nn.Hardswish,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvNormAct(3, setting[0].in_channels, stride=2, norm_layer=_NORM, activation_layer=activation)
        ]
        layers += [InvertedResidual(cfg) for cfg in setting]
        last_in = setting[-1].out_channels
        last_conv = 6 * last_in
        layers.append(ConvNormAct(last_in, last_conv, kernel_size=1, norm_layer=_NORM, activation_layer=activation))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # The head runs after pooling, where a wide 1x1 layer costs almost nothing (paper Sec. 5.1).
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            activation(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_conv_bn_linear(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _mobilenet_v3(arch: str, *, width_mult: float = 1.0, google: bool = False, minimal: bool = False,
                  **kwargs: Any) -> MobileNetV3:
    """``google``: scale as Google's TF models do (their checkpoints and the paper's 0.75 rows): expansions
    as ratios of the scaled input, and the 1280/1024-wide head kept at full width (as MobileNetV2 keeps its
    1280). torchvision instead scales the table's expanded widths and the head: another network below 1.0.
    ``minimal``: Google's "minimalistic" models: the same widths with none of the advanced blocks (no
    squeeze-and-excite, ReLU for hard-swish everywhere, 3x3 for every 5x5 depthwise kernel)."""
    setting, last_channel = {"large": (_LARGE, 1280), "small": (_SMALL, 1024)}[arch]
    head = last_channel if google else _adjust(last_channel, width_mult)
    setting = [cfg.scaled(width_mult, expand_from_input=google) for cfg in setting]
    if minimal:
        setting = [cfg._replace(kernel=3, use_se=False, use_hs=False) for cfg in setting]
        kwargs.setdefault("activation", nn.ReLU)
    return MobileNetV3(setting, head, **kwargs)


_URL = "https://download.pytorch.org/models/"


@register_model(
    family="mobilenet_v3",
    paper=PAPER,
    min_resolution=1,
    published=Published(
        params=5483032, macs=0.217e9, top1=74.042,
        kind="torchvision", source="torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=5400000, macs=219e6, top1=75.2, source="Howard et al. 2019, Table 3 (224 px)",
                        note=_TF_COUNT),
    ),
    weights=Weights(url=_URL + "mobilenet_v3_large-8738ca79.pth", sha256="8738ca79"),
)
def mobilenet_v3_large(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("large", **kwargs)


@register_model(
    family="mobilenet_v3",
    paper=PAPER,
    min_resolution=1,
    published=Published(
        params=2542856, macs=0.057e9, top1=67.668,
        kind="torchvision", source="torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=2500000, macs=56e6, top1=67.4, source="Howard et al. 2019, Table 3 (224 px)",
                        note=_TF_COUNT),
    ),
    weights=Weights(url=_URL + "mobilenet_v3_small-047dcff4.pth", sha256="047dcff4"),
)
def mobilenet_v3_small(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("small", **kwargs)


# Google's 0.75 models (the paper's Table 3 rows): every layer scaled but the head.
def _google_075(params: int, timm: str, mmacs: float, mparams: float, top1: float) -> dict[str, Any]:
    return dict(family="mobilenet_v3", paper=PAPER, min_resolution=1, published=Published(
        params=params, kind="reference", source=f"timm {timm} (Google's TF checkpoint layout)",
        paper=Published(params=int(mparams * 1e6), macs=mmacs * 1e6, top1=top1,
                        source="Howard et al. 2019, Table 3 (224 px)",
                        note="the paper's MAdds include the SE and hard-swish products a convolution + FC count "
                             "leaves out (Small 0.75: 43.4M counted, 44M there)")))


@register_model(**_google_075(3993528, "mobilenetv3_large_075", 155, 4.0, 73.3))
def mobilenet_v3_large_075(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("large", width_mult=0.75, google=True, **kwargs)


@register_model(**_google_075(2041872, "mobilenetv3_small_075", 44, 2.0, 65.4))
def mobilenet_v3_small_075(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("small", width_mult=0.75, google=True, **kwargs)


# Google's minimalistic checkpoints (not in the paper's tables): the figures of the TF-slim MobileNetV3 README.
def _minimal(params: int, timm: str, mmacs: float, mparams: float, top1: float, note: str = "") -> dict[str, Any]:
    return dict(family="mobilenet_v3", paper=PAPER, min_resolution=1, published=Published(
        params=params, kind="reference", source=f"timm {timm} (Google's TF checkpoint layout; TF 'same' padding there)",
        paper=Published(params=int(mparams * 1e6), macs=mmacs * 1e6, top1=top1, note=note,
                        source="not in the paper's tables: tensorflow/models research/slim/nets/mobilenet README, "
                               "'Minimalistic checkpoints' (224 px)")))


@register_model(**_minimal(3924288, "tf_mobilenetv3_large_minimal_100", 209, 3.9, 72.3))
def mobilenet_v3_large_minimal(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("large", google=True, minimal=True, **kwargs)


@register_model(**_minimal(2044736, "tf_mobilenetv3_small_minimal_100", 65, 2.0, 61.9, note=(
    "the README's MACs for Small run above the paper's count of the same network (Small 1.0: README 66M, paper's "
    "Table 3 56M); a convolution + FC count of the minimalistic Small is 52.3M")))
def mobilenet_v3_small_minimal(**kwargs: Any) -> MobileNetV3:
    return _mobilenet_v3("small", google=True, minimal=True, **kwargs)
