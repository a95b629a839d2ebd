"""What check and bench share: the original model behind an export folder, which runtimes read an
artifact and on which device, and feeding a fixed-batch artifact."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..artifact import Artifact
from ..errors import ArtifactError, ConfigError, WeightsError
from ..guard import confined, hash_bounded, safe_text
from ..manifest import Manifest
from ..models import create_model, get_spec
from ..models._factory import RANDOM
from ..models.sources import ModelSource, build_factory, load_program
from ..runtimes import RUNTIMES, device_for, load
from ..runtimes.torch import reference_logits
from ..weights import is_cached
from .worker import ORIGINAL_BATCH, run_artifact, run_batched  # noqa: F401 - run_batched: imported from here



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
        raise ArtifactError(f"the model's source {safe_text(path)} {state}; restore it or export again")
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
            raise WeightsError(f"manifest.json asks for {source.ref}'s {safe_text(named)} weights, which are not on "
                               "this machine; a received folder never starts a download: fetch them once with "
                               f"`edgecnn export {source.ref} --weights {safe_text(named)}`")
        return named
    path = Path(named).expanduser()
    if not path.is_absolute():  # schema 2 recorded the path as typed: read it from the manifest's folder
        path = manifest.root / path if manifest.root else path
    if not path.is_file():
        raise WeightsError(f"weights file not found: {safe_text(path)} (named by manifest.json)")
    recorded = (manifest.weights or {}).get("sha256")
    try:  # one no-follow, non-blocking open; refused by its size before a byte is hashed
        digest = hash_bounded(path, what="checkpoint")[0]
    except ArtifactError as e:
        raise WeightsError(str(e)) from None
    if not recorded or digest != recorded:
        raise WeightsError(f"the checkpoint {safe_text(path)} is not the one this export was made from (its sha256 "
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
             unavailable: dict[str, str | None]) -> tuple[list[tuple[str, str]], list[str]]:
    """(runtime, device) pairs to run ``art`` on, and the pairs left out with why.

    Each runtime runs on ``device`` when one is asked for, else on its own default (:func:`runtimes.device_for`):
    an engine on CUDA, the rest on the CPU. A runtime that cannot use the asked device is left out, not failed."""
    runs, skipped = [], []
    for name in runtimes_for(art, wanted):
        if unavailable.get(name):
            skipped.append(f"{art.key}@{name}: unavailable: {unavailable[name]}")
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

