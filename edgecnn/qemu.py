"""ONNX Runtime on an emulated older x86 CPU: real AVX2 int8 kernels on any x86-64 host.

``qemu-x86_64 -cpu Haswell`` (Debian package ``qemu-user``) runs this Python with CPUID reporting a
Haswell: AVX2 and FMA, no VNNI, no AVX-512, no AMX, whatever the host has. ONNX Runtime's MLAS then
dispatches its AVX2 U8S8 kernels, whose ``VPMADDUBSW`` adds u8 x s8 pairs into a saturating int16:
what an AVX2 CPU without VNNI computes, measured rather than emulated in numpy
(:mod:`edgecnn.exporters.saturation` models it). About 100-200x slower than native: the worker
below imports numpy and onnxruntime only (no torch, no edgecnn module that pulls it in).

    outputs, seen = qemu.ort_outputs(["model.int8.onnx"], x)   # x: (N, C, H, W) float32, run at batch 1
    seen["cpu"]["isa"]                                         # ['avx2', 'fma']: what the process saw

The worker (:func:`main`) is shared with the aarch64 emulation (:mod:`edgecnn.qemu_arm`), which also runs
OpenVINO through it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import hostinfo
from .backends.onnxruntime import session  # light: imports onnxruntime only when called
from .backends.openvino import plugin_precision, precision_hint  # light: read a core / compiled model

CPU = "Haswell"  # AVX2 + FMA, no VNNI / AVX-512 / AMX


def unavailable() -> str | None:
    """Why ONNX Runtime cannot run under QEMU here, or None when it can."""
    if not shutil.which("qemu-x86_64"):
        return "qemu-x86_64 not found (Debian: apt-get install qemu-user)"
    if platform.machine().lower() not in ("x86_64", "amd64") or os.name != "posix":
        return f"QEMU user-mode x86-64 needs an x86-64 Linux Python here, not {platform.machine()} {os.name}"
    return None


def python(args: list[str], *, cpu: str = CPU, timeout: float = 600) -> subprocess.CompletedProcess:
    """This interpreter with ``args`` under ``qemu-x86_64 -cpu cpu``; RuntimeError (with its stderr) on failure."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    proc = subprocess.run([shutil.which("qemu-x86_64"), "-cpu", cpu, sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        err = "\n".join(line for line in proc.stderr.splitlines() if "TCG doesn't support" not in line)
        raise RuntimeError(f"under qemu-x86_64 -cpu {cpu}, python {' '.join(args)[:200]}: exit {proc.returncode}\n"
                           f"{err[-3000:]}")
    return proc


def run_worker(launch, models: list[str | Path], x, *, options: list[str]) -> tuple[list, dict]:
    """Run the worker below (``launch(args, work)`` starts ``-m edgecnn.qemu *args`` under some emulator) on
    each model with its input, batch 1; its first outputs (None for a model that failed to compile, when
    the worker records failures) and its process.json. Shared by the x86 and the aarch64 emulations."""
    import numpy as np

    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(models)
    if len(xs) != len(models):
        raise ValueError(f"{len(models)} models but {len(xs)} inputs")
    with tempfile.TemporaryDirectory(prefix="edgecnn-qemu-") as work:
        args = ["--out", work, *options]
        saved: dict[int, str] = {}
        for model, xi in zip(models, xs):
            if id(xi) not in saved:
                saved[id(xi)] = str(Path(work) / f"x{len(saved)}.npy")
                np.save(saved[id(xi)], np.ascontiguousarray(xi))
            args += [f"{Path(model).resolve()}={saved[id(xi)]}"]
        launch(args, Path(work))
        outs = [np.load(f) if (f := Path(work) / f"{i}.npy").is_file() else None for i in range(len(models))]
        seen = json.loads((Path(work) / "process.json").read_text())
    return outs, seen


def ort_outputs(models: list[str | Path], x, *, cpu: str = CPU, threads: int = 1, optimize: bool = True,
                timeout: float = 600) -> tuple[list, dict]:
    """The first output of each ONNX model for every input of ``x`` (batch 1, concatenated), computed by
    ONNX Runtime's CPU kernels under ``qemu-x86_64 -cpu cpu``; and what that process saw (CPU, versions).

    ``x``: one array for every model, or a list with one array per model (any dtype the model takes).
    One emulated process runs them all: its start (about 5 s) is paid once."""
    def launch(args: list[str], work: Path) -> None:
        python(["-m", "edgecnn.qemu", *args], cpu=cpu, timeout=timeout)

    outs, seen = run_worker(launch, models, x, options=["--threads", str(threads)] + ([] if optimize else
                                                                                      ["--no-optimize"]))
    version = subprocess.run([shutil.which("qemu-x86_64"), "--version"], capture_output=True, text=True).stdout
    return outs, {**seen, "qemu_cpu": cpu, "qemu": (version.splitlines() or ["?"])[0]}


def _openvino(path: str, x, *, threads: int, hint: str | None, precision: str | None = None) -> tuple[object, dict]:
    """One model on OpenVINO's CPU plugin, batch 1: its first outputs and what the plugin reported.
    ``precision`` (an artifact's): the hint edgecnn's runtime sets for it on this CPU, instead of ``hint``."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    hint = precision_hint(core, precision) if precision else hint
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    try:
        compiled = core.compile_model(core.read_model(path), "CPU", config)
    except RuntimeError as e:
        return None, {"model": path, "error": " ".join(str(e).split())[:600]}
    exec_: dict[str, dict[str, int]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer, primitive, precision = (rt[k].astype(str) if k in rt else "?"
                                       for k in ("layerType", "primitiveType", "runtimePrecision"))
        kind = exec_.setdefault(layer, {})
        key = f"{primitive}/{precision}"
        kind[key] = kind.get(key, 0) + 1
    request = compiled.create_infer_request()
    out = np.concatenate([request.infer({0: x[j: j + 1]})[compiled.output(0)].copy() for j in range(len(x))])
    # the inference precision (and compute layers by kernel precision) read back as edgecnn's runtime reads it
    return out, {"model": path, **plugin_precision(compiled), "exec": exec_}


def main(argv: list[str] | None = None) -> None:
    """The worker: numpy + onnxruntime (or openvino) only, so that it stays usable at emulation speed."""
    ap = argparse.ArgumentParser(description="run ONNX models on the CPU, batch 1; save first outputs")
    ap.add_argument("runs", nargs="+", metavar="MODEL.onnx=INPUTS.npy")
    ap.add_argument("--out", required=True, help="folder for <i>.npy (one per run) and process.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-optimize", action="store_true", help="graph optimisations off (float Q/DQ, no int8 kernels)")
    ap.add_argument("--engine", choices=("onnxruntime", "openvino"), default="onnxruntime")
    ap.add_argument("--hint", help="OpenVINO INFERENCE_PRECISION_HINT (default: the plugin's own)")
    ap.add_argument("--precisions", help="OpenVINO: each run's artifact precision (comma list): the hint "
                                         "edgecnn's runtime sets for it on this CPU, instead of --hint")
    args = ap.parse_args(argv)
    precisions = args.precisions.split(",") if args.precisions else [None] * len(args.runs)
    if len(precisions) != len(args.runs):
        ap.error(f"--precisions: {len(precisions)} for {len(args.runs)} runs")
    import numpy as np

    runs = []
    for i, run in enumerate(args.runs):
        path, _, inputs = run.rpartition("=")
        x = np.load(inputs)
        if args.engine == "openvino":
            out, info = _openvino(path, x, threads=args.threads, hint=args.hint, precision=precisions[i])
            runs.append(info)
            if out is None:
                continue
        else:
            sess = session(path, args.threads, optimize=not args.no_optimize)
            inp = sess.get_inputs()[0]
            if inp.type in ("tensor(float16)", "tensor(float)"):  # as edgecnn's runtime feeds it
                x = x.astype(np.float16 if inp.type == "tensor(float16)" else np.float32, copy=False)
            out = np.concatenate([sess.run(None, {inp.name: x[j: j + 1]})[0] for j in range(len(x))])
        np.save(Path(args.out) / f"{i}.npy", out)
    seen = {"cpu": hostinfo.cpu_info(), "python": platform.python_version(), "numpy": np.__version__}
    if args.engine == "openvino":
        import openvino as ov

        seen.update(openvino=ov.get_version(), runs=runs)
    else:
        import onnxruntime as ort

        seen["onnxruntime"] = ort.__version__
    (Path(args.out) / "process.json").write_text(json.dumps(seen, indent=1))


if __name__ == "__main__":
    main()
