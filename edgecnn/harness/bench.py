"""edgecnn bench: latency or throughput of the PyTorch baselines and of every artifact of an export, in one run.

Every runtime is measured in its own block (warm-up, then timed runs), one after another, on the
same input and thread count; never interleaved call by call (their worker threads spin and steal each
other's time). Speedups are ratios against PyTorch eager fp32, and against the fastest PyTorch baseline
(channels-last, ``torch.compile``), measured in that same run.

- ``scenario="single-stream"`` (the default): one query of one sample at a time, all threads on it (batch-1
  latency: cameras, laptops), MLPerf-style (:mod:`.scenario`): samples of real images drawn with recorded seeds,
  an accuracy pass and an output check, minimum duration and queries, the early-stopping p90 estimate, windows
  that must agree, a VALID/INVALID verdict per row, the machine's clocks before and after (:mod:`.machine`);
- ``scenario="multi-stream"``: one query of N samples (default 8, MLPerf's) at a time, its latency that of all N,
  the early-stopping p99 estimate;
- ``scenario="offline"``: every core busy for a duration — OpenVINO's THROUGHPUT hint with its
  asynchronous queue, ONNX Runtime and torch with one single-threaded request per core in flight —
  reporting images/s and the per-request latency under that load (servers, multi-camera boxes).
  ``mode="latency"|"throughput"`` (deprecated) means single-stream | offline.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .. import hostinfo
from ..artifact import Artifact
from ..data import Preprocessing
from ..errors import ConfigError, EdgecnnError
from ..fileio import locked
from ..guard import check_limit, finite
from ..manifest import Manifest
from ..results import ArtifactResult
from ..runtimes import availability, check_device, load
from ..runtimes.executed import record
from ..runtimes.torch import baseline
from ..timing import BASELINES, MODES, SCENARIO_OF_MODE, SCENARIOS
from . import machine
from .common import admit_engine, check_batch, nothing_checked, original_model, runs_for
from .samples import DEFAULT_SIZE, sample_library
from .scenario import Settings, judge_offline, run_latency
from .worker import probe

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
    defaults: list[str] = field(default_factory=list)  # the manifest's defaults of several routes (marked *)
    scenario: str | None = None  # single-stream | multi-stream | offline (None: a result from before scenarios)
    settings: dict | None = None  # scenario.Settings.to_dict(): what `report` compares like with like
    machine_note: str | None = None  # said once: no machine state readable here

    @property
    def noisy(self) -> list[str]:
        return [f"{r.artifact}@{r.runtime} b{r.batch}" for r in self.results if r.latency and r.latency.noisy
                and self.mode == "latency" and r.scenario is None]

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "results"}
        results = [{**r.to_dict(), **({"why": why} if (why := self.speedup_why(r)) else {})} for r in self.results]
        return {**d, "results": results, "noisy": self.noisy}

    def speedup_why(self, r: ArtifactResult) -> str | None:
        """Why a measured row has no speedup figure (None where it has both, or did not run: its error says why)."""
        if r.latency is None or (r.speedup is not None and r.speedup_vs_best_torch is not None):
            return None
        if any(q.artifact == ORIGINAL_ONNX for q in self.results):
            return "no PyTorch baseline for an ONNX source"
        return f"no PyTorch baseline ran at batch {r.batch}"

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "results"}
        return cls(**fields, results=[ArtifactResult.from_dict(r) for r in d["results"]])


def bench_dir(out_dir, *, runtimes: tuple[str, ...] | None = None, batches: tuple[int, ...] | None = None,
              threads: int | None = None, warmup: int = 10, iterations: int | None = 100,
              duration_s: float | None = None, mode: str | None = None, baselines: tuple[str, ...] = ("eager",),
              device: str | None = None, progress: bool = True, trust_source: bool = False,
              wait: bool = True, scenario: str | None = None, images=None, samples_per_query: int | None = None,
              sustained_min: float | None = None, machine_root: str = "/") -> BenchReport:
    """The PyTorch ``baselines`` of the original (eager fp32 always first; for an ONNX original, ONNX Runtime
    fp32 on it) and every artifact in ``out_dir``, in one run.

    Each runtime runs on ``device`` when one is given (those that cannot are skipped, with why), else on
    its default: engines on CUDA, the rest on the CPU. PyTorch runs on every device an artifact uses, so
    an engine on CUDA is compared with PyTorch on CUDA (``torch-eager-cuda``).
    ``batches``: the batch sizes to run (default: the export's batch, else 1); a fixed-batch export runs only
    at its own batch: the others are listed in ``skipped`` with why, and none that can run is an error.
    ``scenario`` (default single-stream; ``mode`` latency|throughput is its deprecated alias): in a latency scenario
    ``iterations`` and ``duration_s`` are the minimum query count and duration (:class:`.scenario.Settings`), in
    offline the duration of the run; ``images``: a folder for the sample library (default: the bundled photos)."""
    if mode is not None and mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if scenario is not None and mode is not None and SCENARIO_OF_MODE[mode] != scenario:
        raise ConfigError(f"--mode {mode} is --scenario {SCENARIO_OF_MODE[mode]}; give one of them")
    scenario = scenario or SCENARIO_OF_MODE[mode or "latency"]
    if scenario not in SCENARIOS:
        raise ConfigError(f"scenario must be one of {', '.join(SCENARIOS)}, got '{scenario}'")
    if sustained_min is not None:
        finite(sustained_min, "--sustained (minutes)", 0.01, 600)
    settings = Settings.default(scenario, min_duration_s=duration_s, min_queries=iterations,
                                samples_per_query=samples_per_query, sustained_min=sustained_min)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown PyTorch baseline '{unknown[0]}'; baselines are: {', '.join(BASELINES)}")
    check_device(device)
    for b in batches or ():
        check_limit("batch", b, "--batch")
    if duration_s is not None:
        finite(duration_s, "--duration", 0.001, 3600)
    with locked(Path(out_dir), shared=True, wait=wait):
        return _bench(out_dir, runtimes=runtimes, batches=batches, threads=threads, warmup=warmup,
                      iterations=iterations, duration_s=duration_s, baselines=baselines, device=device,
                      progress=progress, trust_source=trust_source, settings=settings, images=images,
                      machine_root=machine_root)


def _bench(out_dir, *, runtimes, batches, threads, warmup, iterations, duration_s, baselines, device,
           progress, trust_source, settings: Settings, images, machine_root) -> BenchReport:
    manifest = Manifest.load(out_dir)
    manifest.verify()  # time only what the manifest describes
    batches, not_run = honoured_batches(manifest, batches)
    prep = Preprocessing.from_dict(manifest.preprocessing)
    library = sample_library(prep, n=max(DEFAULT_SIZE, max(batches)), folder=images)
    settings.library = library.settings()
    offline = settings.scenario == "offline"
    mode = "throughput" if offline else "latency"
    readable = machine.read_state(machine_root) is not None
    note = None if readable else machine.NOTHING_READABLE  # nothing to read: said once, and not read again
    state = partial(machine.read_state, machine_root) if readable else _nothing
    report = BenchReport(model=manifest.model, input_shape=manifest.input_shape, threads=threads, warmup=warmup,
                         iterations=iterations, duration_s=duration_s, host=hostinfo.host(),
                         versions=hostinfo.versions(), mode=mode, defaults=sorted(manifest.defaults()),
                         skipped=not_run, scenario=settings.scenario, settings=settings.to_dict(), machine_note=note)
    unavailable = availability()
    jobs = []  # (name, runtime, precision, what to load, device)
    for art in manifest.artifacts:
        runs, skipped = runs_for(art, runtimes, device, unavailable)
        if runs:  # before any work: an engine is native code
            admit_engine(manifest, art, trust_source=trust_source)
        report.skipped += skipped
        jobs += [(art.key, rt, art.precision, art, dev) for rt, dev in runs if rt != "torch"]
    if not jobs and not (runtimes and "torch" in runtimes):  # `--runtimes torch`: the PyTorch baselines alone
        nothing_checked(manifest, runtimes, report.skipped)
    orig = original_model(manifest, trust_source=trust_source)
    if orig.runtime == "torch":  # the PyTorch baselines, eager first, on every device used (torch.compile is lazy)
        jobs[:0] = [(torch_name(b, dev), "torch", "fp32", baseline(orig.target if dev == "cpu" else
                                                                     copy.deepcopy(orig.target), b), dev)
                    for dev in torch_devices(device, {job[-1] for job in jobs})
                    for b in dict.fromkeys(("eager", *baselines))]
    else:  # an ONNX original: ONNX Runtime fp32 on it is the baseline
        jobs.insert(0, (ORIGINAL_ONNX, orig.runtime, "fp32", orig.target, "cpu"))
    bar = _bar(len(jobs) * len(batches), progress)
    for b in batches:
        x = library.x[:b]
        for name, rt_name, precision, target, dev in jobs:
            row = ArtifactResult(artifact=name, precision=precision, runtime=rt_name, batch=b, device=dev)
            try:
                if isinstance(target, Artifact):  # a received graph: proved to finish on x, within limits, first
                    row.peak_rss_mib = probe(target, x, runtime=rt_name, device=dev, threads=threads)
                with load(target, runtime=rt_name, threads=threads, precision=precision, device=dev, mode=mode) as rt:
                    if rt_name != "torch":  # an artifact's fixed batch must be the one benched
                        check_batch(rt, b)
                    t0 = time.perf_counter()
                    rt.run(x)  # the first call: torch.compile compiles here, others load lazily
                    row.info = {"first_call_s": round(time.perf_counter() - t0, 3), "versions": rt.versions()}
                    for _ in range(warmup):
                        rt.run(x)
                    if offline:
                        before = state()
                        row.throughput = rt.throughput(x, duration_s=settings.min_duration_s or DEFAULT_THROUGHPUT_S)
                        row.latency = row.throughput.latency
                        row.scenario = judge_offline(settings, samples=row.throughput.requests * b,
                                                     duration_s=row.throughput.duration_s,
                                                     state=machine.summary([before, state()]))
                    else:
                        row.latency, row.scenario = run_latency(rt.run, library, settings, batch=b, state=state)
                    row.device = rt.device
                    row.executed = record(rt)  # after the timing: what ran, read back (an extra ORT session)
            except EdgecnnError as e:
                row.error = str(e)
            report.results.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    _speedups(report)
    return report


def _nothing() -> None:
    """The machine's state where none is readable."""
    return None


def honoured_batches(manifest: Manifest, asked: tuple[int, ...] | None) -> tuple[tuple[int, ...], list[str]]:
    """The batch sizes that can run on this export (all of them where its batch is dynamic, else its own) and a
    line saying which cannot and why; none that can is a :class:`ConfigError`."""
    fixed = manifest.input_shape[0] if manifest.dynamic_batch is None else None
    if not asked:
        return (fixed or 1,), []
    asked = tuple(dict.fromkeys(asked))
    if fixed is None or set(asked) == {fixed}:
        return asked, []
    cannot = ", ".join(str(b) for b in asked if b != fixed)
    why = (f"the export's batch is fixed at {fixed} (export with --dynamic-batch to bench other batch sizes)")
    if fixed not in asked:
        raise ConfigError(f"--batch {','.join(map(str, asked))}: cannot run: {why}")
    return (fixed,), [f"--batch {cannot}: {why}"]


def torch_name(baseline_name: str, device: str) -> str:
    name = f"torch-{baseline_name}"
    return name if device == "cpu" else f"{name}-{device}"


def torch_devices(device: str | None, used: set[str]) -> list[str]:
    """Where PyTorch is measured: on the CPU, and on CUDA too when an artifact runs there (only on CUDA
    when ``--device cuda`` was asked); torch runs on nothing else."""
    if device == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if "cuda" in used else ["cpu"]


def _speedups(report: BenchReport) -> None:
    """Against eager (or an ONNX original) and against the fastest PyTorch baseline, at the same batch and on
    the row's device where PyTorch ran there, else on the CPU."""
    def rate(r: ArtifactResult) -> float:  # higher is faster: images/s, or 1 / p50
        return r.throughput.images_per_s if r.throughput is not None else 1.0 / r.latency.p50_ms

    measured = [r for r in report.results if r.latency is not None]
    for r in measured:
        same = [q for q in measured if q.batch == r.batch]
        here = [q for q in same if q.runtime == "torch" and q.device == r.device] or \
            [q for q in same if q.runtime == "torch" and q.device == "cpu"]
        eager = next((q for q in here if q.artifact.startswith(EAGER)), None) or \
            next((q for q in same if q.artifact == ORIGINAL_ONNX), None)
        best = max(here, key=rate, default=None)
        r.speedup = rate(r) / rate(eager) if eager is not None else None
        r.speedup_vs_best_torch = rate(r) / rate(best) if best is not None else None


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="run", leave=False)
