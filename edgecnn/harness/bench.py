"""Latency measurement: warm-up, then timed runs; percentiles, spread and throughput.

One rule makes the figures comparable: every runtime in a table is measured in the same
process, on the same input, one after another, with the same thread count, and speedups are
ratios against PyTorch eager fp32 measured in that same run.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

HIGH_CV = 0.15  # coefficient of variation above which a figure is flagged as noisy


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
    a = np.asarray(times)
    return Latency(n=len(a), batch=int(x.shape[0]), p50_ms=float(np.percentile(a, 50)),
                   p90_ms=float(np.percentile(a, 90)), p99_ms=float(np.percentile(a, 99)),
                   mean_ms=float(a.mean()), std_ms=float(a.std()))


def bench_dir(out_dir, *, runtimes: tuple[str, ...] | None = None, batches: tuple[int, ...] = (1,),
              threads: int | None = None, warmup: int = 10, iterations: int | None = 100,
              duration_s: float | None = None, progress: bool = True, log=print) -> dict:
    """Latency of the PyTorch original (eager fp32) and every artifact in ``out_dir``, in one run."""
    from .. import hostinfo
    from ..data import Preprocessing, evaluation_batch
    from ..errors import EdgecnnError
    from ..exporters.manifest import Manifest
    from ..runtimes import RUNTIMES, availability, load
    from .check import _runtimes_for, original_model

    manifest = Manifest.load(out_dir)
    manifest.verify()  # time only what the manifest describes
    fixed = manifest.dynamic_batch is None
    if fixed:
        batches = (manifest.input_shape[0],)
    prep = Preprocessing.from_dict(manifest.preprocessing)
    x_all = evaluation_batch(prep, max(batches))
    avail = availability()
    jobs = [("torch-eager", "torch", "fp32", original_model(manifest))]
    skipped = []
    for art in manifest.artifacts:
        for rt in _runtimes_for(art, runtimes, RUNTIMES):
            if rt == "torch":
                continue
            if avail.get(rt):
                skipped.append(f"{art.key}@{rt}: unavailable: {avail[rt]}")
            else:
                jobs.append((art.key, rt, art.precision, art))
    rows = []
    bar = _bar(len(jobs) * len(batches), progress)
    for b in batches:
        x = x_all[:b]
        for name, rt_name, precision, target in jobs:
            row = {"artifact": name, "runtime": rt_name, "precision": precision, "batch": b}
            try:
                with load(target, runtime=rt_name, threads=threads, precision=precision) as rt:
                    lat = measure(rt.run, x, warmup=warmup, iterations=iterations, duration_s=duration_s)
                    row.update(lat.to_dict(), device=rt.device, versions=rt.versions())
            except EdgecnnError as e:
                row["error"] = str(e)
            rows.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    for b in batches:
        base = next((r for r in rows if r["artifact"] == "torch-eager" and r["batch"] == b and "p50_ms" in r), None)
        for r in rows:
            if r["batch"] == b and base and "p50_ms" in r:
                r["speedup_vs_torch"] = base["p50_ms"] / r["p50_ms"]
    noisy = [f"{r['artifact']}@{r['runtime']} b{r['batch']}" for r in rows if r.get("noisy")]
    return {"model": manifest.model, "input_shape": manifest.input_shape, "threads": threads,
            "warmup": warmup, "iterations": iterations, "duration_s": duration_s,
            "host": hostinfo.host(), "versions": hostinfo.versions(), "results": rows, "skipped": skipped,
            "noisy": noisy}


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="run", leave=False)
