"""Artifact: one file (or IR pair) the pipeline produced, with where it came from.

Every exporter takes Artifacts and returns one; every runtime loads one. :func:`describe` makes the
record for a finished file (hash and size read from disk).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .fileio import sha256_file

# The tensor names every exported model uses: one image batch in, one logits batch out.
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# What every artifact carries about itself, as JSON strings: ONNX ``metadata_props`` under these keys,
# OpenVINO IR ``rt_info`` under the dotted path (``edgecnn`` > ``labels``).
LABELS_KEY, PREPROCESSING_KEY = "edgecnn.labels", "edgecnn.preprocessing"
METADATA_KEYS = (LABELS_KEY, PREPROCESSING_KEY)


def rt_info_path(key: str) -> list[str]:
    """Where a metadata key lives in an OpenVINO IR's rt_info: ``edgecnn.labels`` -> ``["edgecnn", "labels"]``."""
    return key.split(".", 1)


@dataclass(frozen=True)
class Artifact:
    """``path`` is relative to the output folder in the manifest, absolute in memory."""

    stage: str  # export | simplify | fp16 | int8 | openvino | tensorrt ...
    format: str  # onnx | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    path: Path
    sha256: str = ""
    bytes: int = 0
    parent: str | None = None  # the stage this one was derived from
    runtime: str | None = None  # the runtime that executes it, e.g. "onnxruntime"
    notes: str = ""
    build_key: str = ""  # hash of everything it was built from: equal key + equal sha256 => reuse

    @property
    def key(self) -> str:
        """Unique name inside a manifest: the stage (``export``, ``int8``, ``openvino-int8-nncf``...)."""
        return self.stage

    @property
    def files(self) -> list[Path]:
        """The file(s) on disk: an OpenVINO IR is an .xml and its .bin."""
        return [self.path] + ([self.path.with_suffix(".bin")] if self.format == "openvino" else [])

    def to_json(self, root: Path) -> dict:
        d = asdict(self)
        d["path"] = os.path.relpath(self.path, root)
        return d

    @classmethod
    def from_json(cls, d: dict, root: Path) -> "Artifact":
        return cls(**{**d, "path": (root / d["path"]).resolve()})


def describe(path: str | Path, *, stage: str, precision: str, parent: str | None, notes: str = "",
             fmt: str = "onnx", runtime: str | None = "onnxruntime") -> Artifact:
    """An Artifact for a finished file (hash and size read from disk)."""
    art = Artifact(stage=stage, format=fmt, precision=precision, path=Path(path).resolve(), parent=parent,
                   runtime=runtime, notes=notes)
    return Artifact(**{**asdict(art), "sha256": digest(art), "bytes": sum(f.stat().st_size for f in art.files)})


def digest(art: Artifact) -> str:
    """The sha256 an artifact is recorded with: its file's, or for an IR pair the hash of both files' hashes."""
    files = art.files
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
