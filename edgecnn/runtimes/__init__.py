"""One interface over torch, ONNX Runtime, OpenVINO and TensorRT.

    rt = edgecnn.runtimes.load("edgecnn_out/mobilenet_v2/model.int8.onnx", threads=2)
    logits = rt.run(batch)            # float32 NCHW in, float32 logits out

A missing backend is reported by :func:`availability` as ``unavailable: <reason>``; loading it
raises :class:`~edgecnn.errors.MissingBackendError` naming the pip extra.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import backends
from ..artifact import Artifact, verified_bytes
from ..errors import ArtifactError, ConfigError, UnknownNameError
from ..registry import Registry
from .base import Runtime, RuntimeInfo, cuda_missing
from .onnxruntime import OnnxRuntime
from .openvino import OpenVINORuntime
from .tensorrt import TensorRTRuntime
from .torch import TorchRuntime

RUNTIMES: Registry[type[Runtime]] = Registry("runtime", UnknownNameError)
for _cls in (TorchRuntime, OnnxRuntime, OpenVINORuntime, TensorRTRuntime):
    RUNTIMES.register(_cls.name, _cls)

SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}
DEVICES = tuple(dict.fromkeys(d for n in RUNTIMES for d in RUNTIMES.get(n).devices))  # what `--device` accepts


def availability() -> dict[str, str | None]:
    """runtime name -> None when usable here, else why not and the pip extra that fixes it."""
    return {name: str(err) if (err := backends.missing(name)) else None for name in RUNTIMES}


def runtime_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_RUNTIME:
        raise ConfigError(f"cannot tell which runtime runs '{path}' (known: {', '.join(SUFFIX_RUNTIME)})")
    return SUFFIX_RUNTIME[suffix]


def device_for(runtime: str, device: str | None = None) -> str:
    """The device ``runtime`` runs on: ``device`` when asked (refused if the runtime cannot use it), else
    the runtime's own default, the first it lists (a TensorRT engine runs on CUDA, the others on the CPU)."""
    cls = RUNTIMES.get(runtime)
    if device is None:
        return cls.devices[0]
    if device not in cls.devices:
        raise ConfigError(f"runtime {runtime} cannot run on '{device}' (it runs on: {', '.join(cls.devices)})")
    return device


def check_device(device: str | None) -> None:
    """A device asked for by name must be one some runtime knows and, for CUDA, be on this machine
    (a one-line error before any work)."""
    if device is None:
        return
    if device not in DEVICES:
        raise ConfigError(f"unknown device '{device}'; devices are: {', '.join(DEVICES)}")
    if device == "cuda" and (why := cuda_missing()):
        raise ConfigError(why)


def load(artifact: Any, *, runtime: str | None = None, device: str | None = None, threads: int | None = None,
         precision: str | None = None, input_shape: tuple[int, ...] | None = None, mode: str = "latency") -> Runtime:
    """Load an Artifact, a path or an nn.Module with the runtime that fits (or the one named), on ``device``
    (``None``: where that runtime runs by default, :func:`device_for`); ``mode``: latency or throughput."""
    data = None
    if isinstance(artifact, Artifact):
        path, runtime, precision = artifact.path, runtime or artifact.runtime, precision or artifact.precision
        data = verified_bytes(artifact)  # read once, size and sha256 checked: these bytes are what runs
    else:
        path = artifact
    if runtime is None:
        runtime = "torch" if not isinstance(path, (str, Path)) else runtime_for(path)
    device = device_for(runtime, device)
    if isinstance(path, (str, Path)) and not Path(path).exists():
        raise ArtifactError(f"artifact not found: {path}")
    return RUNTIMES.get(runtime)(path, precision=precision or "fp32", device=device, threads=threads,
                                 input_shape=input_shape, mode=mode, data=data)


__all__ = ["DEVICES", "RUNTIMES", "Runtime", "RuntimeInfo", "availability", "check_device", "device_for", "load",
           "runtime_for"]
