"""edgecnn bench: latency of the PyTorch original and of every artifact of an export, in one run.

Every runtime is measured in its own block (warm-up, then timed runs), one after another, on the
same input and thread count; speedups are ratios against PyTorch eager fp32 measured in that same run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import hostinfo
from ..data import Preprocessing, evaluation_batch
from ..errors import EdgecnnError
from ..manifest import Manifest
from ..results import ArtifactResult
from ..runtimes import availability, load
from ..timing import measure
from .common import original_model, runtimes_for

EAGER = "torch-eager"
ORIGINAL_ONNX = "original-onnx"  # an ONNX source's original, on ONNX Runtime fp32: the speedup baseline


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
    results: list[ArtifactResult] = field(default_factory=list)  # one per artifact x runtime x batch
    skipped: list[str] = field(default_factory=list)
    label: str | None = None  # the machine's name in merged reports

    @property
    def noisy(self) -> list[str]:
        return [f"{r.artifact}@{r.runtime} b{r.batch}" for r in self.results if r.latency and r.latency.noisy]

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "results"}
        return {**d, "results": [r.to_dict() for r in self.results], "noisy": self.noisy}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "results"}
        return cls(**fields, results=[ArtifactResult.from_dict(r) for r in d["results"]])


def bench_dir(out_dir, *, runtimes: tuple[str, ...] | None = None, batches: tuple[int, ...] = (1,),
              threads: int | None = None, warmup: int = 10, iterations: int | None = 100,
              duration_s: float | None = None, progress: bool = True) -> BenchReport:
    """Latency of the PyTorch original (eager fp32) and every artifact in ``out_dir``, in one run."""
    manifest = Manifest.load(out_dir)
    manifest.verify()  # time only what the manifest describes
    if manifest.dynamic_batch is None:
        batches = (manifest.input_shape[0],)
    x_all = evaluation_batch(Preprocessing.from_dict(manifest.preprocessing), max(batches))
    unavailable = availability()
    orig = original_model(manifest)
    baseline = EAGER if orig.runtime == "torch" else ORIGINAL_ONNX
    jobs = [(baseline, orig.runtime, "fp32", orig.target)]
    report = BenchReport(model=manifest.model, input_shape=manifest.input_shape, threads=threads, warmup=warmup,
                         iterations=iterations, duration_s=duration_s, host=hostinfo.host(),
                         versions=hostinfo.versions())
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
                with load(target, runtime=rt_name, threads=threads, precision=precision) as rt:
                    row.latency = measure(rt.run, x, warmup=warmup, iterations=iterations, duration_s=duration_s)
                    row.device, row.info = rt.device, {"versions": rt.versions()}
            except EdgecnnError as e:
                row.error = str(e)
            report.results.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    for b in batches:
        base = next((r for r in report.results if r.artifact == baseline and r.latency and r.batch == b), None)
        for r in report.results:
            if base and r.latency and r.batch == b:
                r.speedup = base.latency.p50_ms / r.latency.p50_ms
    return report


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="run", leave=False)
