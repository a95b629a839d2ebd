"""Latency measurement: warm-up, then timed runs; percentiles, spread and throughput.

One rule makes the figures comparable: every runtime in a table is measured in the same
process, on the same input, one after another (never interleaved call by call), with the same
thread count, and speedups are ratios against PyTorch eager fp32 measured in that same run.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

HIGH_CV = 0.15  # coefficient of variation above which a figure is flagged as noisy
# latency: one request at a time, all threads on it; throughput: every core busy, several requests in flight
MODES = ("latency", "throughput")
# What a user who stays in PyTorch would try (edgecnn.runtimes.torch.baseline builds each): benchmarks
# compare the deployed artifacts with PyTorch's best of these, not only with eager mode.
BASELINES = ("eager", "channels-last", "compile")


@dataclass
class Latency:
    n: int
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms else float("nan")

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms else float("nan")

    @property
    def noisy(self) -> bool:
        return self.cv > HIGH_CV

    def to_dict(self) -> dict:
        return {**asdict(self), "cv": self.cv, "throughput_ips": self.throughput, "noisy": self.noisy}

    @classmethod
    def from_dict(cls, d: dict) -> "Latency":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def measure(run, x: np.ndarray, *, warmup: int = 5, iterations: int | None = 50, duration_s: float | None = None,
            progress=None) -> Latency:
    """Time ``run(x)``; stop after ``iterations`` runs or ``duration_s`` seconds (whichever is given)."""
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    deadline = time.perf_counter() + duration_s if duration_s else None
    limit = iterations if iterations else None
    while (limit is None or len(times) < limit) and (deadline is None or time.perf_counter() < deadline or not times):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
        if progress is not None:
            progress()
        if limit is None and deadline is None:
            break
    return summarize(times, batch=int(x.shape[0]))


def summarize(times_ms: list[float], *, batch: int) -> Latency:
    """Percentiles, mean and spread of per-call times (ms)."""
    a = np.asarray(times_ms, dtype=np.float64)
    return Latency(n=len(a), batch=batch, p50_ms=float(np.percentile(a, 50)), p90_ms=float(np.percentile(a, 90)),
                   p99_ms=float(np.percentile(a, 99)), mean_ms=float(a.mean()), std_ms=float(a.std()))


@dataclass
class Throughput:
    """Images per second with every core busy: ``streams`` requests in flight for ``duration_s``."""

    images_per_s: float
    requests: int
    streams: int
    duration_s: float
    latency: Latency  # per request, while the others ran

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "latency"}, "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Throughput":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k != "latency"},
                   latency=Latency.from_dict(d["latency"]))
