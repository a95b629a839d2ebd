"""edgecnn bench: latency of the PyTorch original and of every artifact of an export, in one run.

Every runtime is measured in its own block (warm-up, then timed runs), one after another, on the
same input and thread count; speedups are ratios against PyTorch eager fp32 measured in that same run,
on the same device where PyTorch ran there too: an engine on CUDA is compared with PyTorch on CUDA
(``torch-eager-cuda``), a CPU artifact with PyTorch on the CPU (``torch-eager``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .. import hostinfo
from ..data import Preprocessing, evaluation_batch
from ..errors import EdgecnnError
from ..manifest import Manifest
from ..results import ArtifactResult
from ..runtimes import availability, check_device, load
from ..timing import measure
from .common import original_model, runs_for

EAGER = "torch-eager"


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
              duration_s: float | None = None, progress: bool = True, device: str | None = None) -> BenchReport:
    """Latency of the PyTorch original (eager fp32) and every artifact in ``out_dir``, in one run.

    Each runtime runs on ``device`` when one is given (those that cannot are skipped, with why), else
    on its default: engines on CUDA, the rest on the CPU."""
    check_device(device)
    manifest = Manifest.load(out_dir)
    manifest.verify()  # time only what the manifest describes
    if manifest.dynamic_batch is None:
        batches = (manifest.input_shape[0],)
    x_all = evaluation_batch(Preprocessing.from_dict(manifest.preprocessing), max(batches))
    unavailable = availability()
    report = BenchReport(model=manifest.model, input_shape=manifest.input_shape, threads=threads, warmup=warmup,
                         iterations=iterations, duration_s=duration_s, host=hostinfo.host(),
                         versions=hostinfo.versions())
    jobs = []
    for art in manifest.artifacts:
        runs, skipped = runs_for(art, runtimes, device, unavailable)
        report.skipped += skipped
        jobs += [(art.key, rt, art.precision, art, dev) for rt, dev in runs if rt != "torch"]
    model = original_model(manifest)
    jobs[:0] = [(eager_name(dev), "torch", "fp32", model if dev == "cpu" else copy.deepcopy(model), dev)
                for dev in eager_devices(device, {job[-1] for job in jobs})]
    bar = _bar(len(jobs) * len(batches), progress)
    for b in batches:
        x = x_all[:b]
        for name, rt_name, precision, target, dev in jobs:
            row = ArtifactResult(artifact=name, precision=precision, runtime=rt_name, batch=b, device=dev)
            try:
                with load(target, runtime=rt_name, threads=threads, precision=precision, device=dev) as rt:
                    row.latency = measure(rt.run, x, warmup=warmup, iterations=iterations, duration_s=duration_s)
                    row.device, row.info = rt.device, {"versions": rt.versions()}
            except EdgecnnError as e:
                row.error = str(e)
            report.results.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    for r in report.results:
        base = _baseline(report.results, r)
        if base is not None and r.latency:
            r.speedup = base.latency.p50_ms / r.latency.p50_ms
    return report


def eager_name(device: str) -> str:
    return EAGER if device == "cpu" else f"{EAGER}-{device}"


def eager_devices(device: str | None, used: set[str]) -> list[str]:
    """Where PyTorch eager is measured: on the CPU, and on CUDA too when an artifact runs there
    (only on CUDA when ``--device cuda`` was asked); torch runs on nothing else."""
    if device == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if "cuda" in used else ["cpu"]


def _baseline(results: list[ArtifactResult], row: ArtifactResult) -> ArtifactResult | None:
    """PyTorch eager at the same batch on the row's device, else on the CPU."""
    eager = {r.device: r for r in results if r.runtime == "torch" and r.artifact.startswith(EAGER) and r.latency
             and r.batch == row.batch}
    return eager.get(row.device) or eager.get("cpu")


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="run", leave=False)
