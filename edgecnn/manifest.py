"""manifest.json: what was built, from what, with which tools, on which host, and how it did.

Written atomically (temp file + rename) under an exclusive lock on the output folder, so two
exports into one folder cannot interleave and a crash never leaves a half-written manifest.
The journal (``.edgecnn-journal.json``) records the artifacts an unfinished run completed, so the
next run reuses them; it is never read as a result.

A manifest or journal may come from someone else (a zip, a CI artifact, a shared drive): every path in
it is confined to the folder (:func:`edgecnn.guard.confined`), every size it asks for is bounded
(:func:`check_received`), and it is read only up to a size limit. Schema 3 (this version) adds each
file's own sha256 and size and a ``SHA256SUMS`` file; schema-2 folders are still read (their artifacts
are verified by the combined hash, and export rewrites them as schema 3).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .artifact import WRITTEN_SUFFIXES, Artifact, verified_bytes
from .errors import ArtifactError, EdgecnnError
from .fileio import atomic_path
from .guard import check_limit, confined, read_bounded, safe_text
from .results import ArtifactResult, all_pass

MANIFEST = "manifest.json"
JOURNAL = ".edgecnn-journal.json"  # artifacts finished by a run that has not ended (yet): reusable, not a result
SCHEMA = 3
READABLE = (2, 3)  # schema 2: no per-file digests, weights paths as typed
SUMS = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` in the folder verifies every artifact without edgecnn


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

    @property
    def root(self) -> Path | None:
        """The folder it was read from (None for one built in memory)."""
        return self.__dict__.get("_root")

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
                missing = not all(f.is_file() for f in art.files)
                state = "is missing" if missing else "is truncated or modified (sha256 differs from manifest.json)"
                fix = "" if missing else "move it away (edgecnn replaces only files it wrote, unchanged), then "
                raise ArtifactError(f"artifact {safe_text(art.key)} ({safe_text(art.path)}) {state}; {fix}run the "
                                    f"same `edgecnn export {safe_text(self.model)} ...` into this folder again to "
                                    "rebuild it")

    def save(self, root: Path) -> Path:
        data = {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items() if k not in ("artifacts", "results", "_root")},
                "artifacts": [a.to_json(root) for a in self.artifacts],
                "results": {k: r.to_dict() for k, r in self.results.items()}}
        sums = "".join(f"{f['sha256']}  {f['path']}\n" for a in data["artifacts"] for f in a["files"])
        with atomic_path(root / SUMS) as tmp:
            tmp.write_text(sums)
        with atomic_path(root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str))
        return root / MANIFEST

    @classmethod
    def load(cls, root: str | Path) -> "Manifest":
        root = Path(root)
        path = root / MANIFEST if root.is_dir() else root
        if not os.path.lexists(path):
            raise ArtifactError(f"no {MANIFEST} in {safe_text(root)}: run `edgecnn export MODEL --out "
                                f"{safe_text(root)}` first")
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"{safe_text(path)} is a symbolic link or not a regular file; refused")
        text = read_bounded(path, "manifest")
        try:
            data = json.loads(text)
            if data.pop("schema", None) not in READABLE:
                raise ValueError("schema")
            entries = data.pop("artifacts")
            _expect(isinstance(entries, list), "artifacts")
            check_limit("artifacts", len(entries), "number of artifacts", ArtifactError)
            arts = [Artifact.from_json(a, path.parent) for a in entries]
            if len({a.key for a in arts}) != len(arts):
                raise ValueError("two artifacts with one stage")
            check_files(arts)
            results = {str(k): ArtifactResult.from_dict(r) for k, r in data.pop("results").items()}
            manifest = cls(**data, artifacts=arts, results=results)
            check_received(manifest)
            manifest.__dict__["_root"] = path.parent.resolve()
            return manifest
        except EdgecnnError as e:
            raise ArtifactError(f"{safe_text(path)}: {e}") from None
        except (KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError, RecursionError, OSError) as e:
            what = f"field {safe_text(e)[:60]}" if isinstance(e, Malformed) else type(e).__name__
            raise ArtifactError(f"{safe_text(path)} is corrupt or from another edgecnn version ({what}); "
                                "export again into this folder to rebuild it") from None


class Malformed(ValueError):
    """A field of a received manifest that does not have the shape edgecnn writes (its name is the message)."""


def _expect(ok: bool, field: str) -> None:
    if not ok:
        raise Malformed(field)


def _is_int(v, low: int = 1) -> bool:
    return type(v) is int and v >= low


def _is_num(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


SOURCE_KINDS = ("zoo", "factory", "program", "onnx", "module")


def check_preprocessing(p: object) -> None:
    """A received preprocessing record (a manifest's, or what an artifact carries) has the shape
    :meth:`edgecnn.data.Preprocessing.to_dict` writes, within the resolution limit."""
    _expect(isinstance(p, dict), "preprocessing")
    _expect(_is_int(p.get("channels")) and p["channels"] <= 4, "preprocessing channels")
    for key in ("resolution", "resize", "crop"):
        if key in p or key == "resolution":
            _expect(_is_int(p.get(key)), f"preprocessing {key}")
            check_limit("resolution", p[key], f"preprocessing {key}")
    for key in ("mean", "std"):
        v = p.get(key)
        _expect(isinstance(v, list) and len(v) == p["channels"] and all(_is_num(x) for x in v), f"preprocessing {key}")
    _expect(all(x > 0 for x in p["std"]), "preprocessing std")
    _expect(_is_num(p.get("crop_pct")) and 0 < p["crop_pct"] <= 1, "preprocessing crop_pct")


def check_files(arts: list[Artifact]) -> None:
    """Before any file is hashed: no file listed twice (each would be hashed and loaded again), and the
    recorded sizes together within the ``artifact_bytes`` limit (each file must then be its recorded size)."""
    seen: set[Path] = set()
    for f in (f for a in arts for f in a.files):
        if f in seen:
            raise ArtifactError(f"{safe_text(f.name)} is listed by more than one artifact; refused")
        seen.add(f)
    total = 0
    for a in arts:
        sizes = [size for _name, _sha, size in a.digests] or [a.bytes]
        _expect(all(type(n) is int and n >= 0 for n in sizes), f"artifact {a.key} bytes")
        total += sum(sizes)
    check_limit("artifact_bytes", total, "artifacts' recorded size", ArtifactError)


def check_received(m: Manifest) -> None:
    """Every field a reader uses has the shape edgecnn writes, and the sizes it asks for are within the
    limits an export would accept: checked once here, before any work, so no reader meets a surprise."""
    _expect(isinstance(m.model, str), "model")
    check_limit("name", len(m.model), "model name length")
    for name in ("weights", "config", "versions", "host", "preprocessing", "timings", "selected"):
        _expect(isinstance(getattr(m, name), dict), name)
    shape = m.input_shape
    _expect(isinstance(shape, list) and len(shape) == 4 and all(_is_int(d) for d in shape) and shape[1] <= 4,
            "input_shape")
    check_limit("batch", shape[0], "batch")
    check_limit("resolution", max(shape[2:]), "resolution")
    _expect(m.dynamic_batch is None or _is_int(m.dynamic_batch), "dynamic_batch")
    if m.dynamic_batch is not None:
        check_limit("batch", m.dynamic_batch, "dynamic batch")
    check_preprocessing(m.preprocessing)
    c = m.config
    _expect(c.get("weights") is None or isinstance(c["weights"], str), "config weights")
    _expect(c.get("num_classes") is None or _is_int(c["num_classes"]), "config num_classes")
    if c.get("num_classes") is not None:
        check_limit("num_classes", c["num_classes"], "num_classes")
    _expect(_is_int(c.get("seed", 0), 0), "config seed")
    for key, sel in m.selected.items():
        _expect(isinstance(sel, dict) and (sel.get("default") is None or isinstance(sel["default"], str))
                and _strings(sel.get("candidates")), f"selected {key}")
    _expect(_strings(m.notes), "notes")
    _expect(m.labels is None or _strings(m.labels), "labels")
    _expect(m.evaluation is None or isinstance(m.evaluation, dict), "evaluation")
    src = m.source
    if src is not None:
        _expect(isinstance(src, dict) and src.get("kind") in SOURCE_KINDS and isinstance(src.get("ref"), str)
                and isinstance(src.get("name"), str) and isinstance(src.get("args") or {}, dict)
                and (src.get("sha256") is None or isinstance(src["sha256"], str)), "source")
        check_limit("name", len(src["ref"]), "source name length")


def try_load(root: Path) -> Manifest | None:
    """The previous manifest, or None when there is none or it cannot be trusted."""
    try:
        return Manifest.load(root) if (root / MANIFEST).is_file() else None
    except ArtifactError:
        return None


def recorded_artifacts(root: Path) -> list[Artifact]:
    """The artifact records of ``root``'s manifest.json that can be trusted one by one (confined to the
    folder, an edgecnn file name), even when the manifest as a whole cannot: what an export may replace
    or prune there (each only while its hash still matches), so a damaged folder can be repaired."""
    try:
        if (root / MANIFEST).is_symlink():
            return []
        entries = json.loads(read_bounded(root / MANIFEST, "manifest"))["artifacts"]
    except (EdgecnnError, KeyError, TypeError, ValueError, RecursionError, OSError):
        return []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            found.append(Artifact.from_json(entry, root))
        except (EdgecnnError, KeyError, TypeError, AttributeError, ValueError, OSError):
            continue
    return found


def journal_load(root: Path) -> tuple[list[Artifact], set[Path]]:
    """Artifacts an unfinished (interrupted) run completed, and the files it was writing when it stopped
    (its to replace); empty when there is no journal, or one that cannot be trusted."""
    try:
        if (root / JOURNAL).is_symlink():
            return [], set()
        data = json.loads(read_bounded(root / JOURNAL, "journal"))
        if isinstance(data, list):  # schema 2: the artifacts alone
            data = {"artifacts": data, "writing": []}
        arts = [Artifact.from_json(a, root) for a in data["artifacts"]]
        return arts, {confined(root, p, "journal") for p in data["writing"] if isinstance(p, str) and Path(p).suffix in WRITTEN_SUFFIXES}
    except (EdgecnnError, KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError, RecursionError,
            OSError):
        return [], set()


def journal_save(root: Path, artifacts: list[Artifact], writing: tuple[Path, ...] = ()) -> None:
    """Record the artifacts finished so far, so an interrupted run's next attempt reuses them, and the
    files about to be written (a run killed between writing one and recording it owns it all the same)."""
    data = {"artifacts": [a.to_json(root) for a in artifacts],
            "writing": [os.path.relpath(p, root) for p in writing]}
    with atomic_path(root / JOURNAL) as tmp:
        tmp.write_text(json.dumps(data, default=str))


def build_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def reusable(previous: list[Artifact], key: str, build: str) -> Artifact | None:
    """An earlier artifact for ``key`` built from the same inputs and intact on disk, if any."""
    return next((a for a in previous if a.key == key and a.build_key == build and intact(a)), None)


def intact(art: Artifact) -> bool:
    """The artifact's file(s) are regular files on disk with the size and sha256 recorded when it was built
    (each file's own, where the record has them); sizes are compared before any byte is hashed."""
    try:
        verified_bytes(art)
        return True
    except (ArtifactError, OSError):
        return False
