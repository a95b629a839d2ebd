"""Tests parametrised over the registry: a model is tested the moment it is registered."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgecnn
from edgecnn.accounting import compare_sources, model_stats
from edgecnn.accounting import rounding as _rounding
from edgecnn.data import evaluation_batch
from edgecnn.errors import ConfigError, UnknownModelError, WeightsError
from edgecnn.models import MODELS, get_spec, preprocessing
from edgecnn.models._factory import build_model
from reference import key_layout, logit_tolerance, reference_logits, rounding_spread
from zoo_selection import sweep

ALL = MODELS.names()
FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"
TORCHVISION = sorted(p.name.removesuffix(".json.gz") for p in FIXTURES.glob("*.json.gz"))
REQUIRED_TORCHVISION = (
    ["alexnet", "googlenet", "inception_v3", "squeezenet1_0", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small",
     "mobilenet_v3_large", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
     "wide_resnet101_2"]
    + [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + [f"densenet{d}" for d in (121, 161, 169, 201)]
    + [f"shufflenet_v2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")] + [f"mnasnet{w}" for w in ("0_5", "0_75", "1_0", "1_3")]
    + [f"efficientnet_b{i}" for i in range(8)]
)


def small_resolution(spec) -> int:
    return spec.resolution if spec.fixed_resolution else max(spec.min_resolution, 64 if spec.name != "inception_v3" else 80)


def test_required_models_are_registered():
    missing = [n for n in REQUIRED_TORCHVISION + ["lenet5", "mobilenet_v1", "shufflenet_v1_g3", "efficientnet_lite0",
                                                  "efficientnet_lite4"] if n not in MODELS]
    assert not missing
    assert set(REQUIRED_TORCHVISION) <= set(TORCHVISION), "every torchvision architecture has a recorded fixture"


@pytest.mark.parametrize("name", sweep(export=False))  # heavy members and variants: `pytest -m slow`
def test_forward_at_reduced_resolution(name):
    spec = get_spec(name)
    r = small_resolution(spec)
    torch.manual_seed(0)
    model = build_model(spec, 7, {}).eval()
    with torch.no_grad():
        y = model(torch.randn(2, spec.in_chans, r, r))
    assert y.shape == (2, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_params_and_macs_match_published(name):
    """The held-to figures within 1% (or the spec's stated tolerance); any other source >1% away says why."""
    spec = get_spec(name)
    pub = spec.published
    if pub.params is None and pub.macs is None:
        pytest.skip(f"{name}: no published figures")
    _stats, checks = compare_sources(name)
    stats = checks[0].stats  # measured under the held-to figures' own resolution and options
    if pub.params is not None:
        tol = max(pub.params_tolerance * pub.params, _rounding(pub.params))
        assert abs(stats.params - pub.params) <= tol, (stats.params, pub.params)
    if pub.macs is not None:
        tol = max(pub.macs_tolerance * pub.macs, _rounding(pub.macs))
        assert abs(stats.macs - pub.macs) <= tol, (stats.macs, pub.macs)
    unexplained = [(c.source.source, c.departures) for c in checks if c.departures and not c.source.note]
    assert not unexplained, f"more than 1% from a source without a note saying why: {unexplained}"


def test_cs231n_anchor_figures():
    assert model_stats("vgg16").params == 138_357_544
    assert abs(model_stats("vgg16").macs - 15.47e9) < 0.01e9
    assert model_stats("mobilenet_v2").params == 3_504_872 and abs(model_stats("mobilenet_v2").macs - 300e6) < 3e6
    assert model_stats("resnet50").params == 25_557_032 and abs(model_stats("resnet50").macs - 4.09e9) < 0.01e9
    lenet = model_stats("lenet5")
    assert abs(lenet.params - 61_706) < 100
    layer_macs = sum(layer.macs for layer in lenet.layers)
    assert layer_macs == lenet.macs and lenet.activations > 0


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_layout_and_forward(name):
    ref = json.loads(gzip.open(FIXTURES / f"{name}.json.gz", "rt").read())
    spec = get_spec(name)
    model = build_model(spec, 1000, dict(ref["build_options"]))
    assert key_layout(model) == ref["keys"], "state_dict keys/shapes differ from torchvision's"
    ours = reference_logits(model, name)
    theirs = np.asarray(ref["logits"])
    bound = logit_tolerance(theirs, 0.0)
    if (np.abs(ours - theirs) > bound).any():  # only then is the (costly) re-ordering spread worth measuring
        bound = logit_tolerance(theirs, rounding_spread(model, name, ours))
    worst = np.abs(ours - theirs) / bound
    assert worst.max() <= 1.0, (f"{int((worst > 1).sum())} of {worst.size} logits differ from torchvision's beyond "
                                f"the float64 bound; worst {np.abs(ours - theirs).max():.3g}")


def test_random_init_is_deterministic_and_lively():
    a = edgecnn.create_model("mobilenet_v3_small", seed=3)
    b = edgecnn.create_model("mobilenet_v3_small", seed=3)
    c = edgecnn.create_model("mobilenet_v3_small", seed=4)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    prep = preprocessing(get_spec("mobilenet_v3_small"))
    x = torch.from_numpy(evaluation_batch(prep, 8))  # held-out photos, not the calibration ones
    with torch.no_grad():
        ya, yc = a(x), c(x)
    assert not torch.allclose(ya, yc)
    assert 1.0 < float(ya.std()) < 10.0  # order-1 logits, not collapsed to a constant
    assert float(torch.softmax(ya, 1).max(1).values.mean()) > 0.05  # some inputs are confidently classified


def test_calibration_resolution_sets_where_batchnorm_is_estimated():
    default = edgecnn.create_model("squeezenet1_1", seed=2)
    at_224 = edgecnn.create_model("squeezenet1_1", seed=2, calibration_resolution=224)  # the default size
    small = edgecnn.create_model("squeezenet1_1", seed=2, calibration_resolution=96)
    for (k, v), (_, w) in zip(default.state_dict().items(), at_224.state_dict().items()):
        assert torch.equal(v, w), k
    assert not torch.equal(default.classifier[1].weight, small.classifier[1].weight)  # the head scale re-fitted
    with pytest.raises(ConfigError, match="too small"):
        edgecnn.create_model("squeezenet1_1", calibration_resolution=8)


def test_create_model_errors(tmp_path):
    with pytest.raises(UnknownModelError, match="did you mean"):
        edgecnn.create_model("resnet19")
    with pytest.raises(ConfigError, match="num_classes"):
        edgecnn.create_model("lenet5", num_classes=0)
    with pytest.raises(ConfigError, match="does not take option 'colour'"):
        edgecnn.create_model("lenet5", colour=True)
    with pytest.raises(ConfigError, match="too small"):
        get_spec("squeezenet1_0").check_resolution(8)
    with pytest.raises(ConfigError, match="only takes 32x32"):
        get_spec("lenet5").check_resolution(64)
    with pytest.raises(WeightsError, match="no published ImageNet weights"):
        edgecnn.create_model("mobilenet_v1", weights="imagenet")


def test_local_checkpoint_roundtrip_and_wrong_architecture(tmp_path):
    m = edgecnn.create_model("mobilenet_v3_small", seed=1)
    path = tmp_path / "m.pth"
    torch.save(m.state_dict(), path)
    again = edgecnn.create_model("mobilenet_v3_small", weights=str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x), again(x))
    head = edgecnn.create_model("mobilenet_v3_small", weights=str(path), num_classes=5)
    assert head(x).shape == (1, 5)
    with pytest.raises(WeightsError, match="first mismatching key|missing key"):
        edgecnn.create_model("mobilenet_v2", weights=str(path))


def test_imagenet_download_path_uses_hash_checked_cache(tmp_path, monkeypatch):
    """weights='imagenet' goes through the real download code (file URL here, offline)."""
    import dataclasses
    import hashlib

    from edgecnn.models import _spec

    src = edgecnn.create_model("squeezenet1_1", seed=5)
    ckpt = tmp_path / "squeezenet.pth"
    torch.save(src.state_dict(), ckpt)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    spec = get_spec("squeezenet1_1")
    fake = dataclasses.replace(spec, weights=(dataclasses.replace(spec.weights[0], url=ckpt.as_uri(), sha256=digest[:8]),))
    monkeypatch.setitem(_spec.MODELS._items, "squeezenet1_1", fake)
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    m = edgecnn.create_model("squeezenet1_1", weights="imagenet")
    assert torch.equal(m.state_dict()["classifier.1.weight"], src.state_dict()["classifier.1.weight"])
    assert (tmp_path / "cache" / "checkpoints" / "squeezenet.pth").is_file()
    bad = dataclasses.replace(fake, weights=(dataclasses.replace(fake.weights[0], url=ckpt.as_uri(), sha256="00000000"),))
    monkeypatch.setitem(_spec.MODELS._items, "squeezenet1_1", bad)
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(WeightsError, match="does not match"):
        edgecnn.create_model("squeezenet1_1", weights="imagenet")
