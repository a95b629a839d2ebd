"""What each backend needs from both sides: helpers its exporter and its runtime share.

The build side (:mod:`edgecnn.exporters`) and the run side (:mod:`edgecnn.runtimes`) of a backend
never import each other; what they have in common lives here (ONNX Runtime session options,
OpenVINO's import, TensorRT's logger and build record), together with the one place that decides
whether a backend is usable on this machine.
"""
from __future__ import annotations

import functools

from ..errors import MissingBackendError
from . import openvino, tensorrt

# What `edgecnn export --targets` can build for, and the pip extra that installs each optional one.
TARGETS = ("onnxruntime", "openvino", "tensorrt")
EXTRAS = {"openvino": "openvino", "tensorrt": "tensorrt"}


@functools.lru_cache(maxsize=None)
def unavailable(name: str) -> str | None:
    """``None`` when backend ``name`` can run here, else why not (computed once per process)."""
    if name == "openvino":
        return openvino.unavailable()
    if name == "tensorrt":
        return tensorrt.unavailable()
    return None  # torch and onnxruntime are core dependencies


def missing(name: str) -> MissingBackendError | None:
    """The error that explains an unusable backend (with the pip extra), or ``None``."""
    why = unavailable(name)
    if why is None:
        return None
    if name == "tensorrt":  # its fix depends on the machine (a CPU-only torch, a Jetson), not only on the extra
        return tensorrt.missing() or MissingBackendError(name, extra=EXTRAS[name], reason=why)
    return MissingBackendError(name, extra=EXTRAS.get(name), reason=why)
