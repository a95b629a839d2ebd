"""ONNX Runtime on an emulated older x86 CPU: real AVX2 int8 kernels on any x86-64 host.

``qemu-x86_64 -cpu Haswell`` (Debian package ``qemu-user``) runs this Python with CPUID reporting a
Haswell: AVX2 and FMA, no VNNI, no AVX-512, no AMX, whatever the host has. ONNX Runtime's MLAS then
dispatches its AVX2 U8S8 kernels, whose ``VPMADDUBSW`` adds u8 x s8 pairs into a saturating int16:
what an AVX2 CPU without VNNI computes, measured rather than emulated in numpy
(:mod:`edgecnn.exporters.saturation` models it). About 100-200x slower than native: the worker
below imports numpy and onnxruntime only (no torch, no edgecnn module that pulls it in).

    outputs, seen = qemu.ort_outputs(["model.int8.onnx"], x)   # x: (N, C, H, W) float32, run at batch 1
    seen["cpu"]["isa"]                                         # ['avx2', 'fma']: what the process saw
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


def ort_outputs(models: list[str | Path], x, *, cpu: str = CPU, threads: int = 1, optimize: bool = True,
                timeout: float = 600) -> tuple[list, dict]:
    """The first output of each ONNX model for every input of ``x`` (batch 1, concatenated), computed by
    ONNX Runtime's CPU kernels under ``qemu-x86_64 -cpu cpu``; and what that process saw (CPU, versions).

    ``x``: one array for every model, or a list with one array per model (any dtype the model takes).
    One emulated process runs them all: its start (about 5 s) is paid once."""
    import numpy as np

    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(models)
    if len(xs) != len(models):
        raise ValueError(f"{len(models)} models but {len(xs)} inputs")
    with tempfile.TemporaryDirectory(prefix="edgecnn-qemu-") as work:
        args = ["-m", "edgecnn.qemu", "--out", work, "--threads", str(threads)]
        args += [] if optimize else ["--no-optimize"]
        saved: dict[int, str] = {}
        for i, (model, xi) in enumerate(zip(models, xs)):
            if id(xi) not in saved:
                saved[id(xi)] = str(Path(work) / f"x{len(saved)}.npy")
                np.save(saved[id(xi)], np.ascontiguousarray(xi))
            args += [f"{model}={saved[id(xi)]}"]
        python(args, cpu=cpu, timeout=timeout)
        outs = [np.load(Path(work) / f"{i}.npy") for i in range(len(models))]
        seen = json.loads((Path(work) / "process.json").read_text())
    version = subprocess.run([shutil.which("qemu-x86_64"), "--version"], capture_output=True, text=True).stdout
    return outs, {**seen, "qemu_cpu": cpu, "qemu": (version.splitlines() or ["?"])[0]}


def main(argv: list[str] | None = None) -> None:
    """The worker: numpy + onnxruntime only, so that it stays usable at emulation speed."""
    ap = argparse.ArgumentParser(description="run ONNX models with ONNX Runtime (CPU), batch 1; save first outputs")
    ap.add_argument("runs", nargs="+", metavar="MODEL.onnx=INPUTS.npy")
    ap.add_argument("--out", required=True, help="folder for <i>.npy (one per run) and process.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-optimize", action="store_true", help="graph optimisations off (float Q/DQ, no int8 kernels)")
    args = ap.parse_args(argv)
    import numpy as np
    import onnxruntime as ort

    for i, run in enumerate(args.runs):
        path, _, inputs = run.rpartition("=")
        x = np.load(inputs)
        sess = session(path, args.threads, optimize=not args.no_optimize)
        name = sess.get_inputs()[0].name
        np.save(Path(args.out) / f"{i}.npy", np.concatenate([sess.run(None, {name: x[j: j + 1]})[0]
                                                             for j in range(len(x))]))
    seen = {"cpu": hostinfo.cpu_info(), "onnxruntime": ort.__version__, "python": platform.python_version()}
    (Path(args.out) / "process.json").write_text(json.dumps(seen, indent=1))


if __name__ == "__main__":
    main()
