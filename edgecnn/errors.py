"""Typed errors. The CLI prints ``str(error)`` as one line and exits non-zero.

Every error a user can cause by what they typed or what they pointed us at derives from
:class:`EdgecnnError`; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import re


class EdgecnnError(Exception):
    """Base class for errors a user can act on."""

    exit_code = 2


class UnknownNameError(EdgecnnError, LookupError):
    """A name that is not in a registry (model, exporter, runtime)."""


class UnknownModelError(UnknownNameError):
    pass


class ConfigError(EdgecnnError, ValueError):
    """An option value that cannot work (resolution, num_classes, batch, opset...)."""


class WeightsError(EdgecnnError):
    """A checkpoint that is missing, unreadable, unsafe or for another architecture."""


class DownloadError(WeightsError):
    """A download that failed, timed out or did not match its hash."""


class MissingBackendError(EdgecnnError, ImportError):
    """An optional backend (openvino, tensorrt, CUDA...) that is not installed."""

    def __init__(self, backend: str, extra: str | None = None, reason: str | None = None, hint: str | None = None):
        self.backend = backend
        self.extra = extra
        # ``hint``: what fixes it on this machine, where the pip extra alone would not (a CPU-only torch, a Jetson)
        hint = f"; {hint}" if hint else f"; install it with: pip install 'edgecnn[{extra}]'" if extra else ""
        why = f" ({reason})" if reason else ""
        super().__init__(f"{backend} is not available{why}{hint}")


class CalibrationDataError(EdgecnnError):
    """Calibration / evaluation images that are missing, empty or unreadable."""


class ExportError(EdgecnnError):
    """A conversion step that failed."""


class BusyError(EdgecnnError):
    """An export folder another export is writing, when the caller asked not to wait (``--no-wait``)."""


class ArtifactError(EdgecnnError):
    """An artifact (ONNX, IR, engine, manifest) that is missing, truncated or corrupt."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (libraries raise multi-page C++ messages)."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


# OpenVINO prefixes its messages with the C++ call chain ("Exception from src/...", "Check '...' failed at ...").
_TRACE_LINE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def backend_message(e: BaseException) -> str:
    """:func:`first_line` of a backend's own words, without the C++ call chain before them."""
    said = [line.strip() for line in str(e).splitlines() if line.strip() and not _TRACE_LINE.match(line.strip())]
    return first_line(RuntimeError(" ".join(said))) if said else first_line(e)
