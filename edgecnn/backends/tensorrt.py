"""TensorRT pieces its engine builder and its runtime share: availability, the logger, the GPU identity
and the build record (sidecar) written beside every engine.

``tensorrt`` is imported inside functions: this module imports (and explains what is missing) on
machines without it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, MissingBackendError

log = logging.getLogger("edgecnn.tensorrt")

SIDECAR_SUFFIX = ".json"


def unavailable() -> str | None:
    """``None`` when TensorRT can build and run here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (it needs an NVIDIA GPU; on Jetson it comes with JetPack)"
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available to torch (no NVIDIA GPU, driver, or a CPU-only torch build)"
    return None


def require() -> Any:
    """The ``tensorrt`` module, or :class:`MissingBackendError` naming the pip extra."""
    reason = unavailable()
    if reason:
        raise MissingBackendError("tensorrt", extra="tensorrt", reason=reason)
    import tensorrt as trt

    return trt


def gpu_info(device: int | None = None) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability (``sm_86``) of ``device``."""
    import tensorrt as trt
    import torch

    index = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(index)
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_properties(index).name,
            "compute_capability": f"sm_{major}{minor}"}


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to :mod:`logging` and keeps errors for our exceptions."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            sev = trt.ILogger.Severity
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == sev.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """The build record beside ``engine``; ``None`` when there is none."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"unreadable engine record {path}: {e}") from None
