"""TensorRT exporter + runtime.

Where TensorRT and a CUDA GPU exist: build fp32 / fp16 / dynamic-batch engines from a tiny
Conv-BN-ReLU-Pool-Linear ONNX and compare with torch; check the timing cache and the build
record. Everywhere else: one test proves that a missing TensorRT is explained, not crashed on.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecnn.errors import ArtifactError, ConfigError, MissingBackendError
from edgecnn.artifact import Artifact
from edgecnn.backends.tensorrt import sidecar_path
from edgecnn.exporters.tensorrt import build_engine
from edgecnn.runtimes.tensorrt import TensorRTRuntime

SKIP_REASON = ("TensorRT not installed: pip install 'edgecnn[tensorrt]' on a machine with an NVIDIA GPU "
               "(JetPack on Jetson)")
SHAPE = (2, 3, 32, 32)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():  # non-trivial BN statistics, so folding them is actually tested
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _onnx(tmp_path: Path, precision: str, *, dynamic: bool = False) -> Artifact:
    """The tiny model as ONNX; fp16 is exported in half precision on the GPU (fp16 I/O too)."""
    model, x = _tiny(), torch.zeros(SHAPE)
    if precision == "fp16":
        model, x = model.half().cuda(), x.half().cuda()
    path = tmp_path / f"model.{precision}.onnx"
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes=axes)
    return Artifact(stage="export" if precision == "fp32" else precision, format="onnx",
                    precision=precision, path=path)


def _reference(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _tiny()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def trt_ready() -> None:
    pytest.importorskip("tensorrt", reason=SKIP_REASON)
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but CUDA is not available to torch (no GPU, driver, or a CPU-only torch)")


@pytest.mark.parametrize("precision, rtol, atol", [("fp32", 1e-3, 1e-4), ("fp16", 2e-2, 2e-2)])
def test_engine_matches_torch(trt_ready: None, tmp_path: Path, precision: str, rtol: float, atol: float) -> None:
    engine = build_engine(_onnx(tmp_path, precision), tmp_path, input_shape=SHAPE)
    assert engine.path.name == f"model.{precision}.engine" and engine.format == "tensorrt"
    assert engine.precision == precision and engine.runtime == "tensorrt" and engine.bytes > 0
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    with TensorRTRuntime(engine.path, precision=precision, device="cuda") as rt:
        y = rt.run(x)
        assert rt.versions()["tensorrt"]
    assert y.dtype == np.float32 and y.shape == (2, 10)
    np.testing.assert_allclose(y, _reference(x), rtol=rtol, atol=atol)


def test_dynamic_batch_and_timing_cache(trt_ready: None, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    engine = build_engine(_onnx(tmp_path, "fp32", dynamic=True), tmp_path / "out", input_shape=SHAPE,
                          dynamic_batch=4, timing_cache=cache)
    assert cache.is_file() and cache.stat().st_size > 0
    record = json.loads(sidecar_path(engine.path).read_text())
    assert record["profile"] == {"min": [1, 3, 32, 32], "opt": list(SHAPE), "max": [4, 3, 32, 32]}
    assert record["input"] == "input" and record["output"] == "logits"
    rng = np.random.default_rng(1)
    with TensorRTRuntime(engine.path, device="cuda") as rt:
        for batch in (1, 3, 4):
            x = rng.standard_normal((batch, *SHAPE[1:])).astype(np.float32)
            np.testing.assert_allclose(rt.run(x), _reference(x), rtol=1e-3, atol=1e-4)
        with pytest.raises(ConfigError, match="outside"):
            rt.run(np.zeros((5, *SHAPE[1:]), np.float32))
    # A second build reads the cache it wrote.
    build_engine(_onnx(tmp_path, "fp32", dynamic=True), tmp_path / "out", input_shape=SHAPE,
                 dynamic_batch=4, timing_cache=cache)


def test_static_onnx_cannot_get_dynamic_batch(trt_ready: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dynamic batch"):
        build_engine(_onnx(tmp_path, "fp32"), tmp_path, input_shape=SHAPE, dynamic_batch=8)


def test_mismatching_build_record_is_refused(trt_ready: None, tmp_path: Path) -> None:
    engine = build_engine(_onnx(tmp_path, "fp32"), tmp_path, input_shape=SHAPE)
    record_path = sidecar_path(engine.path)
    record = json.loads(record_path.read_text())
    record.update(tensorrt="0.0.1", compute_capability="sm_10")
    record_path.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match=r"TensorRT 0\.0\.1 for sm_10; this machine has .*--targets tensorrt"):
        TensorRTRuntime(engine.path, device="cuda")


def test_corrupt_engine_is_an_artifact_error(trt_ready: None, tmp_path: Path) -> None:
    bad = tmp_path / "model.fp32.engine"
    bad.write_bytes(b"not an engine" * 100)
    with pytest.raises(ArtifactError):
        TensorRTRuntime(bad, device="cuda")


def test_missing_tensorrt_is_explained(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; this test covers machines without it")
    onnx = Artifact(stage="export", format="onnx", precision="fp32", path=tmp_path / "model.onnx")
    with pytest.raises(MissingBackendError, match=r"edgecnn\[tensorrt\]") as info:
        build_engine(onnx, tmp_path, input_shape=SHAPE)
    assert info.value.extra == "tensorrt"
    reason = TensorRTRuntime.available()
    assert isinstance(reason, str) and "tensorrt" in reason
    with pytest.raises(MissingBackendError, match=r"edgecnn\[tensorrt\]"):
        TensorRTRuntime(tmp_path / "model.fp32.engine", device="cuda")
    assert not list(tmp_path.iterdir()), "nothing may be written when the backend is missing"
