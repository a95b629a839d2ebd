"""benchmarks/validate_tensorrt.py runs its CPU steps anywhere, skips the GPU ones with the reason, and
writes a report that `edgecnn report` merges."""
import json
import subprocess
import sys
from pathlib import Path

from edgecnn.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "validate_tensorrt.py"


def test_cpu_steps_run_and_gpu_steps_say_why(tmp_path):
    report = tmp_path / "validate.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", "lenet5", "--weights", "none", "--calib", "8",
                        "--eval", "8", "--cpu-only", "--out", str(tmp_path / "work"), "--json", str(report)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    data = json.loads(report.read_text())
    steps = {s["name"]: s for s in data["validation"]["steps"]}
    assert [n for n, s in steps.items() if not s["needs_gpu"]] == ["devices", "trt-qdq", "trt-qdq-b2"]
    assert all(s["status"] == "PASS" for s in steps.values() if not s["needs_gpu"])
    gpu = [s for s in steps.values() if s["needs_gpu"]]
    assert len(gpu) == 8 and all(s["status"] == "SKIPPED" and "--cpu-only" in s["detail"] for s in gpu)
    assert data["results"] == [] and len(data["skipped"]) == 8  # nothing measured is claimed
    assert "validate_tensorrt: 3 passed, 0 failed, 8 skipped" in r.stdout
    assert main(["report", str(report)]) == 0  # a BenchReport that merges


# --- issue 20: the script's own decisions, on the CPU (TensorRT absent: no TensorRT result is faked) ---------
sys.path.insert(0, str(SCRIPT.parent))
import validate_tensorrt as vt  # noqa: E402


def test_a_cuda_or_tensorrt_exception_is_a_failed_row_not_a_crash():
    v = vt.Validation(None)

    def cuda_error():
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors ...")

    def library_exit():
        raise SystemExit(3)  # a native library that gives up by exiting

    v.run("one", cuda_error)
    v.run("two", library_exit, gpu=True)
    v.run("three", lambda: "fine", after=("one",))
    v.run("four", lambda: "fine")
    assert [(s.name, s.status) for s in v.steps] == [("one", "FAIL"), ("two", "FAIL"), ("three", "SKIPPED"),
                                                     ("four", "PASS")]
    assert v.steps[0].detail.startswith("RuntimeError: CUDA error: an illegal memory access") and "\n" not in \
        v.steps[0].detail
    assert vt.guarded(lambda: (_ for _ in ()).throw(OSError("libnvinfer.so.10: cannot open")), None) == \
        (None, "OSError: libnvinfer.so.10: cannot open")


def test_the_load_step_computes_the_originals_logits(tmp_path):
    """`load` raised TypeError: 'Original' object is not callable. Here on the CPU, with an ONNX artifact standing
    where the engine would be: the original's logits are computed, and the step fails only where it must, on
    the device (an ONNX model is not an engine on CUDA; nothing about TensorRT is claimed)."""
    out = tmp_path / "lenet"
    assert main(["export", "lenet5", "--targets", "onnxruntime", "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "manifest.json").read_text())
    for a in data["artifacts"]:
        a["stage"] = "tensorrt-fp32" if a["stage"] == "simplify" else a["stage"]
    data["results"]["tensorrt-fp32"] = data["results"].pop("simplify")
    (out / "manifest.json").write_text(json.dumps(data))
    v = vt.Validation(None)
    v.run("load", lambda: vt.check_load(out))
    assert v.steps[0].status == "FAIL" and v.steps[0].detail == "AssertionError: the engine runs on cpu, not cuda", \
        v.steps[0].detail


def test_jetpack_hint_says_6_1_or_later(monkeypatch):
    import types

    from edgecnn.backends import tensorrt as trt_backend

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.2"))  # JetPack 6.0's
    monkeypatch.setattr(trt_backend, "on_jetson", lambda: True)
    reason, fix = trt_backend.diagnose()
    assert "TensorRT 8.6.2 is too old" in reason
    assert "JetPack 6.1 or later" in fix and "JetPack 6.0 ships TensorRT 8.6" in fix


def test_max_drop_judges_tensorrts_int8_model_in_exact_qdq_arithmetic(tmp_path, monkeypatch):
    """ONNX Runtime's CPU int8 kernels are wrong on AVX2 without VNNI: the budget search for the model TensorRT
    runs measures it with those kernels off (exact Q/DQ arithmetic); the CPU's own int8 models keep them."""
    from types import SimpleNamespace

    import numpy as np

    from edgecnn.exporters import sensitivity
    from edgecnn.exporters.int8 import TENSORRT_STAGE, Int8Recipe
    from edgecnn.pipeline import run
    import tiny_onnx  # tests/ is on the path (rootdir), not a package

    seen = []
    real = sensitivity.logits
    monkeypatch.setattr(sensitivity, "logits", lambda m, x, t=None, *, optimize=True: seen.append(optimize) or
                        real(m, x, t, optimize=optimize))
    path = tmp_path / "tiny.onnx"
    tiny_onnx.save(tiny_onnx.conv_gemm_model(), path)
    x = tiny_onnx.inputs(8)
    ref = real(path, x)
    for exact in (True, False):
        seen.clear()
        sensitivity.fallback_for_budget(path, x, x, ref, max_drop=1e-9, candidates=2, max_layers=1, exact=exact)
        assert seen and all(o is (not exact) for o in seen), (exact, seen)

    asked = {}
    monkeypatch.setattr(run, "fallback_for_budget", lambda *a, **k: asked.setdefault(k["exact"], ([], {
        "baseline_drop": 0.0, "final_drop": 0.0, "met": True})))
    stub = SimpleNamespace(prep=None, cfg=SimpleNamespace(calib_dir=None, max_drop=0.01, threads=1), calib=None,
                           plan=SimpleNamespace(opset=17), say=lambda _m: None,
                           verify=SimpleNamespace(original_logits=lambda x: np.zeros((len(x), 10))))
    monkeypatch.setattr(run, "calibration_batch", lambda *a, **k: np.zeros((2, 3, 8, 8), np.float32))
    for stage, exact in ((TENSORRT_STAGE, True), ("int8", False)):
        asked.clear()
        run._Export.sensitivity_fallback(stub, SimpleNamespace(path=path), stage, Int8Recipe(), "")
        assert list(asked) == [exact], (stage, asked)
