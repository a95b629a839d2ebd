"""The emphasis families' constructors beyond the registered variants: defaults, refused options, width
multipliers and channel rounding, custom settings, and the helpers that record published figures.
Construction on torch's meta device (shapes only) where no forward is needed: milliseconds per model."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from edgecnn.models import get_spec
from edgecnn.models import mobilenet_v2 as mv2
from edgecnn.models import mobilenet_v3 as mv3
from edgecnn.models import shufflenet_v1 as sv1
from edgecnn.models import squeezenet as sq
from edgecnn.models._factory import build_model
from edgecnn.models._layers import SqueezeExcitation
from edgecnn.models._spec import Published

EMPHASIS = ["squeezenet1_0", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "shufflenet_v1_g1", "shufflenet_v1_g8"]


def test_defaults_are_imagenet_s():
    with torch.device("meta"):
        shufflenet = sv1.ShuffleNetV1()
        assert shufflenet.fc.out_features == 1000 and shufflenet.stage3[0].groups == 3
        assert mv2.MobileNetV2().classifier[-1].out_features == 1000
        assert mv3.MobileNetV3(mv3._SMALL, 1024).classifier[-1].out_features == 1000
        assert sq.SqueezeNet(*sq._ARCHS["1_1"]).classifier[1].out_channels == 1000


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", EMPHASIS)
def test_num_classes_reaches_the_head_through_global_pooling(name):
    model = build_model(get_spec(name), 7, {}).eval()
    with torch.no_grad():  # 96 px: the last feature map is larger than 1x1, so the pooling must be global
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 7)


@pytest.mark.parametrize("make, message", [
    (lambda: mv2.InvertedResidual(8, 8, 3, 6), "stride must be 1 or 2, got 3"),
    (lambda: mv3.InvertedResidual(mv3.BlockCfg(16, 3, 16, 16, False, False, 3)), "stride must be 1 or 2, got 3"),
    (lambda: sv1.ShuffleUnit(24, 240, 3, 3), "stride must be 1 or 2, got 3"),
    (lambda: sv1.ShuffleNetV1(groups=5), "groups must be one of [1, 2, 3, 4, 8], got 5"),
    (lambda: sv1.ShuffleNetV1(width_mult=0.0), "width_mult must be positive, got 0.0"),
])
def test_impossible_architectures_are_refused(make, message):
    with torch.device("meta"), pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


# (width, round_nearest) -> stem, the 17 block outputs, last channel. Width 1.4: torchvision's mobilenet_v2(width_mult=1.4)
# (48 ... 448, 1792); round_nearest=1: the exact products (16.5 -> 16 or 17 is where rounding shows).
@pytest.mark.parametrize("width, rounding, stem, blocks, last", [
    (1.4, 8, 48, [24, 32, 32, 48, 48, 48, 88, 88, 88, 88, 136, 136, 136, 224, 224, 224, 448], 1792),
    (0.5, 1, 16, [8, 12, 12, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80, 160], 1280),  # last never shrinks
    (1.01, 1, 32, [16, 24, 24, 32, 32, 32, 65, 65, 65, 65, 97, 97, 97, 162, 162, 162, 323], 1293),
])
def test_mobilenet_v2_width_and_channel_rounding(width, rounding, stem, blocks, last):
    with torch.device("meta"):
        m = mv2.MobileNetV2(width_mult=width, round_nearest=rounding)
    residual = [b for b in m.features if isinstance(b, mv2.InvertedResidual)]
    assert m.features[0][0].out_channels == stem and [b.out_channels for b in residual] == blocks
    assert [b.conv[-2].out_channels for b in residual] == blocks  # the attribute is the projection's width
    assert m.last_channel == last and m.features[-1][0].out_channels == last and m.classifier[-1].in_features == last


def _v3_blocks(model):
    out = []
    for b in model.features[1:-1]:
        convs = [c for c in b.modules() if isinstance(c, nn.Conv2d)]
        se = [c.fc1.out_channels for c in b.modules() if isinstance(c, SqueezeExcitation)]
        expanded = next(c.out_channels for c in convs if c.groups > 1)
        assert b.out_channels == convs[-1].out_channels
        out.append((convs[0].in_channels, expanded, b.out_channels, se[0] if se else None))
    return out


# stem, the first three blocks (in, expanded, out, squeeze), head: channel x width rounded to multiples of 8
@pytest.mark.parametrize("arch, width, stem, first, head", [
    ("small", 0.5, 8, [(8, 8, 8, 8), (8, 40, 16, None), (16, 48, 16, None)], 512),
    ("large", 0.75, 16, [(16, 16, 16, None), (16, 48, 24, None), (24, 56, 24, None)], 960),
    ("large", 5.0, 80, [(80, 80, 80, None), (80, 320, 120, None), (120, 360, 120, None)], 6400),
    ("small", 5.0, 80, [(80, 80, 80, 24), (80, 360, 120, None), (120, 440, 120, None)], 5120),
])
def test_mobilenet_v3_width(arch, width, stem, first, head):
    with torch.device("meta"):
        m = mv3._mobilenet_v3(arch, width_mult=width, num_classes=3)
    assert m.features[0][0].out_channels == stem and _v3_blocks(m)[:3] == first
    assert m.classifier[0].out_features == head and m.classifier[-1].out_features == 3


@pytest.mark.usefixtures("one_thread")
def test_mobilenet_v3_stem_and_head_follow_a_custom_setting():
    setting = [mv3.BlockCfg(8, 3, 8, 16, False, False, 2), mv3.BlockCfg(16, 3, 107, 24, True, True, 1)]
    m = mv3.MobileNetV3(setting, 64, num_classes=5).eval()
    assert m.features[0][0].out_channels == 8  # the first block's input
    # squeeze: 107 // 4 = 26 -> 24 (a multiple of 8, less than 10% below 26; 26.75 would give 32)
    assert _v3_blocks(m) == [(8, 8, 16, None), (16, 107, 24, 24)]
    assert (m.features[-1][0].in_channels, m.features[-1][0].out_channels) == (24, 144)  # 6 x the last block's output
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("groups, width, stem", [(3, 3.0, 72), (3, 0.25, 6), (8, 0.25, 8)])
def test_shufflenet_v1_stem_for_widths_outside_the_table(groups, width, stem):
    """Widths the authors did not train scale the 24-channel conv1, rounded to a multiple of the groups."""
    with torch.device("meta"):
        assert sv1.ShuffleNetV1(groups=groups, width_mult=width).conv1[0].out_channels == stem


def test_published_figures_helpers():
    table = "Zhang et al. 2017 (arXiv 1707.01083v2) Tables 1, 2, 5"
    plain = sv1._published(143, 66.4)
    note = ("Table 1 rounds to whole MFLOPs and leaves out the final FC layer (~1.1M MACs at 1.0x): with it, g4 and "
            "g8 count 1.0% above the table")
    assert plain == Published(params=None, macs=143e6, top1=66.4, source=table, macs_tolerance=0.015, note=note)
    counted = sv1._published(137, 67.4, 1.9e6)
    assert counted == Published(params=1_900_000, macs=137e6, top1=67.4, macs_tolerance=0.015, note=note,
                                source=table + "; params: megvii-model/ShuffleNet-Series ShuffleNetV1 README")
    assert isinstance(counted.params, int)
    assert sv1._spec(plain) == {"family": "shufflenet_v1", "paper": "https://arxiv.org/abs/1707.01083",
                                "min_resolution": 1, "published": plain}
    assert get_spec("shufflenet_v1_g3").published == counted and get_spec("shufflenet_v1_g1").published == plain
    card = sq._published("SqueezeNet1_1_Weights", 1235496, 0.349, 58.178)
    assert card == Published(params=1235496, macs=0.349e9, top1=58.178, kind="torchvision",
                             source="torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1 model card")
    registered = get_spec("squeezenet1_1").published
    assert replace(registered, paper=None) == card and "not in the paper" in registered.paper.source


def test_mobilenet_v2_stem_follows_round_nearest():
    with torch.device("meta"):  # 32 x 0.55 = 17.6: 18 to the nearest 1, 16 to the nearest 8
        assert mv2.MobileNetV2(width_mult=0.55, round_nearest=1).features[0][0].out_channels == 18
        assert mv2.MobileNetV2(width_mult=0.55).features[0][0].out_channels == 16
