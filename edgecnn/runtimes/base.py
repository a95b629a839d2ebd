"""Runtime: one data contract over every backend.

A backend subclass implements ``_load``, ``_run`` and ``_close`` and declares ``name``,
``formats`` and the pip extra that provides it. The base class owns everything else: input
checks (dtype, shape, contiguity), timing, the state machine (loaded / closed) and the
description of what is running. One contract test (tests/test_runtimes_contract.py) runs
against every available backend.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import backends
from ..errors import ArtifactError, ConfigError, EdgecnnError, backend_message


def cuda_missing() -> str | None:
    """Why CUDA cannot be used here (one line), or ``None`` when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    build = " (torch here is a CPU-only build)" if torch.version.cuda is None else ""
    return f"device 'cuda' asked for, but torch sees no CUDA device on this machine{build}"


@dataclass
class RuntimeInfo:
    runtime: str
    precision: str
    device: str
    threads: int | None
    versions: dict[str, str] = field(default_factory=dict)
    provider: str | None = None  # e.g. the ONNX Runtime execution provider actually used


class Runtime(ABC):
    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None] = None  # pip extra that installs the backend
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # the first is where it runs unless asked otherwise

    def __init__(self, path: str | Path | Any, *, precision: str = "fp32", device: str | None = None,
                 threads: int | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        self.path = path
        self.precision = precision
        self.device = device or self.devices[0]
        self.threads = threads
        self.input_shape = tuple(input_shape) if input_shape else None
        self._closed = False
        self.last_latency_ms: float | None = None
        try:
            self._load()
        except EdgecnnError:
            raise
        except Exception as e:  # backends raise anything on a corrupt file
            raise ArtifactError(f"{self.name} could not load {path}: {backend_message(e)}") from None

    # --- what a backend implements -------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray: ...

    def _close(self) -> None:
        pass

    @classmethod
    def available(cls) -> str | None:
        """``None`` when the backend can run here, else the reason it cannot (decided once, in backends)."""
        return backends.unavailable(cls.name)

    def versions(self) -> dict[str, str]:
        return {}

    def provider(self) -> str | None:
        return None

    # --- the contract ---------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in, float32 (batch, classes) out."""
        if self._closed:
            raise ConfigError(f"{self.name} runtime is closed")
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ConfigError(f"input must be float32, got {x.dtype}")
        if x.ndim != 4:
            raise ConfigError(f"input must be NCHW (4-D), got shape {x.shape}")
        if self.input_shape is not None and x.shape[1:] != self.input_shape[1:]:
            raise ConfigError(f"input shape {x.shape} does not match the artifact's {self.input_shape}")
        x = np.ascontiguousarray(x)
        t0 = time.perf_counter()
        y = self._run(x)
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return np.asarray(y, dtype=np.float32)

    __call__ = run

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(self.name, self.precision, self.device, self.threads, self.versions(), self.provider())

    def close(self) -> None:
        if not self._closed:
            self._close()
            self._closed = True

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!s}, precision={self.precision}, device={self.device})"
