"""Validate edgecnn's TensorRT path end to end, on a machine with an NVIDIA GPU and TensorRT >= 10.

    python benchmarks/validate_tensorrt.py [--model efficientnet_lite0] [--weights imagenet|none|PATH]
        [--out DIR] [--json FILE] [--label TEXT] [--iterations 200] [--cpu-only]

Steps, each PASS, FAIL or SKIPPED with the reason (a step that needs a GPU is never faked):

CPU (run everywhere; what TensorRT will be handed, checked before any GPU is involved)
  devices        an engine loads on CUDA, every other artifact on the CPU, unless --device says otherwise
  trt-qdq        the int8 QDQ model built for TensorRT: no int32 DequantizeLinear (its parser rejects them),
                 every zero point 0, float graph output, opset <= 20; its parity vs PyTorch in exact Q/DQ
                 arithmetic (what TensorRT's int8 approximates; judged with real weights)
  trt-qdq-b2     the same at a fixed batch of 2 (calibration fed 2 images at a time)
GPU (TensorRT + CUDA)
  export         `edgecnn export MODEL --fp16 --int8 --targets onnxruntime,tensorrt` (the CLI, as a user runs it):
                 fp32, fp16 and int8 engines built and each checked against PyTorch on CUDA
  build-record   every engine strongly typed, TF32 off, later builds reusing the timing cache
  export-dynamic `--dynamic-batch --fp16 --targets tensorrt` (one profile, batch 1..32)
  export-b2      `--batch 2 --int8 --targets tensorrt`
  load           `edgecnn.runtimes.load(engine)` with no device: runs on CUDA, matches `check`
  check          `edgecnn check --json`: parity of every engine vs PyTorch (table below)
  bench          `edgecnn bench --json`: latency of every engine vs PyTorch eager on the same GPU (and on the CPU)
  bench-dynamic  `edgecnn bench --batch 1,8` on the dynamic-batch engines

Writes FILE (default validate_tensorrt.json): the `edgecnn bench --json` report of the static export (a
BenchReport: `edgecnn report FILE laptop.json ...` merges it), with the steps and the parity rows under
"validation". Without a GPU the report has no rows and says why in "skipped". Exit status 0 when no step
failed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("NNCF_CI", "1")  # no NNCF telemetry
os.environ.setdefault("CI", "true")

from _results import save_json  # noqa: E402  (benchmarks/_results.py)


@dataclass
class Step:
    name: str
    needs_gpu: bool
    status: str  # PASS | FAIL | SKIPPED
    detail: str
    seconds: float


class Validation:
    def __init__(self, gpu_missing: str | None) -> None:
        self.gpu_missing = gpu_missing  # why the GPU steps cannot run here (None: they can)
        self.steps: list[Step] = []

    def run(self, name: str, fn: Callable[[], str], *, gpu: bool = False, after: tuple[str, ...] = ()) -> None:
        """Run one step; a GPU step without a GPU, or one whose prerequisite failed, is SKIPPED with why."""
        if gpu and self.gpu_missing:
            self.steps.append(Step(name, gpu, "SKIPPED", f"needs TensorRT and CUDA: {self.gpu_missing}", 0.0))
            return
        failed = [s.name for s in self.steps if s.name in after and s.status != "PASS"]
        if failed:
            self.steps.append(Step(name, gpu, "SKIPPED", f"needs step {failed[0]}", 0.0))
            return
        t0 = time.perf_counter()
        try:
            status, detail = "PASS", fn()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # CUDA, TensorRT, a library's SystemExit: a FAIL row; the next steps still run
            status, detail = "FAIL", failure(e)
        self.steps.append(Step(name, gpu, status, detail, time.perf_counter() - t0))
        print(f"  {status:7} {name}: {detail}", flush=True)

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.steps)


def failure(e: BaseException) -> str:
    """One line for a step's exception, whoever raised it (edgecnn's own, or CUDA's or TensorRT's)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300] or '(no message)'}"


def guarded(fn: Callable[[], object], fallback: object) -> tuple[object, str | None]:
    """``fn()``, or ``fallback`` and why when it raises (probing TensorRT or CUDA must not end the run)."""
    try:
        return fn(), None
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        return fallback, failure(e)


# --- CPU steps ---------------------------------------------------------------------------------------
def check_devices() -> str:
    from edgecnn import runtimes

    chosen = {name: runtimes.device_for(name) for name in runtimes.RUNTIMES}
    assert chosen["tensorrt"] == "cuda", chosen
    assert all(d == "cpu" for n, d in chosen.items() if n != "tensorrt"), chosen
    return ", ".join(f"{n} -> {d}" for n, d in chosen.items())


def check_trt_qdq(args: argparse.Namespace, work: Path, batch: int) -> str:
    """Build TensorRT's int8 QDQ model on the CPU, as the export does, and check what TensorRT requires of it."""
    import onnx

    from edgecnn import create_model
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.exporters.graph import logits
    from edgecnn.exporters.int8 import quantize_int8, recipe_for, tensorrt_recipe
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.models import get_spec, preprocessing
    from edgecnn.parity import compare
    from edgecnn.pipeline.config import TENSORRT_MAX_OPSET
    from edgecnn.runtimes.torch import reference_logits

    spec, weights = get_spec(args.model), _weights(args)
    resolution = args.resolution or spec.resolution
    prep = preprocessing(spec, resolution, weights)
    model = create_model(args.model, weights=weights)
    fp32 = export_onnx(model, work / f"model.b{batch}.onnx", input_shape=(batch, spec.in_chans, resolution, resolution))
    qdq = quantize_int8(fp32, work / f"model.b{batch}.int8-tensorrt.onnx", calibration_batch(prep, args.calib),
                        recipe=tensorrt_recipe(recipe_for()), opset=17, progress=False)
    m = onnx.load(str(qdq.path))
    inits = {i.name: i for i in m.graph.initializer}
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    int32 = [n.name for n in dq if n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    assert not int32, f"{len(int32)} DequantizeLinear with int32 input (TensorRT's parser rejects them): {int32[:3]}"
    zero_points = [onnx.numpy_helper.to_array(inits[n.input[2]]) for n in m.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]
    assert all(not np.any(z) and z.dtype == np.int8 for z in zero_points), "TensorRT needs int8 zero points of 0"
    last = next(n.op_type for n in m.graph.node if m.graph.output[0].name in n.output)
    assert last != "DequantizeLinear", "the graph output is quantized"
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset <= TENSORRT_MAX_OPSET, f"opset {opset} > {TENSORRT_MAX_OPSET}"
    # Exact Q/DQ arithmetic (ONNX Runtime without its int8 kernel fusions), which TensorRT's int8 approximates:
    # this CPU's own int8 kernels would measure themselves instead (AVX2 without VNNI saturates).
    x = evaluation_batch(prep, args.eval)
    parity = compare(reference_logits(model, x), logits(qdq.path, x, optimize=False), precision="int8")
    verdict = (f"exact Q/DQ arithmetic: cosine {parity.cosine:.4f}, confident top-1 {parity.top1_confident:.1%} "
               "vs PyTorch" + ("" if weights else " (random weights: shown, not judged)"))
    assert parity.passed or not weights, f"{verdict}: {'; '.join(parity.failures)}"
    return (f"{len(dq)} DequantizeLinear, none int32; {len(zero_points)} zero points all 0; output from {last}; "
            f"opset {opset}; {verdict}")


def _weights(args: argparse.Namespace) -> str | None:
    return None if args.weights in (None, "none") else args.weights


# --- GPU steps ---------------------------------------------------------------------------------------
def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *argv], capture_output=True, text=True)


def export(args: argparse.Namespace, out: Path, *options: str) -> str:
    weights = ["--weights", args.weights] if _weights(args) else []
    r = cli("export", args.model, *weights, *(["--resolution", str(args.resolution)] if args.resolution else []),
            "--calib-size", str(args.calib), "--out", str(out), "--quiet", *options)
    assert r.returncode == 0, f"exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    from edgecnn.manifest import Manifest

    manifest = Manifest.load(out)
    engines = {k: v for k, v in manifest.results.items() if k.startswith("tensorrt-")}
    assert engines, "no engine was built"
    bad = {k: v.error or "; ".join(v.parity.failures) for k, v in engines.items() if not v.ok or v.device != "cuda"}
    assert not bad, bad
    return ", ".join(f"{k} cosine {v.parity.cosine:.5f}" + (" (advisory)" if v.advisory else "")
                     for k, v in sorted(engines.items()))


def check_build_records(out: Path) -> str:
    from edgecnn.backends.tensorrt import read_sidecar
    from edgecnn.manifest import Manifest

    records = {a.key: read_sidecar(a.path) for a in Manifest.load(out).artifacts if a.format == "tensorrt"}
    for key, r in records.items():
        assert r and r["strongly_typed"] is True and r["tf32"] is False, (key, r)
    reused = [k for k, r in records.items() if (r.get("timing_cache") or {}).get("read_bytes")]
    assert len(reused) >= len(records) - 1, f"timing cache read by {reused} only"
    some = next(iter(records.values()))
    return (f"{len(records)} engines strongly typed, TF32 off, TensorRT {some['tensorrt']} on {some['gpu']} "
            f"({some['compute_capability']}); timing cache reused by {len(reused)}")


def check_load(out: Path) -> str:
    from edgecnn import runtimes
    from edgecnn.data import Preprocessing, evaluation_batch
    from edgecnn.harness.common import original_model, run_batched
    from edgecnn.manifest import Manifest
    from edgecnn.parity import compare

    manifest = Manifest.load(out)
    x = evaluation_batch(Preprocessing.from_dict(manifest.preprocessing), 16)
    engine = next(a for a in manifest.artifacts if a.key == "tensorrt-fp32")
    reference = original_model(manifest).logits(x)  # an Original: its logits(), as `check` computes them
    with runtimes.load(engine.path) as rt:  # a bare path, no device: the runtime's own
        assert rt.device == "cuda", f"the engine runs on {rt.device}, not cuda"
        parity = compare(reference, run_batched(rt, x, manifest.input_shape[0]))
    assert parity.passed, parity.failures
    return f"device {rt.device}; fp32 engine cosine {parity.cosine:.6f}, max abs/max|logit| {parity.max_abs_rel:.2e}"


def check_parity(out: Path, json_path: Path, rows: list[dict]) -> str:
    r = cli("check", str(out), "--json", str(json_path))
    report = json.loads(json_path.read_text()) if json_path.is_file() else {}
    rows += [{"artifact": x["artifact"], "runtime": x["runtime"], "device": x["device"], "precision": x["precision"],
              "verdict": "failed" if x["error"] else "pass" if x["ok"] else "FAIL", "error": x["error"],
              **{k: (x["parity"] or {}).get(k) for k in ("cosine", "max_abs_rel", "top1", "top1_confident")}}
             for x in report.get("results", [])]
    assert r.returncode == 0, f"exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    engines = [x for x in rows if x["runtime"] == "tensorrt"]
    assert engines and all(x["device"] == "cuda" for x in engines)
    return f"{len(rows)} artifact x runtime rows pass, {len(engines)} of them engines on CUDA"


def bench(out: Path, json_path: Path, iterations: int, *batches: str) -> str:
    r = cli("bench", str(out), "--iterations", str(iterations), "--warmup", "20", "--quiet", "--json", str(json_path),
            *(["--batch", ",".join(batches)] if batches else []))
    assert r.returncode == 0, f"exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    rows = json.loads(json_path.read_text())["results"]
    engines = [x for x in rows if x["runtime"] == "tensorrt"]
    assert engines and all(x["device"] == "cuda" and x["speedup"] for x in engines), engines
    eager = [x for x in rows if x["artifact"] == "torch-eager-cuda"]
    assert eager, "no PyTorch eager on CUDA to compare with"
    best = max(engines, key=lambda x: x["speedup"])
    return (f"{len(engines)} engine rows; best {best['artifact']} b{best['batch']}: p50 {best['latency']['p50_ms']:.3f} ms, "
            f"{best['speedup']:.1f}x PyTorch eager on CUDA")


# --- output ------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def report_json(v: Validation, bench_json: Path, parity: list[dict], args: argparse.Namespace) -> dict:
    """The static export's bench report (BenchReport-shaped), with the validation under "validation"."""
    from edgecnn import hostinfo
    from edgecnn.harness.bench import BenchReport

    if bench_json.is_file():
        data = json.loads(bench_json.read_text())
    else:  # no GPU, or the bench failed: an empty report that says why
        skipped = [f"{s.name}: {s.detail}" for s in v.steps if s.status != "PASS"]
        data = BenchReport(model=args.model, input_shape=[], threads=None, warmup=0, iterations=0, duration_s=None,
                           host=hostinfo.host(), versions=hostinfo.versions(), skipped=skipped).to_dict()
    data["label"] = args.label or data.get("label") or f"validate_tensorrt on {_gpu_name()}"
    data["validation"] = {"steps": [s.__dict__ for s in v.steps], "parity": parity, "model": args.model,
                          "weights": args.weights, "gpu_missing": v.gpu_missing,
                          "passed": v.count("PASS"), "failed": v.count("FAIL"), "skipped": v.count("SKIPPED")}
    return data


def _gpu_name() -> str:
    from edgecnn import hostinfo

    gpu, why = guarded(hostinfo.gpu_info, None)
    return gpu["name"] if gpu else f"unknown ({why})" if why else "a machine without a GPU"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="imagenet | none (seeded random init) | PATH")
    p.add_argument("--resolution", type=int)
    p.add_argument("--calib", type=int, default=128, help="calibration images")
    p.add_argument("--eval", type=int, default=64, help="held-out images for the CPU parity check")
    p.add_argument("--iterations", type=int, default=200, help="timed runs per bench row")
    p.add_argument("--out", default="edgecnn_out/validate_tensorrt", help="work folder")
    p.add_argument("--json", default="validate_tensorrt.json", help="the report (BenchReport-shaped)")
    p.add_argument("--label", help="this machine's name in merged reports")
    p.add_argument("--cpu-only", action="store_true", help="run only the CPU steps (the GPU ones are skipped)")
    args = p.parse_args(argv)

    import torch

    from edgecnn.backends import tensorrt as trt_backend

    found, broken = (("--cpu-only was given", "leave it out"), None) if args.cpu_only else \
        guarded(trt_backend.diagnose, None)
    if broken:  # probing TensorRT or CUDA raised: every GPU step is SKIPPED with why, the CPU steps still run
        found = (f"TensorRT or CUDA failed while being probed ({broken})", "see the error")
    gpu_missing = None if found is None else found[0]
    trt_version, why = guarded(lambda: __import__("tensorrt").__version__, "not installed")
    trt_version = trt_version if why is None or "ModuleNotFoundError" in why else f"unusable ({why})"
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU-only build'}), TensorRT {trt_version}, "
          f"GPU {_gpu_name()}, Jetson {trt_backend.on_jetson()}")
    print(f"model {args.model}, weights {args.weights}")
    if found:
        print(f"GPU steps will be SKIPPED: {found[0]}; to run them: {found[1]}")
    out = Path(args.out)
    cpu_dir, static, dynamic, batch2 = out / "cpu", out / "static", out / "dynamic", out / "batch2"
    cpu_dir.mkdir(parents=True, exist_ok=True)
    bench_json, parity = out / "bench.json", []
    bench_json.unlink(missing_ok=True)

    v = Validation(gpu_missing)
    v.run("devices", check_devices)
    v.run("trt-qdq", lambda: check_trt_qdq(args, cpu_dir, 1))
    v.run("trt-qdq-b2", lambda: check_trt_qdq(args, cpu_dir, 2))
    v.run("export", lambda: export(args, static, "--fp16", "--int8", "--targets", "onnxruntime,tensorrt", "--force"),
          gpu=True)
    v.run("build-record", lambda: check_build_records(static), gpu=True, after=("export",))
    v.run("export-dynamic", lambda: export(args, dynamic, "--dynamic-batch", "--fp16", "--targets", "tensorrt",
                                           "--force"), gpu=True)
    v.run("export-b2", lambda: export(args, batch2, "--batch", "2", "--int8", "--targets", "tensorrt", "--force"),
          gpu=True)
    v.run("load", lambda: check_load(static), gpu=True, after=("export",))
    v.run("check", lambda: check_parity(static, out / "check.json", parity), gpu=True, after=("export",))
    v.run("bench", lambda: bench(static, bench_json, args.iterations), gpu=True, after=("export",))
    v.run("bench-dynamic", lambda: bench(dynamic, out / "bench.dynamic.json", args.iterations, "1", "8"), gpu=True,
          after=("export-dynamic",))

    print()
    print(table(["step", "needs", "status", "s", "detail"],
                [[s.name, "GPU" if s.needs_gpu else "CPU", s.status, f"{s.seconds:.1f}", s.detail] for s in v.steps]))
    if parity:
        print()
        print(table(["artifact", "runtime", "device", "precision", "cosine", "max abs/max|logit|", "top-1", "verdict"],
                    [[r["artifact"], r["runtime"], r["device"], r["precision"], _f(r["cosine"], ".5f"),
                      _f(r["max_abs_rel"], ".2e"), _f(r["top1"], ".1%"), r["verdict"]] for r in parity]))
    data = report_json(v, bench_json, parity, args)
    if data["results"]:
        print()
        print(table(["artifact", "runtime", "device", "batch", "p50 ms", "speedup vs eager (same device)"],
                    [[r["artifact"], r["runtime"], r["device"], r["batch"],
                      _f((r["latency"] or {}).get("p50_ms"), ".3f"), _f(r["speedup"], ".2f") + "x"]
                     for r in data["results"]]))
    save_json(args.json, data)
    print(f"\nreport: {args.json} (merge with: edgecnn report {args.json} OTHER.json)")
    print(f"validate_tensorrt: {v.count('PASS')} passed, {v.count('FAIL')} failed, {v.count('SKIPPED')} skipped"
          + (" (GPU steps need TensorRT and CUDA)" if gpu_missing else ""))
    return 1 if v.count("FAIL") else 0


if __name__ == "__main__":
    raise SystemExit(main())
