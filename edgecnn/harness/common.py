"""What check and bench share: the original model behind an export folder, which runtimes read an
artifact and on which device, and feeding a fixed-batch artifact."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import ledger
from ..artifact import Artifact
from ..errors import ArtifactError, ConfigError, WeightsError
from ..exporters.int8 import TENSORRT_STAGE
from ..exporters.openvino import QDQ_ROUTE, ROUTE_TARGETS, target_arch
from ..guard import clip, confined, hash_bounded, safe_text
from ..manifest import Manifest
from ..models import create_model, get_spec
from ..models._factory import RANDOM
from ..models.sources import ModelSource, build_factory, load_program
from ..runtimes import RUNTIMES, device_for, load
from ..runtimes.torch import reference_logits
from ..weights import is_cached
from .worker import ORIGINAL_BATCH, check_batch, run_artifact, run_batched  # noqa: F401 - imported from here


# Measured: a randomly initialised MobileNetV2 lands at int8 cosine ~0.97 whatever the recipe (minmax,
# percentile, entropy, 128 or 400 images): near-tied random logits flip. Its int8 rows are judged against the
# floor only (results.clears_floor), and never deployed.
RANDOM_INT8_ADVISORY = "random weights: int8 fidelity is judged only with trained weights (--weights imagenet|PATH)"
# TensorRT's QDQ model is judged through its engine. On a CPU runtime its symmetric int8 runs on other kernels:
# measured, EfficientNet-Lite0 on AVX2 without VNNI, ONNX Runtime cosine 0.77 where exact Q/DQ arithmetic gives 0.998.
NOT_JUDGED_TENSORRT = "made for TensorRT; judged through its engine"
ENGINE_RUNTIME = "tensorrt"


@dataclass
class Original:
    """The model every artifact is measured against: a PyTorch module, or for an ONNX source the given
    ONNX file run by ONNX Runtime in fp32. ``note`` says when it is a stand-in (see :func:`original`)."""

    target: torch.nn.Module | Path | Artifact  # an Artifact: the folder's model.onnx standing in (verified, isolated)
    runtime: str  # "torch" | "onnxruntime"
    note: str = ""

    def logits(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        if self.runtime == "torch":
            return reference_logits(self.target, x)  # type: ignore[arg-type]
        if isinstance(self.target, Artifact):  # the folder's own model.onnx standing in: a received graph
            return run_artifact(self.target, x, batch=None, runtime=self.runtime, device="cpu", threads=threads)[0]
        with load(self.target, runtime=self.runtime, threads=threads) as rt:
            fixed = rt.input_shape[0] if rt.input_shape and isinstance(rt.input_shape[0], int) else None
            return run_batched(rt, x, fixed or ORIGINAL_BATCH)


def build_original(source: ModelSource, *, weights=None, num_classes: int | None = None, seed: int = 0,
                   module: torch.nn.Module | None = None) -> Original:
    """The original of ``source`` (an nn.Module source needs ``module``)."""
    if source.kind == "zoo":
        return Original(create_model(source.ref, weights=weights, num_classes=num_classes, seed=seed,
                                     **dict(source.args)), "torch")
    if source.kind == "factory":
        return Original(build_factory(source), "torch")
    if source.kind == "program":
        return Original(load_program(source), "torch")
    if source.kind == "onnx":
        return Original(Path(source.ref), "onnxruntime")
    if module is None:
        raise ArtifactError("this export was made from a Python nn.Module: pass it (original=module)")
    return Original(module, "torch")


def original_model(manifest: Manifest, module: torch.nn.Module | None = None, *,
                   trust_source: bool = False) -> Original:
    """Rebuild the original an export was made from (same source, weights, classes and seed).

    A factory file or program that changed since the export is refused (it would not be the same
    original). An ONNX original that is no longer where it was, and a Python module not passed in,
    are stood in for by the exported ``model.onnx`` (whose graph is the original's), and ``note`` says so.

    A manifest may come from someone else, so what it names is never run or fetched on its word: a
    factory (Python code) is called only with ``trust_source`` (else ``model.onnx`` stands in, and the note
    says so), a checkpoint is loaded only when its sha256 is the recorded one, and published weights
    are used only when they are already on this machine (no download)."""
    cfg = manifest.config
    source = ModelSource.from_dict(manifest.source) if manifest.source else ModelSource("zoo", manifest.model,
                                                                                        manifest.model)
    path = source.path
    # A file a received manifest names outside its folder (a source, a checkpoint) is neither read nor run
    # without --trust-source: not hashed (a /proc file, a FIFO), not loaded, not executed (a .pt2).
    outside = (path is not None and _outside(manifest, path, trust_source)) or \
        (source.kind == "zoo" and _outside(manifest, _checkpoint(manifest, source), trust_source))
    moved = path is not None and not outside and _changed(path, source.sha256)
    export = manifest.artifact("export")
    untrusted = (source.kind == "factory" and not trust_source) or outside
    stand_in = (source.kind == "onnx" and moved) or (source.kind == "module" and module is None) or untrusted
    if stand_in and export is not None:
        why = ("names a file outside its folder, read only with --trust-source" if outside else
               "is not where it was, or changed" if source.kind == "onnx" else
               "is Python code named by manifest.json, run only with --trust-source" if untrusted else
               "is a Python module (not stored)")
        return Original(export, "onnxruntime",
                        note=f"original: {export.path.name} on onnxruntime fp32 (the source {why})")
    if outside:
        raise ArtifactError("manifest.json names a source or checkpoint outside its folder: pass --trust-source "
                            "to read it")
    if untrusted:
        raise ArtifactError("the model's source is Python code named by manifest.json: pass --trust-source to run it")
    if moved:
        state = "is missing" if not path.is_file() else "changed since the export (sha256 differs)"
        raise ArtifactError(f"the model's source {clip(path)} {state}; restore it or export again")
    weights = received_weights(manifest, source) if source.kind == "zoo" else None
    return build_original(source, weights=weights, num_classes=cfg.get("num_classes"),
                          seed=cfg.get("seed", 0), module=module)


def _checkpoint(manifest: Manifest, source: ModelSource) -> Path | None:
    """The checkpoint file a zoo model's manifest names (a path, not a published set's name), if any."""
    named = manifest.config.get("weights")
    if not isinstance(named, str) or named == RANDOM or get_spec(source.ref).weights_named(named) is not None:
        return None
    path = Path(named).expanduser()
    return manifest.root / path if not path.is_absolute() and manifest.root else path


def _outside(manifest: Manifest, path: Path | None, trust_source: bool) -> bool:
    """``path`` (named by a received manifest) leads outside the manifest's folder, after symlinks, and
    the user did not say to trust it (a manifest built in memory, without a folder, is this run's own)."""
    if path is None or trust_source or manifest.root is None:
        return False
    try:
        confined(manifest.root, os.path.relpath(path, manifest.root), "source")
        return False
    except (ArtifactError, ValueError, OSError, RuntimeError):
        return True


def _changed(path: Path, recorded: str | None) -> bool:
    """The source file is missing, not a regular file, over the size limit or not the recorded bytes."""
    try:
        return hash_bounded(path, what="the model's source")[0] != recorded
    except ArtifactError:
        return True


def received_weights(manifest: Manifest, source: ModelSource) -> str | Path | None:
    """The weights a manifest names, when they may be used: a published set already on this machine, or a
    checkpoint (relative paths from the manifest's folder) whose size is within the limit and whose sha256
    is the one recorded at export time."""
    named = manifest.config.get("weights")
    if named is None or named == RANDOM:
        return None
    if not isinstance(named, str):
        raise ArtifactError("manifest.json: config.weights is not a name or a path")
    record = get_spec(source.ref).weights_named(named)
    if record is not None:
        if record.package is None and not is_cached(record.url, sha256=record.sha256):
            raise WeightsError(f"manifest.json asks for {source.ref}'s {clip(named)} weights, which are not on "
                               "this machine; a received folder never starts a download: fetch them once with "
                               f"`edgecnn export {source.ref} --weights {clip(named)}`")
        return named
    path = Path(named).expanduser()
    if not path.is_absolute():  # schema 2 recorded the path as typed: read it from the manifest's folder
        path = manifest.root / path if manifest.root else path
    try:
        found = path.is_file()
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop: not a file to read
        raise WeightsError(f"weights file {clip(path)} (named by manifest.json) cannot be read "
                           f"({getattr(e, 'strerror', None) or type(e).__name__})") from None
    if not found:
        raise WeightsError(f"weights file not found: {clip(path)} (named by manifest.json)")
    recorded = (manifest.weights or {}).get("sha256")
    try:  # one no-follow, non-blocking open; refused by its size (checkpoint limit) before a byte is hashed
        digest = hash_bounded(path, what="checkpoint")[0]
    except ArtifactError as e:
        raise WeightsError(str(e)) from None
    if not recorded or digest != recorded:
        raise WeightsError(f"the checkpoint {clip(path)} is not the one this export was made from (its sha256 "
                           "differs from manifest.json); restore that file or export again")
    return path


def runtimes_for(art: Artifact, wanted: tuple[str, ...] | None) -> list[str]:
    """The runtimes that read ``art``'s format (its own first), limited to ``wanted``."""
    names = [n for n in RUNTIMES.names() if art.format in RUNTIMES.get(n).formats]
    if art.runtime in names:
        names.remove(art.runtime)
        names.insert(0, art.runtime)
    return [n for n in names if wanted is None or n in wanted]


def runs_for(art: Artifact, wanted: tuple[str, ...] | None, device: str | None,
             unavailable: dict[str, str | None], *, arch: str | None = None,
             where: str = "this machine") -> tuple[list[tuple[str, str]], list[str]]:
    """(runtime, device) pairs to run ``art`` on, and the pairs left out with why.

    Each runtime runs on ``device`` when one is asked for, else on its own default (:func:`runtimes.device_for`):
    an engine on CUDA, the rest on the CPU. A runtime that cannot use the asked device is left out, not failed,
    and so is OpenVINO running what edgecnn makes for other CPU architectures than ``arch`` (default: this
    machine's; :func:`foreign_route`). ``where``: the CPU it runs on, for the reason."""
    arch = arch or target_arch()
    runs, skipped = [], []
    for name in runtimes_for(art, wanted):
        if unavailable.get(name):
            skipped.append(f"{art.key}@{name}: unavailable: {unavailable[name]}")
            continue
        if name == "openvino" and (why := foreign_route(art, arch)):
            skipped.append(f"{art.key}@{name}: not run on {where}: {why}; an {arch.upper()} machine never deploys it")
            continue
        try:
            runs.append((name, device_for(name, device)))
        except ConfigError as e:
            skipped.append(f"{art.key}@{name}: {e}")
    return runs, skipped


def nothing_checked(manifest: Manifest, runtimes: tuple[str, ...] | None, skipped: list[str]) -> None:
    """A check (or bench) that ran nothing is an error, never a pass: say why there was nothing to run."""
    if not manifest.artifacts:
        why = "manifest.json lists no artifacts"
    elif skipped:
        why = f"every pair was skipped ({safe_text(skipped[0])}{', ...' if len(skipped) > 1 else ''})"
    else:
        formats = sorted({a.format for a in manifest.artifacts})
        why = (f"no runtime among {', '.join(runtimes or ())} reads this folder's artifacts "
               f"({', '.join(formats)})")
    raise ConfigError(f"nothing was checked: {why}")


def random_weights(manifest: Manifest) -> bool:
    """A zoo model exported with a random init (its int8 results are advisory)."""
    return (manifest.source or {}).get("kind", "zoo") == "zoo" and manifest.config.get("weights") is None


def advisory_reason(manifest: Manifest, art: Artifact) -> str | None:
    """Why ``art``'s row is judged against the floor only (int8 of a random init), or None."""
    return RANDOM_INT8_ADVISORY if random_weights(manifest) and art.precision == "int8" else None


def not_judged_reason(art: Artifact, runtime: str) -> str | None:
    """Why ``art`` on ``runtime`` is not an artifact to pass or fail (TensorRT's QDQ model on a CPU runtime:
    its engine is judged), or None. Decided by the name, which can only take rights away: such a row still
    has to clear the floor, is not counted, and is never deployed on that runtime."""
    return NOT_JUDGED_TENSORRT if art.key == TENSORRT_STAGE and runtime != ENGINE_RUNTIME else None


def other_arch_routes(arch: str) -> set[str]:
    """Stages of the routes edgecnn makes for other CPU architectures only (:data:`ROUTE_TARGETS`; on a Cortex-A72
    the u8-activation OpenVINO int8 IRs do not compile): never run nor deployed on ``arch``. From edgecnn's own
    table, not the manifest's ``route_targets``: a label in a folder never takes an artifact out of judgement."""
    return {stage for stage, archs in ROUTE_TARGETS.items() if arch not in archs}


def foreign_route(art: Artifact, arch: str) -> str | None:
    """Why OpenVINO does not run ``art`` on a machine of ``arch``, or None: it is what edgecnn makes for other CPU
    architectures only (a machine of ``arch`` never deploys it; on a Cortex-A72 the u8-activation OpenVINO int8 IRs
    do not even compile): such a route's IR, or an int8 ONNX (OpenVINO reading it is the QDQ route)."""
    if art.key in other_arch_routes(arch):
        return "a route edgecnn makes for other CPU architectures only (exporters/openvino.py ROUTE_TARGETS)"
    if art.format == "onnx" and art.precision == "int8" and QDQ_ROUTE in other_arch_routes(arch):
        return (f"OpenVINO reading this int8 ONNX is the {QDQ_ROUTE} route, which edgecnn makes for other CPU "
                "architectures only")
    return None


def deployed_artifact(manifest: Manifest, runtime: str, *, arch: str | None = None) -> Artifact:
    """The one artifact a user deploys on ``runtime`` (what ``predict`` runs, and what ``check`` judges against
    its full tolerance): among the artifacts that runtime runs and that are judged there, a passing int8 that is
    neither advisory nor a losing alternative, else the most derived passing fp32 (simplified over exported),
    else the last one. ``ConfigError`` when that runtime runs none of them. ``arch``: the CPU architecture it is
    deployed on (``"x86"``, ``"arm"``; default: this machine's)."""
    formats = RUNTIMES.get(runtime).formats
    own = [a for a in manifest.artifacts if a.runtime == runtime] or [a for a in manifest.artifacts
                                                                      if a.format in formats]
    own = [a for a in own if a.format in formats and not_judged_reason(a, runtime) is None]
    if not own:
        raise ConfigError(f"this export has no artifact {runtime} runs and judges; built: "
                          f"{', '.join(f'{safe_text(a.key)} ({a.format})' for a in manifest.artifacts)}")
    alternatives = manifest.alternatives()
    # The route the export recorded for this machine's architecture (OpenVINO int8: the Cortex-A72 compiles only
    # the s8s8 route), where it differs from the default chosen on the exporting machine.
    arch = arch or target_arch()
    groups = [sel for sel in manifest.selected.values() if isinstance(sel, dict)]
    here = {pick for sel in groups if isinstance(sel.get("targets"), dict)
            for pick in [sel["targets"].get(arch)] if isinstance(pick, str)}
    unfit = other_arch_routes(arch)

    def deployable(a: Artifact) -> bool:
        r = manifest.results.get(a.key)
        return ((a.key not in alternatives or a.key in here) and a.key not in unfit
                and advisory_reason(manifest, a) is None
                and (r is None or (r.error is None and (r.parity is None or r.parity.passed))))

    for precision in ("int8", "fp32"):
        picks = [a for a in own if a.precision == precision and deployable(a)]
        picks = [a for a in picks if a.key in here] or picks
        if picks:
            return picks[-1]
    return own[-1]


def built_here(manifest: Manifest, art: Artifact) -> bool:
    """This machine's ownership ledger proves it wrote every file of ``art`` (these exact bytes)."""
    folder = manifest.root  # the local record lives outside the folder (edgecnn/ledger.py)
    return folder is not None and all(ledger.proves(folder, f) for f in art.files)


def admit_engine(manifest: Manifest, art: Artifact, *, trust_source: bool) -> None:
    """Refuse to deserialize a TensorRT engine this machine did not build, unless ``trust_source``: an engine is
    native code, and NVIDIA documents deserializing an untrusted one as running untrusted code."""
    if art.format != ENGINE_RUNTIME or trust_source or built_here(manifest, art):
        return
    raise ArtifactError(f"refused to load the TensorRT engine {safe_text(art.path.name)}: an engine is native code "
                        "and this machine did not build it; rebuild it here (`edgecnn export ... --targets tensorrt`) "
                        "or pass --trust-source if you trust whoever made it")
