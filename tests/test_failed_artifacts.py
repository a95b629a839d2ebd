"""A failed artifact is never a default and never hides behind "advisory"; a slow int8 model is flagged.

The failures are injected (a compile error, a slow kernel), so these tests do not depend on the CPU:
on an Intel Xeon with AMX, OpenVINO really fails to compile some grouped int8 convolutions
(tests/test_openvino_amx.py), elsewhere it never does.
"""
from __future__ import annotations

import time

import pytest

from edgecnn import runtimes
from edgecnn.cli import main
from edgecnn.manifest import Manifest
from edgecnn.pipeline import ExportConfig, run_export
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.pipeline.select import select_default
from edgecnn.results import ArtifactResult
from edgecnn.timing import Latency
from edgecnn.report import export_table
from edgecnn.runtimes.onnxruntime import OnnxRuntime
from edgecnn.backends.openvino import AMX_HINT
from edgecnn.runtimes.openvino import OpenVINORuntime, compile_failure

HAS_OV = runtimes.availability()["openvino"] is None


def _res(cosine=0.99, p50=1.0, passed=True, error=None):
    """A result as the verifier makes it: parity and latency, or an error and neither."""
    if error:
        return ArtifactResult("route", "int8", error=error)
    parity = ParityResult("route", "int8", 8, 0.1, 0.01, 0.01, cosine, 30.0, 1.0, 1.0, 8, 1.0,
                          Tolerance.for_precision("int8"), () if passed else ("cosine below 0.98",))
    return ArtifactResult("route", "int8", parity=parity, latency=Latency(20, 1, p50, p50, p50, p50, 0.0))


def test_a_failed_candidate_is_never_the_default():
    assert select_default({"qdq": _res(error="could not compile"), "nncf": _res(cosine=0.944, passed=False)}) == "nncf"
    assert select_default({"qdq": _res(error="could not compile")}) is None
    assert select_default({}) is None
    nan_outputs = _res(cosine=float("nan"), passed=False)  # ran, but produced NaN/Inf
    assert select_default({"a": nan_outputs, "b": _res(cosine=0.5, passed=False)}) == "b"
    errored = _res(cosine=0.999)
    errored.error = "timed out after the first batch"  # an error is final, whatever ran before it
    assert select_default({"a": errored, "b": _res(cosine=0.9, passed=False)}) == "b"


def test_fidelity_then_not_slower_than_fp32_then_speed():
    a, b = _res(cosine=0.995, p50=3.0), _res(cosine=0.990, p50=1.0)
    assert select_default({"a": a, "b": b}) == "a"  # both faster than fp32 (no baseline): better cosine wins
    assert select_default({"a": a, "b": b}, baseline_p50=2.0) == "b"  # a is slower than fp32: b is not
    assert select_default({"a": a, "b": _res(cosine=0.995, p50=2.5)}) == "b"  # same fidelity: faster
    assert select_default({"a": a, "b": _res(cosine=0.90, passed=False)}, baseline_p50=2.0) == "a"  # fails parity


def test_compile_failure_names_the_amx_limit_only_on_amx():
    e = RuntimeError("Exception from src/inference/src/cpp/core.cpp:112:\n"
                     "No reorder available for the following tensor descriptors: abcde and aBDec16c64b4c")
    assert AMX_HINT in str(compile_failure(e, "m.xml", amx=True))
    plain = str(compile_failure(e, "m.xml", amx=False))
    assert AMX_HINT not in plain and "could not compile m.xml: No reorder available" in plain


@pytest.mark.skipif(not HAS_OV, reason="openvino is not installed")
def test_export_with_a_route_that_cannot_compile_and_a_slow_int8(tmp_path, monkeypatch, capsys):
    real_ov, real_ort = OpenVINORuntime._load, OnnxRuntime._run
    broken = {"model.int8.qdq.xml", "model.int8.s8s8.xml"}

    def ov_load(self):
        if str(self.path).endswith(tuple(broken)):
            raise compile_failure(RuntimeError("No reorder available for the following tensor descriptors: "
                                               "abcde and aBDec16c64b4c"), self.path, amx=True)
        real_ov(self)

    def slow_int8(self, x):
        if str(self.path).endswith("model.int8.onnx"):
            time.sleep(0.05)  # far slower than a 64 px SqueezeNet in fp32
        return real_ort(self, x)

    monkeypatch.setattr(OpenVINORuntime, "_load", ov_load)
    monkeypatch.setattr(OnnxRuntime, "_run", slow_int8)
    out = tmp_path / "sq"
    cfg = ExportConfig("squeezenet1_1", resolution=64, int8=True, calib_size=8, eval_size=4, out=str(out),
                       targets=("onnxruntime", "openvino"), progress=False)
    result = run_export(cfg, log=lambda _m: None)
    m = Manifest.load(out)
    assert m.selected["openvino:int8"]["default"] == "openvino-int8-nncf"
    assert "could not compile" in m.results["openvino-int8-qdq"].error
    assert AMX_HINT in m.results["openvino-int8-qdq"].error
    # a losing route that fails here is removed, not left in the folder for check to fail or predict to deploy
    assert m.artifact("openvino-int8-qdq") is None and not (out / "openvino" / "model.int8.qdq.xml").exists()
    assert result.passed  # the failed route lost to a working one: the deployable set works
    assert m.results["int8"].slower_than_fp32 > 1.05
    assert any("int8 runs" in n and "slower than fp32" in n for n in m.notes)
    from rich.console import Console

    console = Console(width=300, record=True)
    console.print(export_table(m))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "openvino-int8-qdq" in line)
    assert "failed (not the default)" in row and "advisory" not in row
    assert "slower than fp32" in next(line for line in text.splitlines() if line.lstrip("│ ").startswith("int8 "))

    broken.add("model.int8.nncf.xml")  # now no OpenVINO int8 route works: no default, and the export fails
    capsys.readouterr()
    code = main(["export", "squeezenet1_1", "--resolution", "64", "--int8", "--calib-size", "8", "--out", str(out),
                 "--targets", "onnxruntime,openvino", "--quiet"])
    m = Manifest.load(out)
    assert m.selected["openvino:int8"]["default"] is None and not m.passed()
    assert code == 1 and "FAILED" in capsys.readouterr().out


@pytest.mark.skipif(not HAS_OV, reason="openvino is not installed")
def test_a_stage_that_fails_to_build_is_recorded_not_fatal(tmp_path, monkeypatch):
    from edgecnn.errors import ExportError
    from edgecnn.exporters import openvino

    def boom(*_a, **_k):
        raise ExportError("OpenVINO could not convert model.sim.onnx: injected")

    monkeypatch.setattr(openvino, "convert_ir", boom)
    out = tmp_path / "sq"
    cfg = ExportConfig("squeezenet1_1", resolution=64, eval_size=4, out=str(out), targets=("onnxruntime", "openvino"),
                       progress=False, latency=False)
    result = run_export(cfg, log=lambda _m: None)
    m = Manifest.load(out)
    assert m.failures() == {"openvino-fp32": "OpenVINO could not convert model.sim.onnx: injected"}
    assert not result.passed and {a.stage for a in m.artifacts} == {"export", "simplify"}
