"""Runtime: one data contract over every backend.

A backend subclass implements ``_load``, ``_run`` and ``_close`` and declares ``name``,
``formats`` and ``devices`` (its availability and pip extra live in :mod:`edgecnn.backends`). The
base class owns everything else: input checks (dtype, shape, contiguity), timing, the state machine
(loaded / closed) and the description of what is running. One contract test (tests/test_runtimes_contract.py) runs
against every available backend.
"""
from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import backends, hostinfo
from ..artifact import LABELS_KEY, PREPROCESSING_KEY
from ..errors import ArtifactError, ConfigError, EdgecnnError, backend_message
from ..timing import MODES, Throughput, summarize


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
    # the precision the backend ran the model in, read back from it (OpenVINO: inference precision and the
    # compute layers by kernel precision, edgecnn.backends.openvino.plugin_precision); None where not reported
    executed_precision: dict | None = None


class Runtime(ABC):
    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # the first is where it runs unless asked otherwise

    def __init__(self, path: str | Path | Any, *, precision: str = "fp32", device: str | None = None,
                 threads: int | None = None, input_shape: tuple[int, ...] | None = None, mode: str = "latency",
                 data: list[bytes] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
        self.path = path
        # The file(s) already read and verified (artifact.verified_bytes): loaded from memory, never from
        # ``path`` again (an IR: the .xml's and the .bin's bytes). None: a path the user gave, read here.
        self.data = data
        self.precision = precision
        self.device = device or self.devices[0]
        self.threads = threads
        self.mode = mode  # latency: one request at a time, all threads on it; throughput: several in flight
        self.input_shape = tuple(input_shape) if input_shape else None
        self._closed = False
        self.last_latency_ms: float | None = None
        try:
            self._load()
        except EdgecnnError:
            raise
        except Exception as e:  # backends raise anything on a corrupt file
            raise ArtifactError(f"{self.name} could not load {path}: {backend_message(e)}") from None
        finally:
            self.data = None  # the backend holds its own copy now

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

    def metadata(self) -> dict[str, str]:
        """The artifact's own metadata (ONNX metadata_props, IR rt_info); empty where it carries none."""
        return {}

    # --- what the artifact says about itself (edgecnn.exporters.metadata) -------------------
    @property
    def labels(self) -> list[str] | None:
        """The class names of the outputs, in order, where the artifact carries them."""
        return _json(self.metadata().get(LABELS_KEY), list)

    @property
    def preprocessing(self) -> dict | None:
        """How to feed it (mean, std, resize, crop, channel order, layout...), where the artifact says."""
        return _json(self.metadata().get(PREPROCESSING_KEY), dict)

    def provider(self) -> str | None:
        return None

    def executed(self) -> dict | None:
        """The execution record (:mod:`edgecnn.runtimes.executed`): the share of the model's MACs that ran in
        int8 / fp16 / bf16 / fp32 and the layers that did not run in the artifact's precision, read back from
        what this runtime compiled; ``None`` where a runtime cannot say (torch runs what it is given)."""
        return None

    def executed_precision(self) -> dict | None:
        """The precision the backend reports it ran the model in (None: it reports none)."""
        return None

    def streams(self) -> int:
        """Requests in flight in throughput mode: one per thread (each request runs single-threaded)."""
        return self.threads or hostinfo.cpu_info()["affinity"] or 1

    # --- the contract ---------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in, float32 (batch, classes) out."""
        x = self._checked(x)
        t0 = time.perf_counter()
        try:
            y = self._run(x)
        except EdgecnnError:
            raise
        except Exception as e:  # noqa: BLE001 - a received graph can fail any way its kernels can
            raise run_failure(self.name, self.path, e) from None
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return np.asarray(y, dtype=np.float32)

    __call__ = run

    def throughput(self, x: np.ndarray, *, duration_s: float, warmup: int = 2) -> Throughput:
        """Images per second with :meth:`streams` requests in flight for ``duration_s`` seconds.

        Here: one thread per stream calling the backend back to back (ONNX Runtime's and torch's run are
        thread-safe, and in throughput mode each request gets one intra-op thread); a backend with its own
        asynchronous queue (OpenVINO) overrides this."""
        x = self._checked(x)
        streams = self.streams()
        for _ in range(warmup):
            self._run(x)
        deadline = time.perf_counter() + duration_s

        def worker() -> list[float]:
            times = []
            while time.perf_counter() < deadline or not times:
                t0 = time.perf_counter()
                self._run(x)
                times.append((time.perf_counter() - t0) * 1e3)
            return times

        t0 = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            times = [t for f in [pool.submit(worker) for _ in range(streams)] for t in f.result()]
        elapsed = time.perf_counter() - t0
        return Throughput(len(times) * x.shape[0] / elapsed, len(times), streams, elapsed,
                          summarize(times, batch=x.shape[0]))

    def _checked(self, x: np.ndarray) -> np.ndarray:
        if self._closed:
            raise ConfigError(f"{self.name} runtime is closed")
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ConfigError(f"input must be float32, got {x.dtype}")
        if x.ndim != 4:
            raise ConfigError(f"input must be NCHW (4-D), got shape {x.shape}")
        if self.input_shape is not None and x.shape[1:] != self.input_shape[1:]:
            raise ConfigError(f"input shape {x.shape} does not match the artifact's {self.input_shape}")
        return np.ascontiguousarray(x)

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(self.name, self.precision, self.device, self.threads, self.versions(), self.provider(),
                           self.executed_precision())

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


def run_failure(runtime: str, path: object, e: BaseException) -> ArtifactError:
    """The one line for a graph that loaded but failed to run: an index out of range, an integer division
    by zero, a tensor too large to allocate (``MemoryError``, torch's "can't allocate")."""
    what = "out of memory: " if isinstance(e, MemoryError) or "can't allocate" in str(e) else ""
    name = Path(str(path)).name if isinstance(path, (str, Path)) else type(path).__name__
    return ArtifactError(f"{runtime} failed to run {name}: {what}{backend_message(e) if str(e) else type(e).__name__}")


def _json(text: str | None, kind: type):
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, kind) else None
