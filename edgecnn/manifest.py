"""manifest.json: what was built, from what, with which tools, on which host, and how it did.

Written atomically (temp file + rename) under an exclusive lock on the output folder, so two
exports into one folder cannot interleave and a crash never leaves a half-written manifest.
The journal (``.edgecnn-journal.json``) records the artifacts an unfinished run completed, so the
next run reuses them; it is never read as a result.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .artifact import Artifact, digest
from .errors import ArtifactError
from .fileio import atomic_path
from .results import ArtifactResult, all_pass

MANIFEST = "manifest.json"
JOURNAL = ".edgecnn-journal.json"  # artifacts finished by a run that has not ended (yet): reusable, not a result
SCHEMA = 2


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
    # artifact key (stage) -> its result on its own runtime; a stage that failed to build has a result, no artifact
    results: dict[str, ArtifactResult] = field(default_factory=dict)
    # "openvino:int8" -> {"default": stage or None, "candidates": [stages]}: routes built and measured, best kept
    selected: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # where the original came from (models.sources.ModelSource.to_dict); None: a zoo model (older manifests)
    source: dict | None = None
    labels: list[str] | None = None  # class name of each output, where known
    # the held-out images results were measured on; with class sub-folders, the original's accuracy too
    evaluation: dict | None = None
    # where the export's time went: stage -> {"build_s": ..., "evaluate_s": ...}, and "total_s"
    timings: dict = field(default_factory=dict)

    def artifact(self, key: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.key == key), None)

    def alternatives(self) -> set[str]:
        """Stages that lost a selection to a working default: shown and kept, but not what a user deploys.

        A group whose every candidate failed has no default, and then none of its stages is an alternative."""
        return {c for sel in self.selected.values() if sel.get("default")
                for c in sel["candidates"] if c != sel["default"]}

    def defaults(self) -> set[str]:
        return {sel["default"] for sel in self.selected.values() if sel.get("default")}

    def failures(self) -> dict[str, str]:
        """Stages that could not be built (no artifact), with why."""
        built = {a.key for a in self.artifacts}
        return {k: r.error for k, r in self.results.items() if k not in built and r.error}

    def passed(self) -> bool:
        """Every deployable artifact passes (or is advisory) and every stage asked for was built
        (or replaced by a working candidate of its selection group)."""
        return all_pass(self.results.values())

    def verify(self) -> None:
        """Raise :class:`ArtifactError` naming the first artifact that is missing or differs from its record."""
        for art in self.artifacts:
            if not intact(art):
                state = ("is missing" if not art.path.is_file()
                         else "is truncated or modified (sha256 differs from manifest.json)")
                raise ArtifactError(f"artifact {art.key} ({art.path}) {state}; run the same `edgecnn export "
                                    f"{self.model} ...` into this folder again to rebuild it")

    def save(self, root: Path) -> Path:
        data = {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items() if k not in ("artifacts", "results")},
                "artifacts": [a.to_json(root) for a in self.artifacts],
                "results": {k: r.to_dict() for k, r in self.results.items()}}
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
            if data.pop("schema", None) != SCHEMA:
                raise ValueError("schema")
            arts = [Artifact.from_json(a, path.parent) for a in data.pop("artifacts")]
            results = {k: ArtifactResult.from_dict(r) for k, r in data.pop("results").items()}
            return cls(**data, artifacts=arts, results=results)
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
    try:
        return all(f.is_file() for f in art.files) and digest(art) == art.sha256
    except OSError:
        return False
