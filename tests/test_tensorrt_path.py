"""The TensorRT path's own decisions, on a machine without TensorRT or a GPU.

Which device each artifact runs on (load, the export's parity step, check, bench, --device), the QDQ
model TensorRT gets (float biases and outputs), int8 at a fixed batch N, and the engine's build key.
Where TensorRT would run, a fake stands in: "building" copies the ONNX to ``model.<precision>.engine``
and "running" the engine runs that ONNX with ONNX Runtime. Every assertion is about what our code
decided (which device, which source model, rebuild or reuse), never about what the fake computed.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from edgecnn import backends, runtimes
from edgecnn.artifact import Artifact, describe
from edgecnn.backends import tensorrt as trt_backend
from edgecnn.backends.onnxruntime import session
from edgecnn.cli import main
from edgecnn.errors import ConfigError
from edgecnn.exporters import tensorrt as trt_exporter
from edgecnn.exporters import int8
from edgecnn.fileio import atomic_path
from edgecnn.harness.bench import bench_dir
from edgecnn.harness.check import check_dir
from edgecnn.pipeline import ExportConfig, run_export
from edgecnn.runtimes.tensorrt import TensorRTRuntime

GPU = {"tensorrt": "10.3.0", "gpu": "Jetson Orin (fake)", "compute_capability": "sm_87"}


class FakeTensorRT:
    """TensorRT "installed" on this machine: our code runs unchanged around it."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.gpu = dict(GPU)
        self.built: list[Artifact] = []  # the ONNX each engine was built from
        self.loaded_on: list[str] = []  # the device every engine was loaded on
        real = backends.unavailable
        mp.setattr(backends, "unavailable", lambda name: None if name == "tensorrt" else real(name))
        mp.setattr(trt_backend, "gpu_info", lambda device=None: dict(self.gpu))
        mp.setattr(trt_exporter, "build_engine", self.build_engine)
        mp.setattr(TensorRTRuntime, "_load", lambda rt: self.load(rt))
        mp.setattr(TensorRTRuntime, "_run", lambda rt, x: rt.session.run(None, {rt.session.get_inputs()[0].name: x})[0])
        mp.setattr(TensorRTRuntime, "_close", lambda rt: None)
        mp.setattr(TensorRTRuntime, "versions", lambda rt: {"tensorrt": "fake"})

    def build_engine(self, src: Artifact, out_dir: Path, **_options) -> Artifact:
        self.built.append(src)
        dest = Path(out_dir) / f"model.{src.precision}.engine"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:  # as the real build writes it: recorded in the local record (issue 20)
            shutil.copyfile(src.path, tmp)
        return describe(dest, stage="tensorrt", precision=src.precision, parent=src.stage, fmt="tensorrt",
                        runtime="tensorrt")

    def load(self, rt: TensorRTRuntime) -> None:
        self.loaded_on.append(rt.device)
        rt.session = session(rt.path)


@pytest.fixture(scope="module")
def fake():
    with pytest.MonkeyPatch.context() as mp:
        yield FakeTensorRT(mp)


def _cfg(out: Path, **kw) -> ExportConfig:
    base = dict(model="lenet5", calib_size=8, eval_size=6, targets=("onnxruntime", "tensorrt"), out=str(out),
                progress=False, latency=False)
    return ExportConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def exported(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "lenet5"
    fake.built.clear()
    result = run_export(_cfg(out, fp16=True, int8=True), log=lambda _m: None)
    return out, result, list(fake.built)


def _int32_dequantize(path: Path) -> list[str]:
    """DequantizeLinear nodes whose input is an int32 initializer (what TensorRT's parser rejects)."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: i.data_type for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) == onnx.TensorProto.INT32]


def _output_producer(path: Path) -> str:
    graph = onnx.load(str(path)).graph
    return next(n.op_type for n in graph.node if graph.output[0].name in n.output)


# --- bug 1: engines run on CUDA, everywhere they are run --------------------------------------------
def test_device_decisions():
    assert runtimes.device_for("tensorrt") == "cuda"  # an engine runs on CUDA unless asked otherwise
    assert {runtimes.device_for(n) for n in ("torch", "onnxruntime", "openvino")} == {"cpu"}
    assert runtimes.device_for("onnxruntime", "cuda") == "cuda"
    with pytest.raises(ConfigError, match="runtime tensorrt cannot run on 'cpu'"):
        runtimes.device_for("tensorrt", "cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'; devices are: cpu, cuda"):
        runtimes.check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device") as info:
            runtimes.check_device("cuda")
        assert "\n" not in str(info.value)


def test_export_checks_engines_on_cuda(exported, fake):
    out, result, _ = exported
    engines = {k: r for k, r in result.manifest.results.items() if k.startswith("tensorrt-")}
    assert set(engines) == {"tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"}
    for key, res in engines.items():
        assert res.error is None, (key, res.error)
        assert res.device == "cuda" and res.parity is not None
    assert {r.device for k, r in result.manifest.results.items() if k not in engines} == {"cpu"}
    assert fake.loaded_on and set(fake.loaded_on) == {"cuda"}
    engine = out / "tensorrt" / "model.fp32.engine"
    with runtimes.load(engine) as rt:  # a path, no device: the runtime's own
        assert rt.device == "cuda"
    with pytest.raises(ConfigError, match="cannot run on 'cpu'"):
        runtimes.load(engine, device="cpu")


def test_check_and_bench_run_engines_on_cuda(exported):
    out, _, _ = exported
    report = check_dir(out, n_images=4)
    rows = {(r.artifact, r.runtime): r for r in report.results}
    for key in ("tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"):
        assert rows[(key, "tensorrt")].error is None and rows[(key, "tensorrt")].device == "cuda"
    assert rows[("export", "onnxruntime")].device == "cpu"
    bench = bench_dir(out, runtimes=("tensorrt", "torch"), warmup=0, iterations=2, progress=False)
    engines = [r for r in bench.results if r.runtime == "tensorrt"]
    assert len(engines) == 3 and all(r.error is None and r.device == "cuda" for r in engines)
    # PyTorch eager is measured where the engines run, to compare like with like (here CUDA is absent).
    eager = {r.device: r for r in bench.results if r.runtime == "torch"}
    assert set(eager) == {"cpu", "cuda"} and eager["cuda"].artifact == "torch-eager-cuda"
    if not torch.cuda.is_available():
        assert "no CUDA device" in eager["cuda"].error and engines[0].speedup is not None  # vs eager on the CPU


def test_cli_device_option(exported, tmp_path, capsys):
    out, _, _ = exported
    assert main(["check", str(out), "--num-images", "4", "--device", "cpu", "--json", str(tmp_path / "c.json")]) == 0
    check = json.loads((tmp_path / "c.json").read_text())
    assert {r["device"] for r in check["results"]} == {"cpu"} and "tensorrt" not in {r["runtime"] for r in check["results"]}
    assert any("tensorrt-fp32@tensorrt: runtime tensorrt cannot run on 'cpu'" in s for s in check["skipped"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # argparse: checked before anything loads
        main(["bench", str(out), "--device", "tpu"])
    assert info.value.code == 2 and "unknown device 'tpu'; devices are: cpu, cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["check", str(out), "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "torch sees no CUDA device" in err


# --- bug 2: TensorRT's QDQ model keeps biases (and its outputs) in float -----------------------------
def test_tensorrt_gets_a_qdq_model_with_float_biases(exported):
    out, _, built = exported
    sources = {a.precision: a for a in built}
    assert not _int32_dequantize(sources["int8"].path)  # TensorRT's DequantizeLinear takes no int32
    assert _output_producer(sources["int8"].path) != "DequantizeLinear"  # the logits stay float
    assert sources["int8"].path.name == "model.int8-tensorrt.onnx"
    ort_int8 = out / "model.int8.onnx"  # the ONNX Runtime route is unchanged: int32 biases for QLinearConv
    assert _int32_dequantize(ort_int8) and _output_producer(ort_int8) == "DequantizeLinear"


def _tiny(batch: int, path: Path) -> Artifact:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    torch.onnx.export(model, (torch.zeros(batch, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return describe(path, stage="export", precision="fp32", parent=None)


def _images(n: int = 7) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, 16, 16)).astype(np.float32)


def _biases(path: Path) -> dict[str, np.ndarray]:
    """Each Conv/Gemm's bias as float: a float initializer, or an int32 one dequantized."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    out = {}
    for n in graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2:
            b = n.input[2]
            dq = producer.get(b)
            out[n.name] = inits[b].astype(np.float64) if dq is None else \
                inits[dq.input[0]].astype(np.float64) * inits[dq.input[1]].astype(np.float64)
    return out


def test_tensorrt_recipe_and_bias_correction_on_float_biases(tmp_path):
    src, x = _tiny(1, tmp_path / "m.onnx"), _images()
    trt_recipe = int8.tensorrt_recipe(int8.recipe_for("u8s8"))
    assert trt_recipe.symmetric and not trt_recipe.quantize_bias and not trt_recipe.quantize_output
    assert int8.recipe_for("s8s8").quantize_bias and int8.recipe_for("s8s8").quantize_output  # ONNX Runtime's: unchanged
    models = {}
    for name, recipe in {"ort": int8.recipe_for("s8s8"), "trt": int8.tensorrt_recipe(int8.recipe_for("s8s8"))}.items():
        for bc in (False, True):
            models[name, bc] = tmp_path / f"{name}{bc}.onnx"
            art = int8.quantize_int8(src, models[name, bc], x, recipe=replace(recipe, bias_correction=bc), opset=17,
                                progress=False)
            assert ("float biases" in art.notes) == (name == "trt")
    assert not _int32_dequantize(models["trt", True]) and _output_producer(models["trt", True]) == "Gemm"
    assert len(_int32_dequantize(models["ort", True])) == 3 and _output_producer(models["ort", True]) == "DequantizeLinear"
    # Bias correction moves a float bias by the shift it takes off an int32 one (that one rounded to its step).
    ort = {k: v - _biases(models["ort", False])[k] for k, v in _biases(models["ort", True]).items()}
    trt = {k: v - _biases(models["trt", False])[k] for k, v in _biases(models["trt", True]).items()}
    assert set(trt) == set(ort) and len(trt) == 3
    assert all(np.abs(shift).max() > 0 for shift in trt.values())
    for node, shift in trt.items():
        np.testing.assert_allclose(shift, ort[node], rtol=0, atol=0.51 * _bias_step(models["ort", True], node).max())


def _bias_step(path: Path, node: str) -> np.ndarray:
    """The scale of ``node``'s int32 bias: one step of it."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.name == node)
    return inits[producer[conv.input[2]].input[1]].astype(np.float64)


# --- bug 3: int8 calibrates a model exported at a fixed batch N ---------------------------------------
def test_int8_calibrates_at_a_static_batch(tmp_path):
    x = _images(7)  # 7 images in batches of 2: the last batch is completed
    for make in (lambda: int8.recipe_for("u8s8"), lambda: int8.tensorrt_recipe(int8.recipe_for("u8s8"))):
        recipe = make()
        one = int8.quantize_int8(_tiny(1, tmp_path / "b1.onnx"), tmp_path / "q1.onnx", x, recipe=recipe, opset=17,
                                 progress=False)
        two = int8.quantize_int8(_tiny(2, tmp_path / "b2.onnx"), tmp_path / "q2.onnx", x, recipe=recipe, opset=17,
                                 progress=False)
        assert "in batches of 2" in two.notes
        sess1, sess2 = session(one.path), session(two.path)
        y2 = sess2.run(None, {"input": x[:2]})[0]
        assert y2.shape == (2, 10)
        # Same calibration statistics (min/max), same bias correction: the same int8 model at another batch.
        np.testing.assert_allclose(y2, np.concatenate([sess1.run(None, {"input": x[i: i + 1]})[0] for i in (0, 1)]),
                                   rtol=1e-5, atol=1e-5)


def test_export_int8_at_a_static_batch(fake, tmp_path):
    from edgecnn import create_model

    weights = tmp_path / "lenet5.pt"  # trained-like weights: int8 is judged, not advisory
    torch.save(create_model("lenet5").state_dict(), weights)
    result = run_export(_cfg(tmp_path / "b2", batch=2, int8=True, weights=str(weights)), log=lambda _m: None)
    assert {"int8", "int8-tensorrt", "tensorrt-int8"} <= {a.key for a in result.manifest.artifacts}
    assert all(r.error is None for r in result.manifest.results.values()), result.manifest.results
    assert result.manifest.input_shape[0] == 2
    # TensorRT's QDQ model is judged through its engine, not through a CPU runtime's int8 kernels.
    results = result.manifest.results
    assert results["int8-tensorrt"].not_judged.startswith("made for TensorRT") and results["int8-tensorrt"].ok
    assert results["int8-tensorrt"].verdict == "not judged" and not results["int8-tensorrt"].judged
    assert results["tensorrt-int8"].advisory is None and results["int8"].advisory is None
    layers = check_dir(tmp_path / "b2", n_images=3, runtimes=("onnxruntime",), layers=True).layers  # fed 2 at a time
    assert layers["int8"]["layers"] > 0 and layers["int8-tensorrt"]["layers"] > 0


# --- bug 4: an engine is rebuilt for another GPU or TensorRT, reused on the same ------------------------
def test_engine_build_key_names_the_gpu_and_tensorrt(fake, tmp_path):
    out = tmp_path / "key"

    def export() -> int:
        fake.built.clear()
        run_export(_cfg(out, targets=("tensorrt",)), log=lambda _m: None)
        return len(fake.built)

    fake.gpu = dict(GPU)
    assert export() == 1
    assert export() == 0  # same GPU, same TensorRT: reused
    for change in ({"gpu": "Jetson AGX Orin (fake)"}, {"compute_capability": "sm_86"},
                   {"tensorrt": "10.3.0.post1"}):  # the module's __version__, not pip metadata
        fake.gpu = {**fake.gpu, **change}
        assert export() == 1, change  # built for another GPU or TensorRT: rebuilt, not reused
    fake.gpu = dict(GPU)


# --- config-time checks -----------------------------------------------------------------------------
def test_config_checks_for_a_tensorrt_target(fake):
    with pytest.raises(ConfigError, match=r"opset 21 is above what TensorRT's ONNX parser supports \(20\)"):
        _cfg(Path("unused"), opset=21).resolve()
    assert _cfg(Path("unused"), opset=20).resolve().opset == 20
    assert _cfg(Path("unused"), opset=21, targets=("onnxruntime",)).resolve().opset == 21
    with pytest.raises(ConfigError, match="at most 32, got 33"):
        _cfg(Path("unused"), batch=33, dynamic_batch=True).resolve()
    assert _cfg(Path("unused"), batch=32, dynamic_batch=True).resolve().dynamic_batch == 32
