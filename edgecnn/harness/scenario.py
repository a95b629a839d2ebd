"""MLPerf-style latency scenarios for bench (issue 23.2): queries drawn with recorded seeds from a sample library of
real images, an accuracy pass and a TEST01-style output check, minimum duration and query count, loadgen's
early-stopping percentile estimate, Triton's stability rule over windows, and a VALID/INVALID verdict with reasons.

A run: the accuracy pass (every library sample once, untimed: the reference outputs, and the warm-up), then
measurement windows of ``min_duration / 3`` seconds and ``min_queries / 3`` queries (``--sustained``: ten windows
of a tenth each), repeated until the minimums are met and the last three windows agree (at most ten windows). The
machine's state is read before the row, after each window and after the row (:mod:`.machine`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError
from ..timing import (EARLY_STOPPING_CONFIDENCE, MAX_WINDOWS, MLPERF_MIN_DURATION_S, MLPERF_MIN_QUERIES,
                      MLPERF_SAMPLES_PER_QUERY, PERCENTILE, SCENARIOS, STABILITY_WINDOWS, Latency, early_stopping,
                      stability, summarize)
from . import machine
from .samples import SampleLibrary

# Short defaults for a laptop (MLPerf's are 600 s): said as "not MLPerf-length" in the output and the JSON.
DEFAULT_MIN_DURATION_S = {"single-stream": 2.0, "multi-stream": 2.0, "offline": 5.0}
DEFAULT_MIN_QUERIES = {"single-stream": 100, "multi-stream": 662, "offline": 1}
SAMPLE_SEED = 0  # the order in which queries draw samples (loadgen's sample_index_rng_seed)
CHECK_SEED = 2  # which timed queries keep their outputs for the output check (loadgen's accuracy_log_rng_seed)
CHECK_SHARE = 0.05  # the share of timed queries checked (and always the first of each window)
# the output check: a sampled timed output equals the accuracy pass's output of the same sample, within
OUTPUT_RTOL = 1e-3  # of the largest reference logit (the same runtime, input and batch: equal in practice)


@dataclass
class Settings:
    """What a row was measured under; ``edgecnn report`` compares only rows whose settings are equal."""

    scenario: str = "single-stream"
    min_duration_s: float = 2.0
    min_queries: int = 100
    samples_per_query: int = 1
    sample_seed: int = SAMPLE_SEED
    check_seed: int = CHECK_SEED
    sustained: bool = False
    library: dict = field(default_factory=dict)  # SampleLibrary.settings()

    @classmethod
    def default(cls, scenario: str, *, min_duration_s: float | None = None, min_queries: int | None = None,
                samples_per_query: int | None = None, sustained_min: float | None = None) -> "Settings":
        if scenario not in SCENARIOS:
            raise ConfigError(f"scenario must be one of {', '.join(SCENARIOS)}, got '{scenario}'")
        if sustained_min is not None:
            if scenario == "offline":
                raise ConfigError("--sustained runs a latency scenario (single-stream or multi-stream), not offline")
            min_duration_s = sustained_min * 60
        if min_duration_s is None:  # --iterations alone: a count, no minimum time (as before)
            min_duration_s = 0.0 if min_queries is not None else DEFAULT_MIN_DURATION_S[scenario]
        spq = samples_per_query or (MLPERF_SAMPLES_PER_QUERY if scenario == "multi-stream" else 1)
        if scenario != "multi-stream" and spq != 1:
            raise ConfigError("--samples-per-query is multi-stream's (single-stream queries hold one sample)")
        return cls(scenario, float(min_duration_s), int(min_queries or DEFAULT_MIN_QUERIES[scenario]), spq,
                   sustained=sustained_min is not None)

    @property
    def windows(self) -> int:
        """The windows that make up the minimum run (the rule needs at least three)."""
        return MAX_WINDOWS if self.sustained else STABILITY_WINDOWS

    def mlperf_length(self) -> str | None:
        """None when the minimums are MLPerf's; else what falls short of them."""
        short = []
        if self.min_duration_s < MLPERF_MIN_DURATION_S:
            short.append(f"min {self.min_duration_s:g} s < MLPerf's {MLPERF_MIN_DURATION_S:g} s")
        if self.min_queries < MLPERF_MIN_QUERIES[self.scenario]:
            short.append(f"min {self.min_queries} queries < MLPerf's {MLPERF_MIN_QUERIES[self.scenario]}")
        return "not MLPerf-length: " + ", ".join(short) if short else None

    def to_dict(self) -> dict:
        return {**asdict(self), "mlperf_length": self.mlperf_length() is None, "note": self.mlperf_length(),
                **({"percentile": PERCENTILE[self.scenario]} if self.scenario in PERCENTILE else {})}


def accuracy_pass(run, library: SampleLibrary, batch: int) -> np.ndarray:
    """Every sample once, in chunks of ``batch`` (the last wraps round to the first): the reference outputs."""
    n = len(library)
    refs: list[np.ndarray | None] = [None] * n
    for i in range(0, n, batch):
        idx = [(i + k) % n for k in range(batch)]
        y = np.asarray(run(library.x[idx]))
        for k, j in enumerate(idx):
            if refs[j] is None:
                refs[j] = y[k]
    return np.stack(refs)


def output_check(checked: list[tuple[np.ndarray, np.ndarray]], refs: np.ndarray) -> dict:
    """TEST01-style: every sampled timed output against the accuracy pass's output for the same samples."""
    bad, worst = 0, 0.0
    for idx, y in checked:
        ref = refs[idx]
        y = np.asarray(y, dtype=np.float32)
        if y.shape != ref.shape:
            bad += 1
            worst = float("inf")
            continue
        scale = float(np.max(np.abs(ref))) or 1.0
        diff = float(np.max(np.abs(y - ref))) if y.size else 0.0
        diff = diff if math.isfinite(diff) else float("inf")
        worst = max(worst, diff / scale)
        if not diff <= OUTPUT_RTOL * scale:
            bad += 1
    return {"checked": len(checked), "mismatched": bad, "worst_rel": worst if math.isfinite(worst) else None,
            "rtol": OUTPUT_RTOL, "passed": bad == 0 and len(checked) > 0}


def run_latency(run, library: SampleLibrary, settings: Settings, *, batch: int = 1, state=machine.read_state,
                clock=time.perf_counter) -> tuple[Latency, dict]:
    """Time ``run`` (float32 NCHW in, logits out) under a latency scenario: the row's Latency (per query) and its
    scenario record (settings, windows, early stopping, stability, output check, machine state, verdict)."""
    if settings.scenario not in PERCENTILE:
        raise ConfigError(f"{settings.scenario} is not a latency scenario")
    calls = max(1, math.ceil(settings.samples_per_query / batch))  # a multi-stream query: its samples, in calls
    refs = accuracy_pass(run, library, batch)
    rng, check_rng = np.random.default_rng(settings.sample_seed), np.random.default_rng(settings.check_seed)
    window_s = settings.min_duration_s / settings.windows
    window_q = math.ceil(settings.min_queries / settings.windows)
    states = [state()]
    latencies: list[float] = []
    starts: list[float] = []
    windows: list[dict] = []
    checked: list[tuple[np.ndarray, np.ndarray]] = []
    t_run = clock()
    while True:
        w0, w_lat = clock(), []
        while len(w_lat) < window_q or clock() - w0 < window_s:
            idx = rng.integers(0, len(library), size=(calls, batch))
            xs = [library.x[i] for i in idx]  # composed before the clock starts
            keep = not w_lat or check_rng.random() < CHECK_SHARE
            t0 = clock()
            ys = [run(x) for x in xs]
            w_lat.append((clock() - t0) * 1e3)
            starts.append(t0 - t_run)
            if keep:
                checked += [(i, y) for i, y in zip(idx, ys)]
        elapsed = clock() - w0
        windows.append({"queries": len(w_lat), "s": round(elapsed, 4), "qps": len(w_lat) / elapsed,
                        "mean_ms": float(np.mean(w_lat)), "p50_ms": float(np.median(w_lat))})
        latencies += w_lat
        states.append(state())
        met = clock() - t_run >= settings.min_duration_s and len(latencies) >= settings.min_queries
        if (met and len(windows) >= settings.windows and stability(windows)["stable"]) or len(windows) >= MAX_WINDOWS:
            break
    duration = clock() - t_run
    latency = summarize(latencies, batch=calls * batch)
    record = judge(settings, latencies, windows, duration, output_check(checked, refs), machine.summary(states))
    record["timeline"] = timeline(starts, latencies) if settings.sustained else None
    return latency, record


def judge(settings: Settings, latencies: list[float], windows: list[dict], duration_s: float, check: dict | None,
          state: dict | None) -> dict:
    """The row's VALID/INVALID verdict and every reason (as loadgen: min duration, min queries and early stopping;
    and here: the stability rule, the output check, a throttled clock)."""
    es = early_stopping(latencies, PERCENTILE[settings.scenario], EARLY_STOPPING_CONFIDENCE)
    stable = stability(windows)
    reasons = []
    if duration_s < settings.min_duration_s:
        reasons.append(f"ran {duration_s:.1f} s < min duration {settings.min_duration_s:g} s")
    if len(latencies) < settings.min_queries:
        reasons.append(f"{len(latencies)} queries < min {settings.min_queries}")
    if not es["met"]:
        reasons.append(f"early stopping needs {es['min_queries']} queries, ran {len(latencies)}")
    if not stable["stable"]:
        reasons.append(f"unstable: {stable['why']}")
    if check is not None and not check["passed"]:
        reasons.append("output check: " + (f"{check['mismatched']} of {check['checked']} sampled timed outputs differ "
                                           f"from the accuracy pass" if check["checked"] else "no output sampled"))
    if state is not None and state.get("throttled"):
        reasons.append(f"throttled: {state['why']}")
    return {"scenario": settings.scenario, "verdict": "INVALID" if reasons else "VALID", "reasons": reasons,
            "duration_s": round(duration_s, 3), "queries": len(latencies), "early_stopping": es,
            "stability": {**stable, "windows": windows}, "output_check": check, "machine": state}


def judge_offline(settings: Settings, *, samples: int, duration_s: float, state: dict | None) -> dict:
    """Offline (images/s with every core busy): min duration and min samples; no early stopping or windows, and no
    output check (its requests' outputs are not returned to edgecnn)."""
    reasons = []
    if duration_s < settings.min_duration_s:
        reasons.append(f"ran {duration_s:.1f} s < min duration {settings.min_duration_s:g} s")
    if samples < settings.min_queries:
        reasons.append(f"{samples} samples < min {settings.min_queries}")
    if state is not None and state.get("throttled"):
        reasons.append(f"throttled: {state['why']}")
    return {"scenario": "offline", "verdict": "INVALID" if reasons else "VALID", "reasons": reasons,
            "duration_s": round(duration_s, 3), "queries": samples, "early_stopping": None, "stability": None,
            "output_check": None, "machine": state, "timeline": None}


def timeline(starts: list[float], latencies: list[float], buckets: int = 200) -> list[list[float]]:
    """Latency over time, for --sustained's plot: [seconds since the start, median ms, queries] per time bucket."""
    if not starts:
        return []
    t, lat = np.asarray(starts), np.asarray(latencies)
    edges = np.linspace(0, t[-1] + 1e-9, min(buckets, len(t)) + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    return [[round(float(edges[b]), 3), round(float(np.median(lat[which == b])), 4), int((which == b).sum())]
            for b in np.unique(which)]
