"""GoogLeNet (Inception v1), laid out as torchvision's (checkpoints load with ``strict=True``).

Paper: https://arxiv.org/abs/1409.4842 (Szegedy et al., "Going Deeper with Convolutions").
Two departures from the paper follow torchvision's checkpoint, which was ported from TensorFlow:
every convolution is followed by BatchNorm, and the "5x5" branch is a 3x3 convolution
(https://github.com/pytorch/vision/issues/906). ``googlenet_2014`` is the paper's network: 5x5
branches, convolutions with biases and no BatchNorm (2014 predates it), and local response
normalisation after the first pool and before the second, as in Fig. 3. Its inception (3a) 5x5 branch
costs 28x28x192x16 + 5x5x28x28x16x32 = 12,443,648 multiply-adds, the lecture's "12M" example.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._spec import IMAGENET_MEAN, IMAGENET_STD, Published, Weights, register_model


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN -> ReLU, keys ``conv``/``bn``; eps 1e-3 as in the TensorFlow originals."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def imagenet_to_half_range(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise an ImageNet-normalised input to the (x - 0.5) / 0.5 scaling Google's checkpoints expect."""
    stats = enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))
    return torch.cat([x[:, i : i + 1] * (s / 0.5) + (m - 0.5) / 0.5 for i, (m, s) in stats], 1)


class PlainConv2d(nn.Module):
    """conv (with bias) -> ReLU: the paper's 2014 layer, before BatchNorm existed."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **conv_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


class Inception(nn.Module):
    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int,
        conv: type[nn.Module] = BasicConv2d, kernel5: int = 3,
    ) -> None:
        super().__init__()
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1), conv(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        # torchvision: 3x3, not the paper's 5x5: the checkpoint was trained this way (see module docstring).
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1), conv(ch5x5red, ch5x5, kernel_size=kernel5, padding=kernel5 // 2)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: a training-time gradient shortcut, never run in eval mode."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


# Paper, Table 1. "aux" names the auxiliary head fed by the block's output; "pool" is the kernel
# of the stride-2 max-pool that follows the block (0: none).
#   block          1x1  3x3 reduce  3x3  5x5 reduce  5x5  pool proj  aux     pool
_BLOCKS = (
    ("inception3a", 64, 96, 128, 16, 32, 32, None, 0),
    ("inception3b", 128, 128, 192, 32, 96, 64, None, 3),
    ("inception4a", 192, 96, 208, 16, 48, 64, "aux1", 0),
    ("inception4b", 160, 112, 224, 24, 64, 64, None, 0),
    ("inception4c", 128, 128, 256, 24, 64, 64, None, 0),
    ("inception4d", 112, 144, 288, 32, 64, 64, "aux2", 0),
    ("inception4e", 256, 160, 320, 32, 128, 128, None, 2),
    ("inception5a", 256, 160, 320, 32, 128, 128, None, 0),
    ("inception5b", 384, 192, 384, 48, 128, 128, None, 0),
)


class GoogLeNet(nn.Module):
    """Returns logits; in training mode with ``aux_logits`` it returns ``(logits, aux2, aux1)`` as torchvision."""

    def __init__(
        self,
        blocks: tuple[tuple, ...],
        *,
        num_classes: int = 1000,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        paper: bool = False,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        conv = PlainConv2d if paper else BasicConv2d
        self.conv1 = conv(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The paper normalises locally (LRN) after the first pool and before the second; BN replaced both.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if paper else nn.Identity()
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        aux_inputs: dict[str, int] = {}
        pools = 2  # maxpool1 and maxpool2 are the stem's
        # (block, aux head or None, max-pool or None), in execution order, for forward.
        self._plan: list[tuple[str, str | None, str | None]] = []
        for name, c1, c3r, c3, c5r, c5, proj, aux, pool in blocks:
            self.add_module(name, Inception(channels, c1, c3r, c3, c5r, c5, proj, conv, 5 if paper else 3))
            channels = c1 + c3 + c5 + proj
            if aux is not None:
                aux_inputs[aux] = channels
            pool_name = None
            if pool:
                pools += 1
                pool_name = f"maxpool{pools}"
                self.add_module(pool_name, nn.MaxPool2d(pool, stride=2, ceil_mode=True))
            self._plan.append((name, aux, pool_name))
        # Registered after the blocks, as in torchvision, so the state_dict keys come in its order.
        for aux, aux_channels in aux_inputs.items():
            self.add_module(aux, InceptionAux(aux_channels, num_classes, dropout_aux) if aux_logits else None)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.transform_input:
            x = imagenet_to_half_range(x)
        x = self.lrn1(self.maxpool1(self.conv1(x)))
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
        aux_out: dict[str, torch.Tensor] = {}
        for name, aux, pool in self._plan:
            x = getattr(self, name)(x)
            if aux is not None and self.aux_logits and self.training:
                aux_out[aux] = getattr(self, aux)(x)
            if pool is not None:
                x = getattr(self, pool)(x)
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux_out:
            return (x, *reversed(aux_out.values()))
        return x


def _googlenet(blocks: tuple[tuple, ...], *, num_classes: int, **options: Any) -> GoogLeNet:
    model = GoogLeNet(blocks, num_classes=num_classes, **options)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # torchvision's init; its +-2 bounds are absolute, so at std 0.01 nothing is truncated.
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


_TABLE1 = ("Szegedy et al. 2015, Table 1 (params and ops columns summed, classifier included, aux heads not); "
           "top-5: Table 3, 1 model 1 crop (10.07% error)")


def _drop_aux_heads(state_dict: dict) -> dict:
    """torchvision's checkpoint carries the aux heads; our default model, built for inference, has none."""
    return {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}


@register_model(
    family="googlenet",
    paper="https://arxiv.org/abs/1409.4842",
    min_resolution=15,
    published=Published(
        params=6624904, macs=1.498e9, top1=69.778,
        kind="torchvision", source="torchvision GoogLeNet_Weights.IMAGENET1K_V1 model card",
        paper=Published(params=6_960_845, macs=1.5e9, top1=None, top5=89.93, source=_TABLE1,
                        note="torchvision's 3x3 '5x5' branches and BatchNorm (googlenet_2014 is the paper's)"),
    ),
    weights=Weights(
        url="https://download.pytorch.org/models/googlenet-1378be20.pth",
        sha256="1378be20",
        # The ported TensorFlow weights expect inputs scaled to [-1, 1].
        options={"transform_input": True},
        convert=_drop_aux_heads,
    ),
)
def googlenet(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _googlenet(_BLOCKS, num_classes=num_classes, **options)


@register_model(
    family="googlenet",
    paper="https://arxiv.org/abs/1409.4842",
    min_resolution=15,
    published=Published(
        # Table 1's params column counts weights only, in K = 1,024 (inception (3a): 163,328 / 1,024 = 159.5 -> "159K"):
        # its column sums to 6,797.7K = 6,960,845 weights, printed "6.8M".
        params=6_960_845, macs=1.5e9, top5=89.93, source=_TABLE1, macs_tolerance=0.06,
        note="the params column counts weights only in K = 1,024 (3a: 163,328 / 1,024 -> '159K'): its 6,797.7K is "
             "6,960,845, 0.4% under the 6,990,272 weights counted; the ops column's only gap is conv1's '34M' row "
             "(7x7x3 kernels at 112x112x64 are 118M): with 118M it sums to 1,586M, 0.2% from the 1,583M counted",
    ),
)
def googlenet_2014(*, num_classes: int = 1000, **options: Any) -> nn.Module:
    return _googlenet(_BLOCKS, num_classes=num_classes, paper=True, **options)
