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
