"""edgecnn check: every artifact of an export against the PyTorch original, on real images."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..data import Preprocessing, evaluation_batch, imagefolder_classes, labelled_batch, match_classes
from ..errors import ConfigError, EdgecnnError
from ..exporters.int8_range import describe_minus128, scan_minus128
from ..fileio import locked
from ..guard import check_limit, safe_text
from ..manifest import Manifest
from ..parity import Tolerance, accuracy, compare
from ..results import ArtifactResult, all_pass
from ..runtimes import availability, check_device, device_for, load
from ..runtimes.executed import record
from ..timing import measure
from . import emulate as emulation
from . import evalset
from .common import (RANDOM_INT8_ADVISORY, admit_engine, deployed_artifact,  # noqa: F401
                     not_judged_reason, nothing_checked, original_model, random_weights, run_batched, runs_for)
from .layers import localise
from .worker import ISOLATED, run_artifact

@dataclass
class EvalImages:
    """The held-out images results are measured on; an ImageFolder also gives each image's class."""

    x: np.ndarray
    description: str
    folder_classes: list[str] | None = None  # ImageFolder: its class sub-folders, sorted
    folder_targets: np.ndarray | None = None  # ImageFolder: each image's index in folder_classes

    def targets(self, labels: list[str] | None, n_outputs: int, *, hint: str = "give the labels") -> np.ndarray | None:
        """Each image's true class as an index into the model's outputs (None without class folders);
        ``hint``: what the user can do when the folders do not say (check has no --labels: the export's)."""
        if self.folder_classes is None:
            return None
        if labels is None:  # no other labels: the folders, in sorted order, are the outputs' classes
            if len(self.folder_classes) != n_outputs:
                raise ConfigError(f"{self.description} has {len(self.folder_classes)} class folders but the "
                                  f"model has {n_outputs} outputs; {hint} to say which output is which")
            labels = self.folder_classes
        return np.asarray(match_classes(self.folder_classes, labels, where=self.description))[self.folder_targets]


def eval_images(prep: Preprocessing, n: int, folder: str | Path | None = None) -> EvalImages:
    """An ImageFolder: every image once, centre-cropped, with its class. Otherwise ``n`` held-out inputs
    (:func:`edgecnn.data.evaluation_batch`)."""
    if folder is not None and imagefolder_classes(folder) is not None:
        x, y, classes, _ = labelled_batch(prep, folder)
        return EvalImages(x, str(folder), classes, y)
    return EvalImages(evaluation_batch(prep, n, folder=folder), str(folder) if folder else "bundled held-out photos")


def accuracy_against(logits: np.ndarray, targets: np.ndarray, baseline: dict | None = None) -> dict:
    """Top-1/top-5 accuracy against true labels, and the change from ``baseline`` (the original's)."""
    acc = accuracy(logits, targets)
    for k in ("top1", "top5"):
        if baseline and k in acc and k in baseline:
            acc[f"delta_{k}"] = acc[k] - baseline[k]
    return acc


def evaluate_artifact(art: Artifact, x: np.ndarray, reference: np.ndarray, *, batch: int = 1,
                      threads: int | None = None, latency: bool = True, runtime: str | None = None,
                      device: str | None = None, tolerance: Tolerance | None = None,
                      random_weights: bool = False, targets: np.ndarray | None = None,
                      baseline: dict | None = None, isolated: bool = False) -> ArtifactResult:
    """Parity (and a quick latency) of one artifact on one runtime, on ``device`` (``None``: where that
    runtime runs by default: an engine on CUDA); with ``targets`` (true classes), its accuracy and the
    change from ``baseline`` (the original's). A backend that fails is a failed result, not a crash.
    ``random_weights``: int8 results are advisory (judged against the floor only). TensorRT's QDQ model on
    another runtime is not judged (its engine is), and still has to clear the floor. ``isolated``: run it in a
    worker process with a time and memory limit (:mod:`edgecnn.harness.worker`): what a received folder's
    graph gets."""
    rt_name = runtime or art.runtime
    result = _result(art, rt_name, device=device, random_weights=random_weights)
    name = art.key if runtime is None else f"{art.key}@{runtime}"
    try:
        result.device = device_for(rt_name, device)
        if isolated:
            out, result.info, result.latency = run_artifact(art, x, batch=batch, runtime=runtime,
                                                            device=result.device, threads=threads, latency=latency,
                                                            executed=True)
            result.executed = result.info.pop("executed", None)
            result.peak_rss_mib = result.info.pop("peak_rss_mib", None)
        else:
            with load(art, runtime=runtime, threads=threads, device=result.device) as rt:
                out = run_batched(rt, x, batch)
                if latency:
                    result.latency = measure(rt.run, x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, 0),
                                             warmup=3, iterations=20)
                result.info = asdict(rt.info())
                result.executed = record(rt)
        result.parity = compare(reference, out, name=name, precision=art.precision, tolerance=tolerance)
        if targets is not None:
            result.accuracy = accuracy_against(out, targets, baseline)
    except EdgecnnError as e:
        result.error = str(e)
    return result


def _result(art: Artifact, rt_name: str | None, *, device: str | None, random_weights: bool) -> ArtifactResult:
    """An artifact's row before it runs: advisory for int8 on random weights; not judged off its runtime."""
    result = ArtifactResult(artifact=art.key, precision=art.precision, runtime=rt_name, parent=art.parent,
                            device=device)
    if random_weights and art.precision == "int8":
        result.advisory = RANDOM_INT8_ADVISORY
    result.not_judged = not_judged_reason(art, rt_name or "")
    if art.format == "onnx":  # an imported or received model may be int8 whatever its stage says
        result.minus128 = scan_minus128(art.path)
    return result


@dataclass
class CheckReport:
    model: str
    out_dir: str
    n_images: int
    images: str
    results: list[ArtifactResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    layers: dict | None = None
    original: dict | None = None  # the original's accuracy against true labels (ImageFolder images)
    notes: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)  # the manifest's defaults of several routes (marked *)
    emulated: dict | None = None  # check --emulate: the emulated CPU and what its process saw (harness/emulate.py)

    @property
    def passed(self) -> bool:
        return all_pass(self.results)

    def to_dict(self) -> dict:
        return {"model": self.model, "out_dir": self.out_dir, "n_images": self.n_images, "images": self.images,
                "results": [r.to_dict() for r in self.results], "skipped": self.skipped, "passed": self.passed,
                "layers": self.layers, "original": self.original, "notes": self.notes, "defaults": self.defaults,
                "emulated": self.emulated}


def check_dir(out_dir: str | Path, *, images: str | None = None, runtimes: tuple[str, ...] | None = None,
              n_images: int = 32, threads: int | None = None, tolerances: dict[str, Tolerance] | None = None,
              layers: bool = False, original=None, device: str | None = None, trust_source: bool = False,
              wait: bool = True, emulate: str | None = None) -> CheckReport:
    """Parity of every artifact in ``out_dir`` against the original; with an ImageFolder as ``images``
    (every image is used once, ``n_images`` is ignored), accuracy against its labels too.

    Every ONNX artifact runs on each requested runtime that reads ONNX (ONNX Runtime, OpenVINO);
    IR and engines run on their own runtime. Each runtime runs on ``device`` when one is given (those
    that cannot are skipped, with why), else on its default: engines on CUDA, the rest on the CPU.
    Every artifact present is judged, whatever the manifest calls it ("advisory", "alternative" and "default"
    change how a row is shown, never whether a wrong output passes); the artifact ``predict`` deploys on each
    runtime is judged against its full tolerance; a check that judged no (artifact, runtime) pair at all is
    an error, never a pass. A TensorRT engine this machine did not build is refused unless ``trust_source``.
    ``original``: the nn.Module an export from Python was made from (else model.onnx stands in for it).
    ``trust_source``: call the factory a manifest names (Python code) to rebuild the original.
    The folder is read under a shared lock: an export writing it is waited for (``wait=False``: refused).
    ``emulate``: an ARM CPU for qemu-aarch64 (cortex-a72, cortex-a76, max,sve=off...): the ONNX artifacts run on
    its ONNX Runtime kernels and the IRs on its OpenVINO kernels, judged the same way, the deployed row being
    ARM's (:mod:`edgecnn.harness.emulate`; nothing about speed).
    """
    check_device(device)
    if emulate:
        emulation.check_request(emulate, runtimes, device)
    check_limit("images", n_images, "--num-images")
    for tol in (tolerances or {}).values():
        tol.check()
    with locked(Path(out_dir), shared=True, wait=wait):
        return _check(out_dir, images=images, runtimes=runtimes, n_images=n_images, threads=threads,
                      tolerances=tolerances, layers=layers, original=original, device=device,
                      trust_source=trust_source, emulate=emulate)


def _check(out_dir, *, images, runtimes, n_images, threads, tolerances, layers, original, device,
           trust_source, emulate=None) -> CheckReport:
    manifest = Manifest.load(out_dir)
    manifest.verify()  # a truncated or swapped file is named here, not reported as a parity failure
    unavailable = availability()
    # emulated: each artifact on its own format's runtime unless asked, as an ARM machine runs them
    arch, where = (emulation.ARCH, emulate) if emulate else (None, "this machine")  # None: this machine's
    planned = [(art, runs_for(art, emulation.runtimes_of(art, runtimes) if emulate else runtimes, device,
                              unavailable, arch=arch, where=where)) for art in manifest.artifacts]
    for art, (runs, _) in planned:  # before any work: an engine is native code
        if runs:
            admit_engine(manifest, art, trust_source=trust_source)
    pairs = [(art, rt) for art, (runs, _) in planned for rt, _ in runs]
    if pairs and all(not_judged_reason(art, rt) for art, rt in pairs):  # a pass over nothing is no pass
        raise ConfigError("nothing to judge: every artifact checked is " + "; ".join(
            sorted({f"{safe_text(art.key)} ({not_judged_reason(art, rt)})" for art, rt in pairs})))
    prep = Preprocessing.from_dict(manifest.preprocessing)
    recorded, said = None, None
    if images is None:  # judge on what the export judged on, when it is still there, unchanged
        recorded, requested, said = evalset.recorded(manifest.evaluation)
        images, n_images = (recorded, requested) if recorded is not None else (images, n_images)
    ev = eval_images(prep, n_images, folder=images)
    x = ev.x
    orig = original_model(manifest, original, trust_source=trust_source)
    reference = orig.logits(x, threads=threads)
    targets = ev.targets(manifest.labels, reference.shape[1], hint="re-export with --labels FILE")
    batch = manifest.input_shape[0]
    alternatives = manifest.alternatives()
    report = CheckReport(model=manifest.model, out_dir=str(Path(out_dir).resolve()), n_images=len(x),
                         images=ev.description, notes=[n for n in (said, orig.note) if n],
                         defaults=sorted(manifest.defaults()))
    if recorded is not None:
        report.notes.append(f"images: the {len(x)} the export was judged on ({recorded}; every file's sha256 "
                            "matches its record)")
    if targets is not None:
        report.original = accuracy(reference, targets)
    deployed: dict[str, str | None] = {}
    pending: list[tuple[Artifact, ArtifactResult]] = []  # --emulate: judged together, in one emulated process
    for art, (runs, skipped) in planned:
        report.skipped += skipped
        for rt_name, rt_device in runs:
            if rt_name not in deployed:
                try:
                    deployed[rt_name] = deployed_artifact(manifest, rt_name, arch=arch).key
                except ConfigError:
                    deployed[rt_name] = None
            if emulate:
                pending.append((art, res := _result(art, rt_name, device="cpu",
                                                    random_weights=random_weights(manifest))))
            else:
                res = evaluate_artifact(art, x, reference, batch=batch, threads=threads, runtime=rt_name,
                                        device=rt_device, latency=False, tolerance=(tolerances or {}).get(art.precision),
                                        random_weights=random_weights(manifest), targets=targets,
                                        baseline=report.original, isolated=rt_name in ISOLATED)
            res.alternative = art.key in alternatives
            res.deployed = deployed[rt_name] == art.key
            report.results.append(res)
    if emulate:
        report.emulated = emulation.judge(pending, x, reference, cpu=emulate, batch=batch, tolerances=tolerances,
                                          targets=targets, baseline=report.original, accuracy_against=accuracy_against)
        report.notes.append(report.emulated["caveat"])
    if not report.results:
        nothing_checked(manifest, runtimes, report.skipped)
    flagged = {r.artifact: r.minus128 for r in report.results if r.minus128}
    report.notes += [f"{safe_text(key)}: {describe_minus128(found, reason=i == 0)}"
                     for i, (key, found) in enumerate(flagged.items())]
    if layers:
        report.layers = localise(manifest, x[: min(len(x), 8)])
    return report

