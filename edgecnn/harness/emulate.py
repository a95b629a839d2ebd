"""``check --emulate CPU``: an export's artifacts judged on an emulated ARM CPU's real kernels.

Every ONNX artifact runs on ONNX Runtime, and every OpenVINO IR on OpenVINO's CPU plugin, in ``qemu-aarch64 -cpu
CPU`` processes (:mod:`edgecnn.qemu_arm`: the aarch64 wheels of the host's ONNX Runtime and OpenVINO versions,
edgecnn's own session options and precision hints, one thread, batch 1), and their logits are judged against the
PyTorch original exactly as ``check`` judges the host's. What it shows is what a Raspberry Pi's (``cortex-a72``),
a Jetson-class (``cortex-a76``) or an Apple-like (``max,sve=off``) CPU computes for this model, and whether each
IR compiles there; it says nothing about their speed. The deployed row is the one an ARM machine deploys; an
OpenVINO route edgecnn makes for x86 only (``exporters.openvino.ROUTE_TARGETS``) is not run (an ARM machine never
deploys it).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .. import qemu_arm
from ..artifact import Artifact
from ..errors import ConfigError, EdgecnnError
from ..parity import Tolerance, compare
from ..results import ArtifactResult

ARCH = "arm"
RUNTIMES = ("onnxruntime", "openvino")
OWN = {"onnx": "onnxruntime", "openvino": "openvino"}  # format -> the runtime that runs it when none is asked
CAVEAT = ("emulated: qemu-aarch64 -cpu {cpu} ran {runtimes}'s aarch64 kernels: their arithmetic, "
          "not their speed (QEMU timings mean nothing)")


def check_request(emulate: str, runtimes: tuple[str, ...] | None, device: str | None) -> None:
    """ConfigError for what an emulated check cannot do (it runs ONNX Runtime and OpenVINO: the aarch64 wheels
    of the host's versions)."""
    if emulate.split(",")[0] not in qemu_arm.PARTS:
        raise ConfigError(f"--emulate: unknown ARM CPU '{emulate}'; known: {', '.join(qemu_arm.PARTS)} "
                          "(QEMU options may follow, e.g. max,sve=off)")
    if runtimes and set(runtimes) - set(RUNTIMES):
        raise ConfigError(f"--emulate runs ONNX Runtime and OpenVINO only, not "
                          f"{', '.join(sorted(set(runtimes) - set(RUNTIMES)))}")
    if device not in (None, "cpu"):
        raise ConfigError("--emulate runs on the emulated CPU; leave out --device")
    reason = qemu_arm.unavailable()
    if reason:
        raise ConfigError(f"--emulate {emulate}: {reason}")


def runtimes_of(art: Artifact, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """What runs ``art`` under emulation: the asked runtimes, else (none asked) its format's own (ONNX on ONNX
    Runtime, IR on OpenVINO): an int8 ONNX on OpenVINO is the QDQ route, made for x86 only."""
    return asked if asked else tuple(r for r in (OWN.get(art.format),) if r)


def judge(pending: list[tuple[Artifact, ArtifactResult]], x: np.ndarray, reference: np.ndarray, *, cpu: str,
          batch: int, tolerances: dict[str, Tolerance] | None, targets: np.ndarray | None, baseline: dict | None,
          accuracy_against) -> dict:
    """Fill each (artifact, result) with its parity against ``reference`` (and accuracy against ``targets``)
    from one emulated process per runtime; returns what those processes saw, for the report."""
    report: dict = {"cpu": cpu}
    for runtime in RUNTIMES:
        mine = [(art, res) for art, res in pending if res.runtime == runtime]
        if mine:
            seen = _judge(runtime, mine, x, reference, cpu=cpu, batch=batch, tolerances=tolerances,
                          targets=targets, baseline=baseline, accuracy_against=accuracy_against)
            cpu_seen = seen.get("cpu") or {}
            report.update({runtime: seen.get(runtime), "qemu": seen.get("qemu") or report.get("qemu"),
                           "isa_process": cpu_seen.get("isa_process") or report.get("isa_process"),
                           "model": cpu_seen.get("model") or report.get("model"),
                           "arch": cpu_seen.get("arch") or report.get("arch")})
    ran = [r for r in RUNTIMES if any(res.runtime == r for _, res in pending)] or ["onnxruntime"]
    names = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
    report["caveat"] = CAVEAT.format(cpu=cpu, runtimes=" and ".join(names[r] for r in ran))
    return report


def _judge(runtime: str, pending: list[tuple[Artifact, ArtifactResult]], x: np.ndarray, reference: np.ndarray, *,
           cpu: str, batch: int, tolerances, targets, baseline, accuracy_against) -> dict:
    seen: dict = {}
    runs: list[dict] = [{}] * len(pending)
    if batch != 1:
        error = f"--emulate runs batch-1 exports; this one takes batch {batch}"
    else:
        paths = [str(art.path) for art, _ in pending]
        try:
            if runtime == "openvino":
                outs, seen = qemu_arm.ov_outputs(paths, x, cpu=cpu, precisions=[a.precision for a, _ in pending])
                runs = seen.get("runs") or runs
            else:
                outs, seen = qemu_arm.ort_outputs(paths, x, cpu=cpu, threads=1)
            error = None
        except (EdgecnnError, RuntimeError, OSError) as e:
            outs, error = [None] * len(pending), f"under qemu-aarch64 -cpu {cpu}: {str(e).strip().splitlines()[-1]}"
    for (art, res), out, run in zip(pending, outs if error is None else [None] * len(pending), runs):
        res.info = {"emulated_cpu": cpu, "threads": 1}
        if error is not None:
            res.error = error
            continue
        if out is None:  # OpenVINO: the IR did not compile (or run) on that CPU
            res.error = f"could not compile on {cpu}: {run.get('error') or 'no output'}"
            continue
        res.info.update({k: run[k] for k in ("inference_precision", "compute_layers", "reference_kernels")
                         if k in run})
        res.info["logits_sha256"] = hashlib.sha256(np.ascontiguousarray(out, np.float32).tobytes()).hexdigest()
        res.parity = compare(reference, out, name=f"{art.key}@{runtime} ({cpu})", precision=art.precision,
                             tolerance=(tolerances or {}).get(art.precision))
        if targets is not None:
            res.accuracy = accuracy_against(out, targets, baseline)
    return seen
