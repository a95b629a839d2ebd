"""The export plan's input decisions for any model (pipeline/config.py), without an export: the input shape
(from the zoo spec, --input-shape, the ONNX file or the model's own config), the preprocessing (the model's
own, ImageNet's or the default, then the overrides) and the labels given. Tiny stand-in models only."""
from __future__ import annotations

import pytest
import torch.nn as nn

import tiny_onnx
from edgecnn.data import Preprocessing
from edgecnn.errors import ConfigError
from edgecnn.harness.common import Original
from edgecnn.models._spec import IMAGENET_MEAN, IMAGENET_STD
from edgecnn.pipeline import ExportConfig


class Net(nn.Linear):
    def __init__(self, cfg: dict | None = None):
        super().__init__(1, 1)
        if cfg is not None:
            self.pretrained_cfg = cfg


def _plan(model=None, **kw):
    model = Net() if model is None else model
    plan = ExportConfig(model, targets=("onnxruntime",), **kw).resolve()
    return plan.complete(Original(model, "torch"))


def _error(model=None, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        _plan(model, **kw)
    return str(e.value)


def test_a_module_that_says_nothing_needs_an_input_shape():
    assert _error() == "net does not say what input it takes: pass --input-shape N,C,H,W (e.g. 1,3,224,224)"
    assert _error(Net({"input_size": (3, 32)})).startswith("net does not say")  # not C,H,W


def test_the_shape_and_preprocessing_from_the_models_own_config():
    model = Net({"input_size": (3, 40, 40), "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "crop_pct": 0.8})
    plan = _plan(model, batch=2)
    assert plan.input_shape == (2, 3, 40, 40) and plan.resolution == 40
    assert plan.prep == Preprocessing(40, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 0.8, 3)
    assert plan.notes[-1] == "input shape 2,3,40,40 from the model's config"  # no note on preprocessing
    assert _plan(Net({"input_size": (3, 40, 40)})).prep == Preprocessing(40, IMAGENET_MEAN, IMAGENET_STD, 0.875, 3)


def test_a_given_shape_with_the_default_preprocessing_said():
    plan = _plan(input_shape=(2, 1, 28, 28), batch=2)
    assert plan.input_shape == (2, 1, 28, 28)
    assert _plan(input_shape=(2, 1, 28, 28)).input_shape == (2, 1, 28, 28)  # the shape's batch, --batch left at 1
    assert plan.prep == Preprocessing(28, (0.5,), (0.5,), 0.875, 1)  # not ImageNet's: one channel
    assert plan.notes[-1] == ("preprocessing: the default (resize 32, crop 28, mean [0.5], std [0.5]); "
                              "set --mean/--std/--resize/--crop to what the model was trained with")
    plan = _plan(input_shape=(1, 3, 16, 16))
    assert plan.prep == Preprocessing(16, IMAGENET_MEAN, IMAGENET_STD, 0.875, 3)
    assert _plan(input_shape=(1, 3, 16, 16), mean=(0.5,) * 3, std=(0.2,) * 3).notes == ()  # nothing to say


@pytest.mark.parametrize("kw, message", [
    ({"input_shape": (2, 3, 8, 8), "batch": 4}, "--batch 4 and --input-shape 2,3,8,8 disagree"),
    ({"input_shape": (1, 3, 8, 9)}, "input 8x9: edgecnn takes square inputs (H = W) for now"),
    ({"input_shape": (1, 3, 8)}, "input shape must be 4 positive integers N,C,H,W (e.g. 1,3,224,224), got (1, 3, 8)"),
    ({"input_shape": (1, 3, 0, 0)}, "input shape must be 4 positive integers N,C,H,W (e.g. 1,3,224,224), got (1, 3, 0, 0)"),
    ({"input_shape": (1, True, 8, 8)}, "input shape must be 4 positive integers N,C,H,W (e.g. 1,3,224,224), got (1, True, 8, 8)"),
    ({"input_shape": (1, 3, 8, 8), "crop": 6}, "--crop 6 must be the model's input size (8): the crop is what the model sees"),
    ({"input_shape": (1, 3, 8, 8), "preprocessing": {"gamma": 2}}, "unknown preprocessing key 'gamma' (keys: mean, std, resize, crop)"),
    ({"input_shape": (1, 3, 8, 8), "preprocessing": [0.5]},
     "preprocessing must be an edgecnn.data.Preprocessing or a dict of mean/std/resize/crop"),
    ({"input_shape": (1, 3, 8, 8), "preprocessing": Preprocessing(16, (0.5,) * 3, (0.5,) * 3)},
     "the preprocessing is for 3x16x16 inputs, the model takes 3x8x8"),
])
def test_inputs_that_do_not_fit_are_one_error(kw, message):
    assert _error(**kw) == message


def test_preprocessing_overrides():
    plan = _plan(input_shape=(1, 3, 8, 8), mean=(0.1, 0.2, 0.3), resize=10)
    assert plan.prep == Preprocessing(8, (0.1, 0.2, 0.3), IMAGENET_STD, 0.8, 3) and plan.notes == ()
    mine = Preprocessing(8, (0.5,) * 3, (0.25,) * 3, 0.5, 3)
    assert _plan(input_shape=(1, 3, 8, 8), preprocessing=mine).prep is mine
    # a dict's unset values and an explicit crop: the crop alone means no resize (the whole image)
    assert _plan(input_shape=(1, 3, 8, 8), preprocessing={"std": None, "crop": 8}).prep == Preprocessing(
        8, IMAGENET_MEAN, IMAGENET_STD, 1.0, 3)
    assert _plan(input_shape=(1, 3, 8, 8), preprocessing={"resize": 16}, std=(1.0,) * 3).prep == Preprocessing(
        8, IMAGENET_MEAN, (1.0,) * 3, 0.5, 3)


def test_an_onnx_file_says_its_own_shape(tmp_path):
    fixed = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "fixed.onnx").path
    free = tiny_onnx.save(tiny_onnx.conv_gemm_model(batch="n"), tmp_path / "free.onnx").path

    def plan(path, **kw):
        return ExportConfig(str(path), targets=("onnxruntime",), **kw).resolve().complete(Original(path, "onnxruntime"))

    assert plan(fixed).input_shape == (1, *tiny_onnx.SHAPE[1:]) and plan(free, batch=3).input_shape[0] == 3
    assert plan(free, input_shape=(2, 2, 4, 4), batch=2).input_shape == (2, 2, 4, 4)
    for kw in ({"batch": 2}, {"dynamic_batch": True}):
        with pytest.raises(ConfigError) as e:
            plan(fixed, **kw)
        assert str(e.value) == ("the ONNX file was made for batch 1; leave --batch/--dynamic-batch out or make its "
                                "batch dimension dynamic")
    with pytest.raises(ConfigError) as e:
        plan(free, input_shape=(1, 3, 4, 4))
    assert str(e.value) == "--input-shape 1,3,4,4 does not fit the ONNX file's input ['n', 2, 4, 4]"
    model = tiny_onnx.conv_gemm_model(batch="n")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "c"  # a free channel dimension too
    free_c = tiny_onnx.save(model, tmp_path / "free_c.onnx").path
    with pytest.raises(ConfigError) as e:
        plan(free_c)
    assert str(e.value) == "the ONNX file's input ['n', 'c', 4, 4] has free dimensions: pass --input-shape N,C,H,W"
    assert plan(free_c, input_shape=(1, 2, 4, 4)).input_shape == (1, 2, 4, 4)


def test_a_torch_export_program_says_its_own_shape(tmp_path):
    from edgecnn.models.sources import Program

    path = tmp_path / "m.pt2"
    path.write_bytes(b"not read: the program below stands in for what it holds")
    program = Program.__new__(Program)  # its input shape is all the plan reads
    nn.Module.__init__(program)
    program.input_shape, program.batch = (1, 3, 8, 8), 1

    def plan(**kw):
        return ExportConfig(str(path), targets=("onnxruntime",), **kw).resolve().complete(Original(program, "torch"))

    assert plan().input_shape == (1, 3, 8, 8)
    with pytest.raises(ConfigError) as e:
        plan(batch=2)
    assert str(e.value) == ("the program was made for batch 1; leave --batch/--dynamic-batch out or make its batch "
                            "dimension dynamic")


def test_a_zoo_models_shape_is_checked_against_its_spec():
    def error(**kw):
        with pytest.raises(ConfigError) as e:
            ExportConfig("squeezenet1_1", targets=("onnxruntime",), **kw).resolve().complete(None)
        return str(e.value)

    assert error(input_shape=(1, 1, 64, 64)) == "squeezenet1_1 takes 3-channel square inputs, got --input-shape 1,1,64,64"
    assert error(input_shape=(1, 3, 64, 96)).startswith("squeezenet1_1 takes 3-channel square inputs")
    assert error(input_shape=(1, 3, 64, 64), resolution=96) == "--resolution 96 and --input-shape 1,3,64,64 disagree"
    plan = ExportConfig("squeezenet1_1", targets=("onnxruntime",), input_shape=(2, 3, 64, 64), batch=2).resolve()
    assert plan.complete(None).input_shape == (2, 3, 64, 64)


def test_labels_given_as_a_list_or_a_file(tmp_path):
    assert ExportConfig(Net(), labels=["cat", "dog"], targets=("onnxruntime",)).resolve().given_labels == ["cat", "dog"]
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    assert ExportConfig(Net(), labels=tmp_path / "labels.txt", targets=("onnxruntime",)).resolve().given_labels == [
        "cat", "dog"]
    assert ExportConfig(Net(), targets=("onnxruntime",)).resolve().given_labels is None
    for bad in ([], ["cat", " "], ["cat", 3]):
        with pytest.raises(ConfigError, match="^labels must be a non-empty list of class names$"):
            ExportConfig(Net(), labels=bad, targets=("onnxruntime",)).resolve()


def test_the_published_weights_labels_only_for_their_own_head():
    from dataclasses import replace

    plan = ExportConfig("squeezenet1_1", weights="random", targets=("onnxruntime",)).resolve()
    assert plan.random_weights and plan.labels_of_weights(1000) is None
    imagenet = replace(plan, weights="imagenet")
    names = imagenet.labels_of_weights(1000)
    assert len(names) == 1000 and names[0].startswith("tench") and not imagenet.random_weights
    assert imagenet.labels_of_weights(10) is None  # a new head: not ImageNet's classes
    assert replace(plan, weights="mine.pt").labels_of_weights(1000) is None


def test_a_zoo_fine_tune_keeps_the_published_weights_preprocessing():
    from dataclasses import replace

    def plan(name, weights, **kw):  # weights set after resolve: nothing is loaded, only the preprocessing decided
        p = ExportConfig(name, weights="random", targets=("onnxruntime",), **kw).resolve()
        return replace(p, weights=weights).complete(None)

    lite0 = (0.5, 0.5, 0.5)  # EfficientNet-Lite0's published weights take [-1, 1] inputs
    mine = plan("efficientnet_lite0", "mine.pt")
    assert mine.prep == Preprocessing(224, lite0, lite0, 0.875, 3)
    assert mine.notes[-1] == ("preprocessing: efficientnet_lite0's ImageNet weights' own (mean [0.5, 0.5, 0.5], std "
                              "[0.5, 0.5, 0.5], resize 256), as for a fine-tune of them; set --mean/--std/--resize if "
                              "your checkpoint was trained otherwise")
    assert plan("efficientnet_lite0", "imagenet").prep.mean == lite0 and not plan(
        "efficientnet_lite0", "imagenet").notes[-1].startswith("preprocessing")
    assert plan("efficientnet_lite0", None).prep.mean == IMAGENET_MEAN  # a random init: the spec's own
    told = plan("efficientnet_lite0", "mine.pt", mean=(0.1, 0.2, 0.3))
    assert told.prep.mean == (0.1, 0.2, 0.3) and told.prep.std == lite0 and not told.notes[-1].startswith("preproc")
    told = plan("efficientnet_lite0", "mine.pt", preprocessing={"std": (1.0,) * 3})
    assert told.prep.std == (1.0,) * 3 and not told.notes[-1].startswith("preproc")
    squeezenet = plan("squeezenet1_1", "mine.pt", resolution=64)  # its published weights use the spec's defaults
    assert squeezenet.prep == Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD, 0.875, 3)
    assert not squeezenet.notes[-1].startswith("preprocessing")


def test_an_override_of_the_normalisation_keeps_the_resize():
    for kw in ({"mean": (0.5,) * 3}, {"std": (0.2,) * 3}):
        plan = _plan(input_shape=(1, 3, 16, 16), **kw)
        assert plan.prep.resize == 18 and plan.prep.resolution == 16, kw  # 16 / 0.875, as without the override
        assert plan.notes == (), kw  # any override: the default is no longer said


def test_the_recorded_config_of_any_model(tmp_path):
    from dataclasses import replace

    model = Net({"input_size": (3, 40, 40)})
    cfg = ExportConfig(model, labels=["a", "b"], mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), targets=("onnxruntime",))
    plan = cfg.resolve().complete(Original(model, "torch"))
    d = cfg.to_dict(plan)
    assert d["model"] == plan.source.ref and d["weights"] is None and d["num_classes"] is None
    assert d["input_shape"] == [1, 3, 40, 40] and d["preprocessing"] == plan.prep.to_dict()
    assert d["labels"] == "list" and d["mean"] == [0.1, 0.2, 0.3] and d["std"] == [0.4, 0.5, 0.6]
    (tmp_path / "labels.txt").write_text("a\nb\n")
    cfg = ExportConfig("squeezenet1_1", weights="random", labels=tmp_path / "labels.txt", targets=("onnxruntime",))
    plan = cfg.resolve()
    d = cfg.to_dict(replace(plan, weights=tmp_path / "mine.pt"))
    assert d["weights"] == str(tmp_path / "mine.pt") and d["labels"] == str(tmp_path / "labels.txt")
    assert d["input_shape"] is None and d["preprocessing"] is None and d["mean"] is None and d["std"] is None
    assert ExportConfig("squeezenet1_1").to_dict(plan)["labels"] is None


def test_a_model_without_a_spec_has_no_published_labels():
    assert _plan(input_shape=(1, 3, 8, 8)).labels_of_weights(1) is None
