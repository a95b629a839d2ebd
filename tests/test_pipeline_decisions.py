"""The export orchestrator's decisions, without an export: which options are refused, which defaults are
resolved and recorded, which targets are built, and when an int8 artifact is flagged slower than fp32."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgecnn import backends
from edgecnn.artifact import Artifact
from edgecnn.errors import CalibrationDataError, ConfigError, MissingBackendError
from edgecnn.exporters.int8 import PRESETS, Int8Recipe
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.pipeline import ExportConfig
from edgecnn.pipeline.config import DYNAMIC_MAX_BATCH, resolve_targets
from edgecnn.pipeline.select import SLOWER_MARGIN, flag_slower_int8, p50, select_default, working
from edgecnn.results import ArtifactResult
from edgecnn.timing import Latency


@pytest.fixture
def no_tensorrt(monkeypatch):
    """onnxruntime and openvino usable, tensorrt not: decided here, whatever this machine has."""
    why = {"tensorrt": "no GPU here"}
    monkeypatch.setattr(backends, "unavailable", lambda name: why.get(name))
    monkeypatch.setattr(backends.tensorrt, "missing",
                        lambda: MissingBackendError("tensorrt", extra="tensorrt", reason=why["tensorrt"]))


@pytest.mark.parametrize("fields, message", [
    ({"batch": 0}, "batch must be a positive integer, got 0"),
    ({"batch": True}, "batch must be a positive integer, got True"),
    ({"batch": 2.0}, "batch must be a positive integer, got 2.0"),
    ({"calib_size": 0}, "calibration and evaluation sizes must be at least 1"),
    ({"eval_size": 0}, "calibration and evaluation sizes must be at least 1"),
    ({"max_drop": 0.0}, "--max-drop is a fraction of logit cosine, between 0 and 1 (e.g. 0.01), got 0.0"),
    ({"max_drop": 1.0}, "--max-drop is a fraction of logit cosine, between 0 and 1 (e.g. 0.01), got 1.0"),
])
def test_bad_options_are_refused_before_any_work(no_tensorrt, fields, message):
    with pytest.raises(ConfigError) as e:
        ExportConfig("squeezenet1_1", **fields).resolve()
    assert str(e.value) == message


def test_defaults_resolved_in_one_place(no_tensorrt, fake_isa):
    fake_isa("avx2")
    plan = ExportConfig("squeezenet1_1", batch=1, calib_size=1, eval_size=1, max_drop=0.999).resolve()
    assert (plan.opset, plan.recipe, plan.targets) == (17, None, ("onnxruntime", "openvino"))
    assert plan.missing == {"tensorrt": "no GPU here"} and plan.input_shape is None  # known once built
    plan = plan.complete(None)  # a zoo model's shape comes from its spec, not from the built original
    assert plan.resolution == 224 and plan.input_shape == (1, 3, 224, 224)
    assert plan.dynamic_batch is None and plan.spec.name == "squeezenet1_1"
    plan = ExportConfig("squeezenet1_1", batch=3, resolution=64, opset=13, int8=True, dynamic_batch=True,
                        max_drop=0.001, targets=("onnxruntime",)).resolve().complete(None)
    assert (plan.resolution, plan.opset, plan.recipe, plan.targets, plan.missing) == (
        64, 13, PRESETS["u8s8-saturation-aware"], ("onnxruntime",), {})
    assert plan.input_shape == (3, 3, 64, 64) and plan.dynamic_batch == DYNAMIC_MAX_BATCH
    mine = Int8Recipe(preset="s8s8", activation_type="int8", calibration="entropy")
    assert ExportConfig("squeezenet1_1", int8=mine, targets=("onnxruntime",)).resolve().recipe is mine
    with pytest.raises(ConfigError, match="too small"):
        ExportConfig("squeezenet1_1", resolution=8).resolve().complete(None)
    with pytest.raises(ConfigError, match="opset"):
        ExportConfig("squeezenet1_1", opset=11).resolve()
    with pytest.raises(ConfigError, match="from 18 to 23 for the dynamo exporter"):  # the exporter's own range
        ExportConfig("squeezenet1_1", opset=17, exporter="dynamo").resolve()


def test_the_recorded_config(no_tensorrt):
    mine = Int8Recipe(preset="u8s8-reduce-range", reduce_range=True, exclude_nodes=("conv1",))
    cfg = ExportConfig("squeezenet1_1", int8=mine, targets=("openvino", "onnxruntime"), out="o")
    d = cfg.to_dict(cfg.resolve())
    assert d["opset"] == 17 and d["targets"] == ["openvino", "onnxruntime"] and d["int8"] is True
    assert d["int8_preset"] == "u8s8-reduce-range" and d["int8_recipe"] == mine.to_dict()
    assert d["model"] == "squeezenet1_1" and d["out"] == "o" and d["max_drop"] is None
    cfg = ExportConfig("squeezenet1_1")
    d = cfg.to_dict(cfg.resolve())
    assert d["int8"] is False and d["targets"] is None and "int8_preset" not in d and "int8_recipe" not in d
    assert cfg.out_dir == Path("edgecnn_out") / "squeezenet1_1" and ExportConfig("m", out="x/y").out_dir == Path("x/y")


def test_targets(no_tensorrt):
    assert resolve_targets(None) == (("onnxruntime", "openvino"), {"tensorrt": "no GPU here"})
    assert resolve_targets(("openvino",)) == (("openvino",), {})
    with pytest.raises(ConfigError) as e:
        resolve_targets(("onnxruntime", "coreml", "tflite"))
    assert str(e.value) == "unknown target 'coreml'; targets are: onnxruntime, openvino, tensorrt"
    with pytest.raises(MissingBackendError) as e:
        resolve_targets(("onnxruntime", "tensorrt"))
    assert str(e.value) == "tensorrt is not available (no GPU here); install it with: pip install 'edgecnn[tensorrt]'"


# --- selection and the slower-than-fp32 flag ------------------------------------------------------
def _res(cosine=0.99, lat=1.0, passed=True, error=None, precision="int8"):
    if error:
        return ArtifactResult("r", precision, error=error)
    parity = ParityResult("r", precision, 8, 0.1, 0.01, 0.01, cosine, 30.0, 1.0, 1.0, 8, 1.0,
                          Tolerance.for_precision(precision), () if passed else ("failed",))
    latency = None if lat is None else Latency(20, 1, lat, lat, lat, lat, 0.0)
    return ArtifactResult("r", precision, parity=parity, latency=latency)


def test_p50_and_working():
    assert p50(None) is None and p50(_res(lat=None)) is None and p50(_res(lat=2.5)) == 2.5
    assert working(_res()) and working(_res(passed=False))
    assert not working(_res(error="x")) and not working(_res(cosine=float("nan"))) and not working(_res(cosine=float("inf")))
    no_parity = _res()
    no_parity.parity = None
    assert not working(no_parity)


def test_selection_margin_and_missing_latency():
    a, b = _res(cosine=0.999, lat=2.0 * SLOWER_MARGIN), _res(cosine=0.99, lat=1.0)
    assert select_default({"a": a, "b": b}, baseline_p50=2.0) == "a"  # exactly at the margin: not slower
    a.latency = Latency(20, 1, 2.0 * SLOWER_MARGIN + 1e-9, 0, 0, 0, 0)
    assert select_default({"a": a, "b": b}, baseline_p50=2.0) == "b"
    assert select_default({"a": _res(cosine=0.999, lat=None), "b": b}, baseline_p50=2.0) == "a"  # unmeasured: not slower
    assert select_default({"a": _res(cosine=0.99, lat=None), "b": _res(cosine=0.99, lat=0.5)}) == "a"  # -(None or 0)


def _art(stage, precision, runtime):
    return Artifact(stage, "onnx", precision, Path(f"/x/{stage}"), runtime=runtime)


def test_int8_slower_than_the_last_fp32_of_its_runtime_is_flagged():
    arts = [_art("export", "fp32", "onnxruntime"), _art("simplify", "fp32", "onnxruntime"), _art("fp16", "fp16", "onnxruntime"),
            _art("int8", "int8", "onnxruntime"), _art("int8-fast", "int8", "onnxruntime"),
            _art("openvino-fp32", "fp32", "openvino"), _art("openvino-int8", "int8", "openvino"),
            _art("tensorrt-int8", "int8", "tensorrt"), _art("ir-int8", "int8", None)]
    results = {"export": _res(lat=1.0, precision="fp32"), "simplify": _res(lat=2.0, precision="fp32"),
               "fp16": _res(lat=9.0, precision="fp16"), "int8": _res(lat=3.0), "int8-fast": _res(lat=2.0 * SLOWER_MARGIN),
               "openvino-fp32": _res(lat=1.0, precision="fp32"), "openvino-int8": _res(lat=1.5),
               "tensorrt-int8": _res(lat=50.0), "ir-int8": _res(lat=50.0)}
    warnings = flag_slower_int8(arts, results)
    assert warnings == [
        "int8: warning: int8 runs 1.50x slower than fp32 (simplify) on onnxruntime here (3.00 vs 2.00 ms p50)",
        "openvino-int8: warning: int8 runs 1.50x slower than fp32 (openvino-fp32) on openvino here (1.50 vs 1.00 ms p50)",
    ]
    assert results["int8"].slower_than_fp32 == 1.5 and results["openvino-int8"].slower_than_fp32 == 1.5
    assert [results[k].slower_than_fp32 for k in ("int8-fast", "tensorrt-int8", "ir-int8", "fp16", "simplify")] == [None] * 5


def test_an_unmeasured_fp32_is_no_baseline():
    arts = [_art("export", "fp32", "onnxruntime"), _art("simplify", "fp32", "onnxruntime"), _art("int8", "int8", "onnxruntime")]
    results = {"export": _res(lat=1.0, precision="fp32"), "simplify": _res(lat=None, precision="fp32"),
               "int8": _res(lat=1.236)}
    assert flag_slower_int8(arts, results) == ["int8: warning: int8 runs 1.24x slower than fp32 (export) on onnxruntime "
                                               "here (1.24 vs 1.00 ms p50)"]
    assert results["int8"].slower_than_fp32 == 1.24  # two decimals
    results["int8"] = _res(lat=None)
    del results["export"]
    assert flag_slower_int8(arts, results) == []


# --- resolve(): weights and classes of a zoo model, options of other sources, TensorRT's limits ------
def test_weights_and_classes_resolved(no_tensorrt, tmp_path):
    import torch

    from edgecnn.models import get_spec
    from edgecnn.models._factory import build_model

    plan = ExportConfig("squeezenet1_1", weights="random", targets=("onnxruntime",)).resolve()
    assert plan.weights is None and plan.num_classes == 1000
    assert plan.notes == ("weights: random init (seed 0), as asked; int8 fidelity is advisory",)
    plan = ExportConfig("squeezenet1_1", weights="imagenet", num_classes=7, targets=("onnxruntime",)).resolve()
    assert (plan.weights, plan.num_classes, plan.notes) == ("imagenet", 7, ())
    plan = ExportConfig("squeezenet1_1", targets=("onnxruntime",)).resolve()  # offline, empty cache: random, said
    assert plan.weights is None and len(plan.notes) == 1 and plan.notes[0]
    ckpt = tmp_path / "seven.pt"
    torch.save(build_model(get_spec("squeezenet1_1"), 7, {}).state_dict(), ckpt)
    plan = ExportConfig("squeezenet1_1", weights=str(ckpt), model_args={"dropout": 0.1},
                        targets=("onnxruntime",)).resolve()
    assert (plan.weights, plan.num_classes) == (str(ckpt), 7) and plan.source.args == {"dropout": 0.1}
    assert plan.notes == ("num_classes 7 inferred from the checkpoint's head (pass --num-classes to override)",)


def test_zoo_only_options_are_refused_for_other_sources(no_tensorrt):
    import torch.nn as nn

    for kw in ({"weights": "imagenet"}, {"num_classes": 3}):
        with pytest.raises(ConfigError) as e:
            ExportConfig(nn.Linear(1, 1), targets=("onnxruntime",), **kw).resolve()
        assert str(e.value) == ("--weights and --num-classes apply to zoo models; linear brings its own (a factory "
                                "loads its checkpoint itself, a .pt2 or .onnx file holds its weights)")


def test_dynamic_batch_and_image_folders_checked_at_once(no_tensorrt, tmp_path):
    assert ExportConfig("squeezenet1_1", dynamic_batch=True, batch=DYNAMIC_MAX_BATCH).resolve().cfg.batch == 32
    with pytest.raises(ConfigError) as e:
        ExportConfig("squeezenet1_1", dynamic_batch=True, batch=DYNAMIC_MAX_BATCH + 1).resolve()
    assert str(e.value) == ("with a dynamic batch, batch (the size to optimise for) must be at most 32, got 33")
    missing = tmp_path / "nowhere"
    ExportConfig("squeezenet1_1", calib_dir=str(missing)).resolve()  # no int8: calibration images are not needed
    with pytest.raises(CalibrationDataError, match=f"^image folder not found: {missing}$"):
        ExportConfig("squeezenet1_1", calib_dir=str(missing), int8=True).resolve()
    with pytest.raises(CalibrationDataError, match=f"^image folder not found: {missing}$"):
        ExportConfig("squeezenet1_1", eval_dir=str(missing)).resolve()


def test_tensorrt_opset_limit(monkeypatch):
    monkeypatch.setattr(backends, "unavailable", lambda name: None)  # every backend usable, here
    assert ExportConfig("squeezenet1_1", opset=20, targets=("tensorrt",)).resolve().opset == 20
    assert ExportConfig("squeezenet1_1", opset=21, exporter="dynamo", targets=("onnxruntime",)).resolve().opset == 21
    with pytest.raises(ConfigError) as e:
        ExportConfig("squeezenet1_1", opset=21, exporter="dynamo", targets=("onnxruntime", "tensorrt")).resolve()
    assert str(e.value) == ("opset 21 is above what TensorRT's ONNX parser supports (20); use --opset 20 or lower, "
                            "or leave tensorrt out of --targets")
