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


# ---- MLPerf-style scenarios: the statistics (edgecnn.harness.scenario runs them) ---------------------------------
# single-stream: one query of one sample at a time, the next issued when the last returns (MLPerf SingleStream);
# multi-stream: one query of N samples at a time, its latency that of all N (MLPerf MultiStream);
# offline: every core busy for a duration, images/s (MLPerf Offline; bench's former --mode throughput).
SCENARIOS = ("single-stream", "multi-stream", "offline")
SCENARIO_OF_MODE = {"latency": "single-stream", "throughput": "offline"}  # the deprecated --mode
# MLPerf Inference (mlcommons/inference loadgen/mlperf.conf, test_settings.h): the percentile each latency scenario
# reports, MultiStream's samples per query, and the minimum run of a submission (loadgen's default min_query_count
# is 100; MultiStream's 662 is the early-stopping minimum at the 99th percentile; Offline: resnet50's 24576 samples).
PERCENTILE = {"single-stream": 0.90, "multi-stream": 0.99}
MLPERF_MIN_DURATION_S = 600.0
MLPERF_MIN_QUERIES = {"single-stream": 100, "multi-stream": 662, "offline": 24576}
MLPERF_SAMPLES_PER_QUERY = 8
EARLY_STOPPING_CONFIDENCE = 0.99  # loadgen's EarlyStopping: confidence 0.99, tolerance 0
# Triton perf_analyzer's stability rule: the last 3 measurement windows agree (max / min <= 1.10) in throughput and
# in latency, at most 10 windows, else the measurement is unstable.
STABILITY_WINDOWS = 3
STABILITY_THRESHOLD = 0.10
MAX_WINDOWS = 10


def _odds(h: int, t: int, p: float) -> float:
    """The chance of at most ``t`` queries above the true ``p``-percentile among ``h + t``: the binomial CDF, as
    loadgen writes it, BetaRegularized[p, h, 1 + t] (early_stopping.cc ``odds`` with tolerance 0)."""
    from scipy.special import betainc

    return float(betainc(h, 1 + t, p))


def min_passing(t: int, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """loadgen's MinPassingQueriesFinder with tolerance 0: the least ``h`` queries at or under the estimate such
    that ``t`` above it still bound the ``p``-percentile at ``confidence`` (odds < 1 - confidence)."""
    lo, hi = 1, 2
    while _odds(hi, t, p) >= 1 - confidence:
        hi *= 2
    while lo < hi:  # the odds fall as h grows: the first h that passes
        mid = (lo + hi) // 2
        if _odds(mid, t, p) < 1 - confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo


def early_stopping(latencies_ms, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> dict:
    """MLPerf loadgen's early-stopping estimate of the ``p``-percentile (SingleStream: of the sample latencies;
    MultiStream: of the query latencies). ``t`` is the largest count with ``n >= min_passing(t) + t``: the estimate
    is the ``t``-th slowest latency, and ``t - 1`` of the slowest are discarded; it needs ``min_passing(1) + 1``
    queries (64 at p90, 662 at p99). loadgen finds ``t`` counting up from 1; ``min_passing(t) + t`` grows with
    ``t``, so a bisection finds the same ``t``."""
    a = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    n = len(a)
    need = min_passing(1, p, confidence) + 1
    out = {"percentile": p, "confidence": confidence, "queries": n, "min_queries": need, "estimate_ms": None,
           "discarded": None, "met": n >= need}
    if n < need:
        return out
    lo, hi = 1, n  # min_passing(lo) + lo <= n holds; find the last t for which it does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if min_passing(mid, p, confidence) + mid <= n:
            lo = mid
        else:
            hi = mid - 1
    return {**out, "estimate_ms": float(a[n - lo]), "discarded": lo - 1}


def stability(windows: list[dict], *, last: int = STABILITY_WINDOWS, threshold: float = STABILITY_THRESHOLD) -> dict:
    """Whether the last ``last`` windows agree (Triton perf_analyzer): max / min <= 1 + ``threshold`` for their
    queries per second and for their mean latency. ``windows``: dicts with ``qps`` and ``mean_ms``."""
    tail = windows[-last:]
    if len(tail) < last:
        return {"stable": False, "why": f"{len(windows)} of {last} windows"}
    ratios = {}
    for key in ("qps", "mean_ms"):
        vals = [w[key] for w in tail]
        ratios[key] = max(vals) / min(vals) if min(vals) > 0 else float("inf")
    spreads = {k: r - 1 for k, r in ratios.items()}
    worst = max(spreads, key=spreads.get)
    ok = all(r <= 1 + threshold for r in ratios.values())  # as perf_analyzer writes it
    what = "queries/s" if worst == "qps" else "mean latency"
    return {"stable": ok, "spread": {k: round(v, 4) for k, v in spreads.items()},
            "why": None if ok else f"last {last} windows' {what} {spreads[worst]:.0%} apart (> {threshold:.0%})"}
