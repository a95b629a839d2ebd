"""``check --emulate CPU``: an export's ONNX Runtime artifacts judged on an emulated ARM CPU's real kernels.

Every ONNX artifact ONNX Runtime reads runs in one ``qemu-aarch64 -cpu CPU`` process (:mod:`edgecnn.qemu_arm`:
the aarch64 wheel of the host's ONNX Runtime version, edgecnn's own session options, one intra-op thread,
batch 1), and its logits are judged against the PyTorch original exactly as ``check`` judges the host's. What
it shows is what a Raspberry Pi's (``cortex-a72``), a Jetson-class (``cortex-a76``) or an Apple-like
(``max,sve=off``) CPU computes for this model; it says nothing about their speed. OpenVINO is not run here.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .. import qemu_arm
from ..errors import ConfigError, EdgecnnError
from ..parity import Tolerance, compare
from ..results import ArtifactResult

RUNTIME = "onnxruntime"
CAVEAT = ("emulated: qemu-aarch64 -cpu {cpu} ran ONNX Runtime's aarch64 kernels: their arithmetic, "
          "not their speed (QEMU timings mean nothing)")


def check_request(emulate: str, runtimes: tuple[str, ...] | None, device: str | None) -> tuple[str, ...]:
    """The runtimes an emulated check runs (ONNX Runtime only); ConfigError for what it cannot do."""
    if emulate.split(",")[0] not in qemu_arm.PARTS:
        raise ConfigError(f"--emulate: unknown ARM CPU '{emulate}'; known: {', '.join(qemu_arm.PARTS)} "
                          "(QEMU options may follow, e.g. max,sve=off)")
    if runtimes and set(runtimes) != {RUNTIME}:
        raise ConfigError(f"--emulate runs ONNX Runtime only, not {', '.join(sorted(set(runtimes) - {RUNTIME}))}")
    if device not in (None, "cpu"):
        raise ConfigError("--emulate runs on the emulated CPU; leave out --device")
    reason = qemu_arm.unavailable()
    if reason:
        raise ConfigError(f"--emulate {emulate}: {reason}")
    return (RUNTIME,)


def judge(pending: list[tuple[object, ArtifactResult]], x: np.ndarray, reference: np.ndarray, *, cpu: str,
          batch: int, tolerances: dict[str, Tolerance] | None, targets: np.ndarray | None, baseline: dict | None,
          accuracy_against) -> dict:
    """Fill each (artifact, result) with its parity against ``reference`` (and accuracy against ``targets``)
    from one emulated process; returns what that process saw, for the report."""
    seen: dict = {}
    if pending and batch != 1:
        error = f"--emulate runs batch-1 exports; this one takes batch {batch}"
    else:
        try:
            outs, seen = qemu_arm.ort_outputs([str(art.path) for art, _ in pending], x, cpu=cpu, threads=1)
            error = None
        except (EdgecnnError, RuntimeError, OSError) as e:
            outs, error = [None] * len(pending), f"under qemu-aarch64 -cpu {cpu}: {str(e).strip().splitlines()[-1]}"
    for (art, res), out in zip(pending, outs if error is None else [None] * len(pending)):
        res.info = {"emulated_cpu": cpu, "threads": 1}
        if error is not None:
            res.error = error
            continue
        res.info["logits_sha256"] = hashlib.sha256(np.ascontiguousarray(out, np.float32).tobytes()).hexdigest()
        res.parity = compare(reference, out, name=f"{art.key}@{RUNTIME} ({cpu})", precision=art.precision,
                             tolerance=(tolerances or {}).get(art.precision))
        if targets is not None:
            res.accuracy = accuracy_against(out, targets, baseline)
    cpu_seen = seen.get("cpu") or {}
    return {"cpu": cpu, "qemu": seen.get("qemu"), "onnxruntime": seen.get("onnxruntime"),
            "isa_process": cpu_seen.get("isa_process"), "model": cpu_seen.get("model"), "arch": cpu_seen.get("arch"),
            "caveat": CAVEAT.format(cpu=cpu)}
