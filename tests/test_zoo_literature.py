"""The zoo against the literature: the reference counts of issue 13, the papers' own figures, and `info`."""
import json

import pytest
import torch

from edgecnn import cli
from edgecnn.accounting import model_stats, rounding
from edgecnn.models import MODELS, get_spec
from edgecnn.models._factory import build_model

# Exact parameter counts of public reference implementations (at the spec's classes: 1000; CIFAR's 10), as quoted
# in issue 13 or, where it gives none, counted from the reference (timm, Cadene's pretrainedmodels, pytorchcv, the authors' Caffe files).
REFERENCE_PARAMS = {
    "inception_v4": 42_679_816, "inception_resnet_v2": 55_843_464, "xception": 22_855_952,
    "se_resnet50": 28_088_024, "se_resnet101": 49_326_872, "se_resnet152": 66_821_848,
    "se_resnext50_32x4d": 27_559_896, "se_resnext101_32x4d": 48_955_416, "senet154": 115_088_984,
    "mnasnet_a1": 3_887_038, "dpn68": 12_611_602, "dpn92": 37_668_392, "dpn131": 79_254_504,
    "resnext101_32x4d": 44_177_704, "mobilenet_v3_large_075": 3_993_528, "mobilenet_v3_small_075": 2_041_872,
    "bn_inception": 11_295_240, "resattnet56": 31_810_728, "resattnet92": 52_466_344,
    "squeezenext23_w1": 718_280, "squeezenext23v5_w1": 931_016, "squeezenext23_w2": 2_362_728,
    "squeezenext23v5_w2": 3_223_912, "alexnet_2012": 60_965_224, "nasnet_a_mobile": 5_289_978,
    "nasnet_a_large": 88_753_150,
    # issue 25 (tests/test_zoo_timm.py checks these against timm, logits included, where timm is installed)
    "dpn98": 61_570_728, "dpn107": 86_917_800, "mobilenet_v1": 4_231_976,
    "mobilenet_v3_large_minimal": 3_924_288, "mobilenet_v3_small_minimal": 2_044_736,
    "wrn28_10": 36_479_194,  # 10 classes; Table 1's layout, convs without bias as the authors' code (paper: 36.5M)
}


def _params(name: str) -> int:
    with torch.device("meta"):  # shapes only
        return sum(p.numel() for p in build_model(get_spec(name), get_spec(name).num_classes, {}).parameters())


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_reference_parameter_counts(name):
    assert _params(name) == REFERENCE_PARAMS[name]


def test_every_spec_cites_its_paper():
    for name in MODELS.names():
        paper = get_spec(name).published.paper_figures
        assert paper is not None and paper.source, f"{name}: no paper figures or statement why there are none"


def test_googlenet_as_published_reproduces_the_lecture_inception_3a_example():
    stats = model_stats("googlenet_2014")
    branch = [layer for layer in stats.layers if layer.name.startswith("inception3a.branch3.")]
    # 28x28x192 -> 16 (1x1) then 5x5 -> 32: 2,408,448 + 10,035,200 (the lecture's "12M").
    assert sum(layer.macs for layer in branch) == 28 * 28 * 192 * 16 + 5 * 5 * 28 * 28 * 16 * 32 == 12_443_648
    tv = model_stats("googlenet")  # torchvision's 3x3 "5x5" branch
    assert sum(layer.macs for layer in tv.layers if layer.name.startswith("inception3a.branch3.")) < 7e6


def test_resnet_v1_strides_the_1x1():
    v1, v15 = model_stats("resnet50_v1"), model_stats("resnet50")
    assert v1.params == v15.params and v1.macs < 0.95 * v15.macs  # the paper's 3.8G (3.86G counted) vs 4.09G


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075",
                                  "mobilenet_v2_130", "mobilenet_v2_140"])
def test_google_mobilenet_v2_table_counts_weights_only_at_1001_classes(name):
    """The explanation in the note, checked: no BatchNorm parameters, one more (background) class."""
    with torch.device("meta"):
        model = build_model(get_spec(name), 1000, {})
    bn = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    table = [s for s in get_spec(name).published.sources if "tensorflow/models" in s.source][0]
    tf_count = sum(p.numel() for p in model.parameters()) - 2 * bn + 1281
    assert abs(tf_count - table.params) <= rounding(table.params)


def test_mobilenet_v3_075_differs_from_torchvision_width_mult():
    google, torchvision_rule = _params("mobilenet_v3_large_075"), None
    with torch.device("meta"):
        torchvision_rule = sum(p.numel() for p in build_model(get_spec("mobilenet_v3_large"), 1000,
                                                              {"width_mult": 0.75}).parameters())
    assert google == 3_993_528 and torchvision_rule != google


def test_info_sets_paper_beside_card_and_measures_each_under_its_own_conditions(capsys):
    assert cli.main(["info", "efficientnet_b2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    card, paper = out["published"]
    assert card["kind"] == "torchvision" and card["resolution"] == 288 and not card["departs_over_1pct"]
    assert paper["kind"] == "paper" and paper["resolution"] == 260
    assert abs(paper["measured"]["macs"] / paper["macs"] - 1) < 0.01  # 1.0G at 260 px, not 1.09G at 288
    assert "260" in card["note"]
    assert cli.main(["info", "lenet5"]) == 0
    text = capsys.readouterr().out
    assert "computed" in text and "60,000" in text and "C3 fully connected" in text
    assert cli.main(["info", "vgg16"]) == 0
    text = capsys.readouterr().out
    assert "24,000,000" in text and "15,237,608" in text and "arithmetic" in text


def test_googlenet_table1_counts_weights_only_in_units_of_1024():
    """Inception (3a)'s '159K': its weights alone, 163,328, over 1,024; the whole column (6,797.7K) likewise."""
    with torch.device("meta"):
        model = build_model(get_spec("googlenet_2014"), 1000, {})
    weights = lambda prefix: sum(p.numel() for n, p in model.named_parameters()  # noqa: E731
                                 if n.startswith(prefix) and n.endswith("weight"))
    assert weights("inception3a.") == 163_328 and round(163_328 / 1024, 1) == 159.5
    table = get_spec("googlenet_2014").published
    assert table.params == round(6_797.7 * 1024) and abs(weights("") / table.params - 1) < 0.005
    stats = model_stats("googlenet_2014")
    conv1 = sum(layer.macs for layer in stats.layers if layer.name.startswith("conv1."))
    assert conv1 == 112 * 112 * 64 * 7 * 7 * 3  # the row Table 1 prints as '34M'
    assert abs((1502e6 - 34e6 + conv1) / stats.macs - 1) < 0.003  # with it, the ops column meets the count


def test_figures_stated_at_their_own_input_and_recipe():
    attention92 = {s.resolution: s for s in get_spec("resattnet92").published.sources}
    assert attention92[320].top1 == 80.5 and attention92[320].top5 == 95.2
    assert all(s.top1 is None for r, s in attention92.items() if r != 320)  # no 224 px accuracy claimed
    for name in ("squeezenet1_0_simple_bypass", "squeezenet1_0_complex_bypass"):
        paper = get_spec(name).published.paper_figures
        assert paper.resolution == 227 and "Table 6" in paper.source
    assert "scale augmentation only" in get_spec("preact_resnet152").published.paper_figures.source


def test_squeezenet_complex_bypass_wiring_and_table6_size():
    """Sec. 6: identity around fire3/5/7/9, a 1x1 convolution around fire2/4/6/8; Table 6 says 7.7 MB."""
    with torch.device("meta"):
        model = build_model(get_spec("squeezenet1_0_complex_bypass"), 1000, {})
    shortcuts = [m.shortcut for m in model.features if hasattr(m, "shortcut")]
    assert [s is not None for s in shortcuts] == [True, False] * 4
    spec = get_spec("squeezenet1_0_complex_bypass").published
    assert spec.paper.params == int(7.7 * 2**20 / 4) and spec.paper.note


def test_vgg16_lecture_counts_weights_only():
    with torch.device("meta"):
        model = build_model(get_spec("vgg16"), 1000, {})
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    lecture = [s for s in get_spec("vgg16").published.sources if s.kind == "lecture"][0]
    assert f"{weights:,}" in lecture.note and weights != _params("vgg16")


@pytest.mark.parametrize("plain, resnet", [("plain18", "resnet18"), ("plain34", "resnet34")])
def test_plain_nets_are_resnets_without_shortcuts(plain, resnet):
    """Sec. 4.1: the same 3x3 layers, no identity and no projection shortcut; Table 2's cost is ResNet's."""
    with torch.device("meta"):
        p, r = build_model(get_spec(plain), 1000, {}), build_model(get_spec(resnet), 1000, {})
    projections = {k: v.shape for k, v in r.state_dict().items() if ".downsample." in k}
    assert projections and not any(".downsample." in k for k in p.state_dict())
    assert {k: v.shape for k, v in p.state_dict().items()} == {k: v.shape for k, v in r.state_dict().items()
                                                                if k not in projections}
    block = build_model(get_spec(plain), 10, {}).layer1[0].eval()
    y = torch.randn(1, 64, 8, 8)
    with torch.no_grad():  # the block's output is its convolutions' alone: nothing is added back
        assert torch.equal(block(y), block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(y)))))))


def test_wide_resnet_28_10_is_the_cifar_layout():
    model = build_model(get_spec("wrn28_10"), 10, {}).eval()
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [4, 4, 4]  # (28 - 4) / 6 units per group
    assert [getattr(model, f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3)] == [160, 320, 640]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_inception_v2_is_v3_before_the_factorized_stem():
    """Table 3: Inception-v3 = Inception-v2 + RMSProp + label smoothing + factorized 7x7 + BN-auxiliary; only the
    factorized stem changes the inference network. Same modules after the stem, same stem output."""
    v2, v3 = (build_model(get_spec(n), 10, {}).eval() for n in ("inception_v2", "inception_v3"))
    after = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("Conv2d_")}  # noqa: E731
    assert after(v2) == after(v3) and "Conv2d_1a_7x7.conv.weight" in v2.state_dict()
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        assert v2.Conv2d_1a_7x7(x).shape == v3.Conv2d_2b_3x3(v3.Conv2d_2a_3x3(v3.Conv2d_1a_3x3(x))).shape
