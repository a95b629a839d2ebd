"""edgecnn bench: latency or throughput of the PyTorch baselines and of every artifact of an export, in one run.

Every runtime is measured in its own block (warm-up, then timed runs), one after another, on the
same input and thread count; never interleaved call by call (their worker threads spin and steal each
other's time). Speedups are ratios against PyTorch eager fp32, and against the fastest PyTorch baseline
(channels-last, ``torch.compile``), measured in that same run.

- ``mode="latency"``: one request at a time, all threads on it (batch-1 latency: cameras, laptops);
- ``mode="throughput"``: every core busy for a duration — OpenVINO's THROUGHPUT hint with its
  asynchronous queue, ONNX Runtime and torch with one single-threaded request per core in flight —
  reporting images/s and the per-request latency under that load (servers, multi-camera boxes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import hostinfo
from ..data import Preprocessing, evaluation_batch
from ..errors import ConfigError, EdgecnnError
from ..manifest import Manifest
from ..results import ArtifactResult
from ..runtimes import availability, load
from ..runtimes.torch import baseline
from ..timing import BASELINES, MODES, measure
from .common import original_model, runtimes_for

EAGER = "torch-eager"
ORIGINAL_ONNX = "original-onnx"  # an ONNX source's original, on ONNX Runtime fp32: the speedup baseline
DEFAULT_THROUGHPUT_S = 5.0


@dataclass
class BenchReport:
    model: str
    input_shape: list[int]
    threads: int | None
    warmup: int
    iterations: int | None
    duration_s: float | None
    host: dict
    versions: dict
    mode: str = "latency"
    results: list[ArtifactResult] = field(default_factory=list)  # one per artifact x runtime x batch
    skipped: list[str] = field(default_factory=list)
    label: str | None = None  # the machine's name in merged reports

    @property
    def noisy(self) -> list[str]:
        return [f"{r.artifact}@{r.runtime} b{r.batch}" for r in self.results if r.latency and r.latency.noisy
                and self.mode == "latency"]

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "results"}
        return {**d, "results": [r.to_dict() for r in self.results], "noisy": self.noisy}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "results"}
        return cls(**fields, results=[ArtifactResult.from_dict(r) for r in d["results"]])


def bench_dir(out_dir, *, runtimes: tuple[str, ...] | None = None, batches: tuple[int, ...] = (1,),
              threads: int | None = None, warmup: int = 10, iterations: int | None = 100,
              duration_s: float | None = None, mode: str = "latency", baselines: tuple[str, ...] = ("eager",),
              progress: bool = True) -> BenchReport:
    """The PyTorch ``baselines`` (eager fp32 always first) and every artifact in ``out_dir``, in one run."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown PyTorch baseline '{unknown[0]}'; baselines are: {', '.join(BASELINES)}")
    manifest = Manifest.load(out_dir)
    manifest.verify()  # time only what the manifest describes
    if manifest.dynamic_batch is None:
        batches = (manifest.input_shape[0],)
    x_all = evaluation_batch(Preprocessing.from_dict(manifest.preprocessing), max(batches))
    report = BenchReport(model=manifest.model, input_shape=manifest.input_shape, threads=threads, warmup=warmup,
                         iterations=iterations, duration_s=duration_s, host=hostinfo.host(),
                         versions=hostinfo.versions(), mode=mode)
    orig = original_model(manifest)
    if orig.runtime == "torch":  # the PyTorch baselines of the original, eager first (torch.compile is lazy)
        jobs = [(f"torch-{b}", "torch", "fp32", baseline(orig.target, b)) for b in dict.fromkeys(("eager", *baselines))]
    else:  # an ONNX original: ONNX Runtime fp32 on it is the baseline
        jobs = [(ORIGINAL_ONNX, orig.runtime, "fp32", orig.target)]
    unavailable = availability()
    for art in manifest.artifacts:
        for rt in runtimes_for(art, runtimes):
            if rt == "torch":
                continue
            if unavailable.get(rt):
                report.skipped.append(f"{art.key}@{rt}: unavailable: {unavailable[rt]}")
            else:
                jobs.append((art.key, rt, art.precision, art))
    bar = _bar(len(jobs) * len(batches), progress)
    for b in batches:
        x = x_all[:b]
        for name, rt_name, precision, target in jobs:
            row = ArtifactResult(artifact=name, precision=precision, runtime=rt_name, batch=b)
            try:
                with load(target, runtime=rt_name, threads=threads, precision=precision, mode=mode) as rt:
                    t0 = time.perf_counter()
                    rt.run(x)  # the first call: torch.compile compiles here, others load lazily
                    row.info = {"first_call_s": round(time.perf_counter() - t0, 3), "versions": rt.versions()}
                    if mode == "throughput":
                        row.throughput = rt.throughput(x, duration_s=duration_s or DEFAULT_THROUGHPUT_S)
                        row.latency = row.throughput.latency
                    else:
                        row.latency = measure(rt.run, x, warmup=warmup, iterations=iterations,
                                              duration_s=duration_s)
                    row.device = rt.device
            except EdgecnnError as e:
                row.error = str(e)
            report.results.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    _speedups(report, baseline=EAGER if orig.runtime == "torch" else ORIGINAL_ONNX)
    return report


def _speedups(report: BenchReport, *, baseline: str) -> None:
    """Against ``baseline`` (eager, or an ONNX original) and the fastest PyTorch baseline, batch by batch."""
    def rate(r: ArtifactResult) -> float:  # higher is faster: images/s, or 1 / p50
        return r.throughput.images_per_s if r.throughput is not None else 1.0 / r.latency.p50_ms

    for b in {r.batch for r in report.results}:
        rows = [r for r in report.results if r.batch == b and r.latency is not None]
        torch_rows = [r for r in rows if r.runtime == "torch"]
        eager = next((r for r in rows if r.artifact == baseline), None)
        best = max(torch_rows, key=rate, default=None)
        for r in rows:
            r.speedup = rate(r) / rate(eager) if eager is not None else None
            r.speedup_vs_best_torch = rate(r) / rate(best) if best is not None else None


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="run", leave=False)
