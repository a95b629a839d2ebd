"""TensorRT exporter + runtime.

On a machine with TensorRT >= 10 and a CUDA GPU (``pytest -m gpu``): build fp32 / fp16 / dynamic-batch
engines from a tiny Conv-BN-ReLU-Pool-Linear ONNX and compare with torch; check the timing cache and the
build record; then the whole path through ``runtimes.load``, ``edgecnn export --targets tensorrt`` (fp32,
fp16, int8, dynamic batch, int8 at a fixed batch), ``check`` and ``bench``. They are marked ``gpu`` and
skip with the reason anywhere else. Everywhere: the decisions our TensorRT code makes around TensorRT's
API (the version gate, the install hint, quiet logging, what the build record says was set, refused
tensor addresses, one execution at a time) are tested against minimal stand-ins for the ``tensorrt``
module, asserting on our code's choices only.
"""
from __future__ import annotations

import enum
import importlib.util
import json
import logging
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecnn import runtimes
from edgecnn.artifact import Artifact
from edgecnn.backends import tensorrt as trt_backend
from edgecnn.backends.tensorrt import sidecar_path
from edgecnn.cli import main
from edgecnn.errors import ArtifactError, ConfigError, MissingBackendError
from edgecnn.exporters import tensorrt as trt_exporter
from edgecnn.exporters.tensorrt import build_engine
from edgecnn.manifest import Manifest
from edgecnn.runtimes import tensorrt as trt_runtime
from edgecnn.runtimes.tensorrt import TensorRTRuntime

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
    why = trt_backend.unavailable()
    if why:
        pytest.skip(f"TensorRT cannot run here: {why}")


@pytest.mark.gpu
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


@pytest.mark.gpu
def test_dynamic_batch_and_timing_cache(trt_ready: None, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    engine = build_engine(_onnx(tmp_path, "fp32", dynamic=True), tmp_path / "out", input_shape=SHAPE,
                          dynamic_batch=4, timing_cache=cache)
    assert cache.is_file() and cache.stat().st_size > 0
    record = json.loads(sidecar_path(engine.path).read_text())
    assert record["profile"] == {"min": [1, 3, 32, 32], "opt": list(SHAPE), "max": [4, 3, 32, 32]}
    assert record["input"] == "input" and record["output"] == "logits"
    assert record["strongly_typed"] is True and record["tf32"] is False  # read back from the network and config
    assert record["timing_cache"] == {"file": "timing.cache", "read_bytes": 0, "accepted": True}
    rng = np.random.default_rng(1)
    with TensorRTRuntime(engine.path, device="cuda") as rt:
        for batch in (1, 3, 4):
            x = rng.standard_normal((batch, *SHAPE[1:])).astype(np.float32)
            np.testing.assert_allclose(rt.run(x), _reference(x), rtol=1e-3, atol=1e-4)
        with pytest.raises(ConfigError, match="outside"):
            rt.run(np.zeros((5, *SHAPE[1:]), np.float32))
    # A second build reads the cache it wrote.
    again = build_engine(_onnx(tmp_path, "fp32", dynamic=True), tmp_path / "out", input_shape=SHAPE,
                         dynamic_batch=4, timing_cache=cache)
    record = json.loads(sidecar_path(again.path).read_text())["timing_cache"]
    assert record["accepted"] and record["read_bytes"] > 0 and "timing cache reused" in again.notes


@pytest.mark.gpu
def test_static_onnx_cannot_get_dynamic_batch(trt_ready: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dynamic batch"):
        build_engine(_onnx(tmp_path, "fp32"), tmp_path, input_shape=SHAPE, dynamic_batch=8)


@pytest.mark.gpu
def test_mismatching_build_record_is_refused(trt_ready: None, tmp_path: Path) -> None:
    engine = build_engine(_onnx(tmp_path, "fp32"), tmp_path, input_shape=SHAPE)
    record_path = sidecar_path(engine.path)
    record = json.loads(record_path.read_text())
    record.update(tensorrt="0.0.1", compute_capability="sm_10")
    record_path.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match=r"TensorRT 0\.0\.1 for sm_10; this machine has .*--targets tensorrt"):
        TensorRTRuntime(engine.path, device="cuda")


@pytest.mark.gpu
def test_corrupt_engine_is_an_artifact_error(trt_ready: None, tmp_path: Path) -> None:
    bad = tmp_path / "model.fp32.engine"
    bad.write_bytes(b"not an engine" * 100)
    with pytest.raises(ArtifactError):
        TensorRTRuntime(bad, device="cuda")


def test_missing_tensorrt_is_explained(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; this test covers machines without it")
    onnx = Artifact(stage="export", format="onnx", precision="fp32", path=tmp_path / "model.onnx")
    with pytest.raises(MissingBackendError, match=r"pip install 'edgecnn\[tensorrt") as info:
        build_engine(onnx, tmp_path, input_shape=SHAPE)
    assert info.value.extra.startswith("tensorrt")
    reason = TensorRTRuntime.available()
    assert isinstance(reason, str) and "tensorrt" in reason
    with pytest.raises(MissingBackendError, match=r"edgecnn\[tensorrt"):
        TensorRTRuntime(tmp_path / "model.fp32.engine", device="cuda")
    assert not list(tmp_path.iterdir()), "nothing may be written when the backend is missing"


# --- the whole path on a GPU: runtimes.load, export, check, bench --------------------------------------
@pytest.mark.gpu
def test_runtimes_load_runs_an_engine_on_cuda(trt_ready: None, tmp_path: Path) -> None:
    engine = build_engine(_onnx(tmp_path, "fp32"), tmp_path, input_shape=SHAPE)
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    with runtimes.load(engine.path) as rt:  # no device named: an engine runs on CUDA
        assert rt.device == "cuda" and rt.info().device == "cuda"
        np.testing.assert_allclose(rt.run(x), _reference(x), rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match="cannot run on 'cpu'"):
        runtimes.load(engine.path, device="cpu")


def _export(out: Path, *args: str) -> Manifest:
    code = main(["export", "lenet5", "--calib-size", "16", "--out", str(out), "--quiet", *args])
    assert code == 0, f"edgecnn export {' '.join(args)} exited {code}"
    return Manifest.load(out)


def _engines(manifest: Manifest) -> dict[str, dict]:
    """Engine key -> its build record."""
    return {a.key: json.loads(sidecar_path(a.path).read_text()) for a in manifest.artifacts if a.format == "tensorrt"}


@pytest.fixture(scope="module")
def cli_exports(trt_ready: None, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    outs = {"static": root / "static", "dynamic": root / "dynamic", "batch2": root / "batch2"}
    _export(outs["static"], "--fp16", "--int8", "--targets", "onnxruntime,tensorrt")
    _export(outs["dynamic"], "--dynamic-batch", "--fp16", "--targets", "tensorrt")
    _export(outs["batch2"], "--batch", "2", "--int8", "--targets", "tensorrt")
    return outs


@pytest.mark.gpu
def test_cli_export_builds_checked_engines(cli_exports: dict[str, Path]) -> None:
    want = {"static": {"tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"},
            "dynamic": {"tensorrt-fp32", "tensorrt-fp16"}, "batch2": {"tensorrt-fp32", "tensorrt-int8"}}
    for name, out in cli_exports.items():
        manifest = Manifest.load(out)
        engines = _engines(manifest)
        assert set(engines) == want[name], name
        for key, record in engines.items():
            res = manifest.results[key]
            assert res.error is None and res.device == "cuda" and res.ok, (name, key, res)
            assert record["strongly_typed"] is True and record["tf32"] is False, (name, key)
        assert manifest.artifacts and (out / "tensorrt" / "timing.cache").stat().st_size > 0
    int8 = next(a for a in Manifest.load(cli_exports["static"]).artifacts if a.key == "tensorrt-int8")
    assert int8.parent == "int8-tensorrt"  # its own QDQ model: float biases, float outputs
    assert _engines(Manifest.load(cli_exports["dynamic"]))["tensorrt-fp32"]["profile"]["max"][0] == 32


@pytest.mark.gpu
def test_rebuild_reuses_the_timing_cache(cli_exports: dict[str, Path], tmp_path: Path) -> None:
    out = cli_exports["batch2"]
    before = {k: r["timing_cache"] for k, r in _engines(Manifest.load(out)).items()}
    assert any(c["read_bytes"] > 0 for c in before.values())  # the second engine read the first one's timings
    again = _export(out, "--batch", "2", "--int8", "--targets", "tensorrt", "--force")
    for key, record in _engines(again).items():
        assert record["timing_cache"]["accepted"] and record["timing_cache"]["read_bytes"] > 0, key


@pytest.mark.gpu
def test_cli_check_and_bench_run_engines_on_cuda(cli_exports: dict[str, Path], tmp_path: Path) -> None:
    static, dynamic = cli_exports["static"], cli_exports["dynamic"]
    assert main(["check", str(static), "--num-images", "8", "--json", str(tmp_path / "c.json")]) == 0
    rows = [r for r in json.loads((tmp_path / "c.json").read_text())["results"] if r["runtime"] == "tensorrt"]
    assert len(rows) == 3 and all(r["device"] == "cuda" and r["ok"] for r in rows)
    assert main(["bench", str(static), "--iterations", "20", "--warmup", "3", "--quiet",
                 "--json", str(tmp_path / "b.json")]) == 0
    bench = json.loads((tmp_path / "b.json").read_text())["results"]
    eager = {r["device"]: r for r in bench if r["runtime"] == "torch"}
    assert set(eager) == {"cpu", "cuda"} and eager["cuda"]["artifact"] == "torch-eager-cuda"
    engines = [r for r in bench if r["runtime"] == "tensorrt"]
    assert len(engines) == 3 and all(r["device"] == "cuda" and r["latency"]["p50_ms"] > 0 for r in engines)
    for r in engines:  # against PyTorch on the same GPU
        assert r["speedup"] == pytest.approx(eager["cuda"]["latency"]["p50_ms"] / r["latency"]["p50_ms"])
    assert main(["bench", str(dynamic), "--batch", "1,4", "--iterations", "10", "--warmup", "2", "--quiet",
                 "--json", str(tmp_path / "d.json")]) == 0
    dyn = json.loads((tmp_path / "d.json").read_text())["results"]
    assert {(r["artifact"], r["batch"]) for r in dyn if r["runtime"] == "tensorrt" and not r["error"]} == \
        {(k, b) for k in ("tensorrt-fp32", "tensorrt-fp16") for b in (1, 4)}
    assert main(["check", str(dynamic), "--runtimes", "tensorrt", "--device", "cuda", "--num-images", "8"]) == 0


# --- our decisions around TensorRT's API, against stand-ins for the tensorrt module -------------------
class _Severity(enum.IntEnum):  # TensorRT's ILogger.Severity values
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class _ILogger:
    Severity = _Severity

    def __init__(self) -> None:
        pass


def test_tensorrt_older_than_10_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="8.5.2.2"))  # JetPack 5
    assert trt_backend.unavailable() == "TensorRT 8.5.2.2 is too old: edgecnn needs TensorRT >= 10"
    monkeypatch.setattr(trt_backend, "on_jetson", lambda: True)
    assert "JetPack 6" in trt_backend.diagnose()[1]
    with pytest.raises(MissingBackendError, match="too old.*upgrade to JetPack 6"):
        trt_backend.require()
    monkeypatch.setattr(trt_backend, "on_jetson", lambda: False)
    assert "pip install --upgrade 'edgecnn[tensorrt" in trt_backend.diagnose()[1]
    for version in ("10.0.1", "10.3.0.30", "11.1.0"):  # past the gate, the next check speaks
        monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__=version))
        found = trt_backend.diagnose()
        assert found is None or "too old" not in found[0]


def test_install_hint_fits_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    monkeypatch.setattr(trt_backend, "on_jetson", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only torch: TensorRT alone would not help
    hint = trt_backend.diagnose()[1]
    assert hint.startswith("install the torch build for your CUDA first") and "edgecnn[tensorrt]" in hint
    for cuda, extra in (("12.8", "tensorrt-cu12"), ("13.0", "tensorrt-cu13"), ("11.8", "tensorrt")):
        monkeypatch.setattr(torch.version, "cuda", cuda)
        assert trt_backend.diagnose()[1] == f"install it with: pip install 'edgecnn[{extra}]'"
        assert trt_backend.missing().extra == extra
    monkeypatch.setattr(trt_backend, "on_jetson", lambda: True)  # JetPack's TensorRT, never a pip one
    hint = str(trt_backend.missing())
    assert "--system-site-packages" in hint and "pip install 'edgecnn" not in hint
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(torch.version, "cuda", None)  # a PyPI (CPU) torch on a Jetson
    assert trt_backend.diagnose() == ("torch here is a CPU-only build, so CUDA is not available to it",
                                      "install NVIDIA's torch wheel for your JetPack")


def test_builder_logging_is_quiet_below_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for level in ("debug", "warning", "error"):
        monkeypatch.setattr(trt_backend.log, level, lambda *a, _level=level: calls.append(_level))
    fake = SimpleNamespace(ILogger=_ILogger)
    monkeypatch.setattr(trt_backend.log, "isEnabledFor", lambda level: False)
    logger = trt_backend.make_logger(fake)
    for _ in range(1000):  # a build's verbose chatter
        logger.log(_Severity.VERBOSE, "tactic timing")
        logger.log(_Severity.INFO, "layer fused")
    assert calls == [], "no logging call below WARNING"
    logger.log(_Severity.WARNING, "w")
    logger.log(_Severity.ERROR, "e")
    logger.log(_Severity.INTERNAL_ERROR, "ie")
    assert calls == ["warning", "error", "error"] and logger.errors == ["e", "ie"]
    monkeypatch.setattr(trt_backend.log, "isEnabledFor", lambda level: level <= logging.DEBUG)
    verbose = trt_backend.make_logger(fake)  # asked for: edgecnn.tensorrt at DEBUG passes everything on
    verbose.log(_Severity.VERBOSE, "v")
    assert calls[-1] == "debug"


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags

    def get_flag(self, flag: int) -> bool:
        return bool(self.flags >> int(flag) & 1)

    def get_input(self, _index: int) -> SimpleNamespace:
        return SimpleNamespace(name="input", shape=SHAPE)


class _Config:
    def __init__(self) -> None:
        self.flags = {"TF32"}  # TensorRT enables TF32 by default

    def set_memory_pool_limit(self, *_args) -> None:
        pass

    def clear_flag(self, flag: str) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: str) -> bool:
        return flag in self.flags


class _Builder:
    def create_network(self, flags: int) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()


def _api(version: str, *, strongly_typed_flag: bool = True, tf32_flag: bool = True) -> SimpleNamespace:
    """The part of the tensorrt module's API that the builder's decisions touch."""
    return SimpleNamespace(
        __version__=version, MemoryPoolType=SimpleNamespace(WORKSPACE=0),
        NetworkDefinitionCreationFlag=SimpleNamespace(**({"STRONGLY_TYPED": 1} if strongly_typed_flag else {})),
        BuilderFlag=SimpleNamespace(**({"TF32": "TF32"} if tf32_flag else {})),
        OnnxParser=lambda network, logger: SimpleNamespace(parse=lambda data, path: True))


@pytest.mark.parametrize("version, flag, expected", [("10.3.0", True, True), ("10.0.1", False, False),
                                                     ("11.1.0", False, True), ("11.1.0", True, True)])
def test_build_record_says_what_was_set(tmp_path: Path, version: str, flag: bool, expected: bool) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    api, builder = _api(version, strongly_typed_flag=flag, tf32_flag=flag), _Builder()
    network, _parser, strongly_typed = trt_exporter._parse(api, builder, SimpleNamespace(errors=[]), onnx_file)
    assert strongly_typed is expected and network.flags == (1 << 1 if flag else 0)
    config, tf32 = trt_exporter._builder_config(api, builder, network, (SHAPE,) * 3, 64)
    assert tf32 is (False if flag else None)  # cleared and read back, or no such flag to set
    assert ("TF32" in config.flags) is not flag
    engine = tmp_path / "model.fp32.engine"
    built = {"strongly_typed": strongly_typed, "tf32": tf32, "timing_cache": None}
    src = Artifact(stage="export", format="onnx", precision="fp32", path=onnx_file, sha256="0" * 64)
    trt_exporter._write_sidecar(engine, src, {"input": "input", "output": "logits"}, (SHAPE,) * 3,
                                {"tensorrt": version, "gpu": "g", "compute_capability": "sm_87"}, built)
    record = json.loads(sidecar_path(engine).read_text())
    assert record["strongly_typed"] is expected and record["tf32"] == tf32 and record["tensorrt"] == version
    notes = trt_exporter._notes(built)
    assert notes.startswith("strongly typed" if expected else "NOT strongly typed")
    assert ("TF32 off" if flag else "no TF32 flag") in notes


def test_refused_tensor_address_is_an_error() -> None:
    said: list[tuple[str, int]] = []
    ok = SimpleNamespace(set_tensor_address=lambda name, address: said.append((name, address)) or True)
    trt_runtime._bind(ok, "input", 4096)
    assert said == [("input", 4096)]
    refused = SimpleNamespace(set_tensor_address=lambda name, address: False)
    with pytest.raises(ArtifactError, match="refused the device address of tensor 'logits'"):
        trt_runtime._bind(refused, "logits", 4097)


def test_concurrent_runs_take_turns() -> None:
    rt = TensorRTRuntime.__new__(TensorRTRuntime)  # the run path only: loading needs a GPU
    rt._batch_range, rt._lock = (1, 4), threading.Lock()
    active, overlaps = [], []

    def execute(x: np.ndarray) -> np.ndarray:
        active.append(1)
        overlaps.append(len(active) > 1 or not rt._lock.locked())
        time.sleep(0.01)
        active.pop()
        return x

    rt._execute = execute
    threads = [threading.Thread(target=rt._run, args=(np.zeros((2, 3, 4, 4), np.float32),)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 6 and not any(overlaps)
    with pytest.raises(ConfigError, match="outside what this engine was built for"):
        rt._run(np.zeros((5, 3, 4, 4), np.float32))
