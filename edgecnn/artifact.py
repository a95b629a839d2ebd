"""Artifact: one file (or IR pair) the pipeline produced, with where it came from.

Every exporter takes Artifacts and returns one; every runtime loads one. :func:`describe` makes the
record for a finished file (hash and size read from disk).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .errors import ArtifactError
from .fileio import sha256_file
from .guard import clip, confined, read_verified, safe_text

# What each format's files are called: a manifest naming anything else is not edgecnn's.
SUFFIXES = {"onnx": (".onnx",), "openvino": (".xml",), "tensorrt": (".engine",)}
PRECISIONS = ("fp32", "fp16", "int8")
WRITTEN_SUFFIXES = {".onnx", ".xml", ".bin", ".engine"}  # every artifact file (an IR's .bin too)
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
    # each file's own (name, sha256, bytes), so `sha256sum -c` can check a folder (schema 3; () when older)
    digests: tuple = ()

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
        d["files"] = [{"path": os.path.relpath(self.path.parent / name, root), "sha256": sha, "bytes": size}
                      for name, sha, size in self.digests]
        del d["digests"]
        return d

    @classmethod
    def from_json(cls, d: dict, root: Path) -> "Artifact":
        """The record of a received manifest or journal: every path confined to ``root`` (regular files
        inside it, after symlinks), with the suffix its format writes; anything else is refused."""
        d = dict(d)
        what = f"artifact {clip(d.get('stage'), 80)}"
        path = confined(root, d.get("path"), what)
        if d.get("format") not in SUFFIXES or path.suffix not in SUFFIXES[d["format"]]:
            raise ArtifactError(f"{what}: {safe_text(d.get('path'))} is not a file edgecnn writes for format "
                                f"{safe_text(d.get('format'))}; refused")
        for key, kind in (("stage", str), ("sha256", str), ("bytes", int), ("notes", str), ("build_key", str)):
            if key in d and not isinstance(d[key], kind):
                raise ArtifactError(f"{what}: field {key} is not a {kind.__name__}")
        if d.get("precision") not in PRECISIONS or not all(d.get(k) is None or isinstance(d[k], str)
                                                            for k in ("parent", "runtime")):
            raise ArtifactError(f"{what}: precision, parent or runtime is malformed")
        files = d.pop("files", None) or []
        digests = []
        for f in files:
            p = confined(root, f["path"], what)
            if p.parent != path.parent or p.name not in (path.name, path.with_suffix(".bin").name):
                raise ArtifactError(f"{what}: file {safe_text(f['path'])} is not one of its files; refused")
            digests.append((p.name, str(f["sha256"]), int(f["bytes"])))
        art = cls(**{**d, "path": path, "digests": tuple(digests)})
        for f in art.files:
            confined(root, os.path.relpath(f, Path(root).resolve()), what)
        return art


def describe(path: str | Path, *, stage: str, precision: str, parent: str | None, notes: str = "",
             fmt: str = "onnx", runtime: str | None = "onnxruntime") -> Artifact:
    """An Artifact for a finished file (hash and size read from disk)."""
    art = Artifact(stage=stage, format=fmt, precision=precision, path=Path(path).resolve(), parent=parent,
                   runtime=runtime, notes=notes)
    return rehash(art)


def rehash(art: Artifact) -> Artifact:
    """``art`` with its sha256, size and per-file digests read again from disk (after a rewrite)."""
    hashes = [sha256_file(f) for f in art.files]
    digests = tuple((f.name, h, f.stat().st_size) for f, h in zip(art.files, hashes))
    return replace(art, sha256=combine(hashes), bytes=sum(d[2] for d in digests), digests=digests)


def combine(hashes: list[str]) -> str:
    """The sha256 an artifact is recorded with: its file's, or for an IR pair the hash of both files' hashes
    (each file's own hash is in :attr:`Artifact.digests`, which is what ``sha256sum -c`` checks)."""
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()


def digest(art: Artifact) -> str:
    return combine([sha256_file(f) for f in art.files])


def verified_bytes(art: Artifact) -> list[bytes]:
    """The bytes of each of ``art``'s files, read once each and proved to be the recorded ones: size first
    (before a byte is hashed), then sha256, from the same descriptor (:func:`edgecnn.guard.read_verified`).
    A runtime loads these bytes, never the path again, so a file swapped after this read is never used.
    :class:`ArtifactError` names the artifact when a file is missing, not regular, or differs."""
    what = f"artifact {safe_text(art.key)}"
    if not art.sha256:
        raise ArtifactError(f"{what} ({safe_text(art.path)}) has no recorded sha256; refused")
    own = {name: (sha, size) for name, sha, size in art.digests}
    if own and all(f.name in own for f in art.files):
        data = [read_verified(f, size=own[f.name][1], sha256=own[f.name][0], what=what) for f in art.files]
    else:  # schema 2: one combined hash and the files' total size
        try:
            sizes = [os.stat(f, follow_symlinks=False).st_size for f in art.files]
        except OSError as e:
            raise ArtifactError(f"{what}: {safe_text(e.filename)} {e.strerror or 'cannot be read'}") from None
        if sum(sizes) != art.bytes:
            raise ArtifactError(f"{what} ({safe_text(art.path)}) is {sum(sizes)} bytes, not the {art.bytes} "
                                "recorded; refused")
        data = [read_verified(f, size=n, sha256=None, what=what) for f, n in zip(art.files, sizes)]
    if combine([hashlib.sha256(d).hexdigest() for d in data]) != art.sha256:
        raise ArtifactError(f"{what} ({safe_text(art.path)}): sha256 differs from its record; refused")
    return data
