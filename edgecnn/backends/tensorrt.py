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

from ..errors import ArtifactError, MissingBackendError, first_line
from ..guard import clip, read_nofollow

log = logging.getLogger("edgecnn.tensorrt")

SIDECAR_SUFFIX = ".json"
MIN_VERSION = 10  # strongly typed networks, named I/O tensors, execute_async_v3: all TensorRT 10 API
JETSON_RELEASE = Path("/etc/nv_tegra_release")  # written by every L4T / JetPack install
CUDA_TORCH = "install the torch build for your CUDA first (https://pytorch.org/get-started/locally/)"
JETSON = ("TensorRT and CUDA come with JetPack 6.1 or later (TensorRT 10.3; JetPack 6.0 ships TensorRT 8.6, too old) "
          "on Jetson: use a venv made with "
          "`python3 -m venv --system-site-packages` and NVIDIA's torch wheel for your JetPack; "
          "do not pip-install tensorrt")


def on_jetson() -> bool:
    return JETSON_RELEASE.is_file()


def major_version(version: str) -> int | None:
    """``10`` for ``"10.3.0.30"``; ``None`` when it cannot be read."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def pip_extra(torch_cuda: str | None) -> str:
    """The extra whose TensorRT wheels match torch's CUDA: ``tensorrt`` alone now resolves to the CUDA 13 build."""
    major = major_version(torch_cuda) if torch_cuda else None
    return f"tensorrt-cu{major}" if major in (12, 13) else "tensorrt"


def diagnose() -> tuple[str, str] | None:
    """``None`` when TensorRT can build and run here, else (why not, what fixes it on this machine)."""
    import torch

    cuda, jetson = torch.version.cuda, on_jetson()  # cuda is None in a CPU-only torch build
    extra = pip_extra(cuda)
    pip = f"pip install 'edgecnn[{extra}]'"
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: its CUDA libraries do not load
        absent = isinstance(e, ModuleNotFoundError) and e.name == "tensorrt"
        reason = ("the tensorrt package is not installed (it needs an NVIDIA GPU; on Jetson it comes with JetPack)"
                  if absent else f"the tensorrt package does not import ({first_line(e)})")
        if jetson:
            return reason, JETSON
        return reason, (f"install it with: {pip}" if cuda else
                        f"{CUDA_TORCH}, then: {pip} ('edgecnn[tensorrt-cu12]' for a CUDA 12 torch)")
    version = getattr(trt, "__version__", "?")
    major = major_version(version)
    if major is not None and major < MIN_VERSION:  # JetPack 5 ships 8.5, JetPack 6.0 8.6: no strong typing
        reason = f"TensorRT {version} is too old: edgecnn needs TensorRT >= {MIN_VERSION}"
        upgrade = pip.replace("install", "install --upgrade", 1)
        return reason, f"upgrade to JetPack 6.1 or later: {JETSON}" if jetson else f"upgrade it with: {upgrade}"
    if cuda is None:
        return ("torch here is a CPU-only build, so CUDA is not available to it",
                "install NVIDIA's torch wheel for your JetPack" if jetson else CUDA_TORCH)
    if not torch.cuda.is_available():
        return "CUDA is not available to torch (no NVIDIA GPU or driver)", "run on a machine with an NVIDIA GPU"
    return None


def unavailable() -> str | None:
    """``None`` when TensorRT can build and run here, else the reason it cannot."""
    found = diagnose()
    return None if found is None else found[0]


def missing() -> MissingBackendError | None:
    """The error that explains why TensorRT cannot run here, with the fix for this machine; ``None`` if it can."""
    found = diagnose()
    if found is None:
        return None
    import torch

    return MissingBackendError("tensorrt", extra=pip_extra(torch.version.cuda), reason=found[0], hint=found[1])


def require() -> Any:
    """The ``tensorrt`` module, or :class:`MissingBackendError` saying what to install."""
    error = missing()
    if error is not None:
        raise error
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
    """A TensorRT logger that keeps errors for our exceptions and forwards warnings to :mod:`logging`.

    TensorRT calls a Python logger for every message, thousands of VERBOSE ones per build: the
    minimum severity (WARNING, or everything when ``edgecnn.tensorrt`` logs at DEBUG) is decided
    once, here, and a message below it returns at once, before any :mod:`logging` call.
    """
    sev = trt.ILogger.Severity
    errors = (int(sev.INTERNAL_ERROR), int(sev.ERROR))
    warning = int(sev.WARNING)
    min_severity = int(sev.VERBOSE) if log.isEnabledFor(logging.DEBUG) else warning

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.min_severity = min_severity  # INTERNAL_ERROR 0 ... VERBOSE 4: larger is quieter

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level > self.min_severity:
                return
            if level in errors:
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif level == warning:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """The build record beside ``engine`` (read without following a symlink, within the ``file_bytes``
    limit); ``None`` when there is none."""
    path = sidecar_path(engine)
    blob = read_nofollow(path, "engine record")
    if blob is None:
        return None
    try:
        record = json.loads(blob.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ArtifactError(f"unreadable engine record {clip(path)}: {clip(first_line(e), 120)}") from None
    if not isinstance(record, dict):
        raise ArtifactError(f"unreadable engine record {clip(path)}: not a JSON object")
    return record
