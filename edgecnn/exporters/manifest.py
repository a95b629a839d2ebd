"""manifest.json: what was built, from what, with which tools, on which host, and how it did.

Written atomically (temp file + rename) under an exclusive lock on the output folder, so two
exports into one folder cannot interleave and a crash never leaves a half-written manifest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import ArtifactError
from .artifact import Artifact, atomic_path, writable_dir

MANIFEST = "manifest.json"
JOURNAL = ".edgecnn-journal.json"  # artifacts finished by a run that has not ended (yet): reusable, not a result
SCHEMA = 1


@dataclass
class Manifest:
    model: str
    weights: dict
    input_shape: list[int]
    dynamic_batch: int | None
    preprocessing: dict
    config: dict
    versions: dict
    host: dict
    artifacts: list[Artifact] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # artifact key -> {"parity": ..., "latency": ...}
    # "openvino:int8" -> {"default": stage, "candidates": [stages]}: routes built and measured, best kept
    selected: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # stage -> why it could not be built: shown, never a default

    def alternatives(self) -> set[str]:
        """Stages that lost a selection to a working default: shown and kept, but not what a user deploys.

        A group whose every candidate failed has no default, and then none of its stages is an alternative."""
        return {c for sel in self.selected.values() if sel.get("default")
                for c in sel["candidates"] if c != sel["default"]}

    def defaults(self) -> set[str]:
        return {sel["default"] for sel in self.selected.values() if sel.get("default")}

    def passed(self) -> bool:
        """Every deployable artifact passes (or is advisory) and every stage asked for was built.

        An artifact that could not be run fails, advisory or not: there is nothing to advise on. A losing
        alternative does not count, nor a stage that failed where a working candidate took its place."""
        alt = self.alternatives()
        results_ok = all("error" not in r and (r["parity"].get("passed") or r.get("advisory"))
                         for k, r in self.results.items() if k not in alt)
        return results_ok and all(stage in alt for stage in self.failed)

    def artifact(self, key: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.key == key), None)

    def verify(self) -> None:
        """Raise :class:`ArtifactError` naming the first artifact that is missing or differs from its record."""
        for art in self.artifacts:
            if not intact(art):
                state = ("is missing" if not art.path.is_file()
                         else "is truncated or modified (sha256 differs from manifest.json)")
                raise ArtifactError(f"artifact {art.key} ({art.path}) {state}; run the same `edgecnn export "
                                    f"{self.model} ...` into this folder again to rebuild it")

    def save(self, root: Path) -> Path:
        data = {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items() if k != "artifacts"},
                "artifacts": [a.to_json(root) for a in self.artifacts]}
        with atomic_path(root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str))
        return root / MANIFEST

    @classmethod
    def load(cls, root: str | Path) -> "Manifest":
        root = Path(root)
        path = root / MANIFEST if root.is_dir() else root
        if not path.is_file():
            raise ArtifactError(f"no {MANIFEST} in {root}: run `edgecnn export MODEL --out {root}` first")
        try:
            data = json.loads(path.read_text())
            data.pop("schema", None)
            arts = [Artifact.from_json(a, path.parent) for a in data.pop("artifacts")]
            return cls(**data, artifacts=arts)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{path} is corrupt or from another edgecnn version ({type(e).__name__}); "
                                "export again into this folder to rebuild it") from None


def try_load(root: Path) -> Manifest | None:
    """The previous manifest, or None when there is none or it cannot be trusted."""
    try:
        return Manifest.load(root) if (root / MANIFEST).is_file() else None
    except ArtifactError:
        return None


def journal_load(root: Path) -> list[Artifact]:
    """Artifacts an unfinished (interrupted) run completed; empty when there is no readable journal."""
    try:
        return [Artifact.from_json(a, root) for a in json.loads((root / JOURNAL).read_text())]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError):
        return []


def journal_save(root: Path, artifacts: list[Artifact]) -> None:
    """Record the artifacts finished so far, so an interrupted run's next attempt reuses them."""
    with atomic_path(root / JOURNAL) as tmp:
        tmp.write_text(json.dumps([a.to_json(root) for a in artifacts], default=str))


def build_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def reusable(previous: list[Artifact], key: str, build: str) -> Artifact | None:
    """An earlier artifact for ``key`` built from the same inputs and intact on disk, if any."""
    return next((a for a in previous if a.key == key and a.build_key == build and intact(a)), None)


def intact(art: Artifact) -> bool:
    """The artifact's file(s) are on disk with the sha256 recorded when it was built."""
    from ..exporters.torch_onnx import describe

    if not art.path.is_file():
        return False
    try:
        now = describe(art.path, stage=art.stage, precision=art.precision, parent=art.parent, fmt=art.format)
    except OSError:
        return False
    return now.sha256 == art.sha256


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Exclusive lock on the output folder for the whole export (POSIX; elsewhere atomic renames only)."""
    writable_dir(root)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(root / ".edgecnn.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another edgecnn export into {root} to finish...", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
