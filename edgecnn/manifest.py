"""manifest.json: what was built, from what, with which tools, on which host, and how it did.

Written atomically (temp file + rename) under an exclusive lock on the output folder, so two
exports into one folder cannot interleave and a crash never leaves a half-written manifest.
The journal (``.edgecnn-journal.json``) records the artifacts an unfinished run completed, so the
next run reuses them; it is never read as a result, and neither it nor a manifest decides what an export
may replace, prune or reuse: only the local record outside the folder does (:mod:`edgecnn.ledger`).

A manifest or journal may come from someone else (a zip, a CI artifact, a shared drive): every path in
it is confined to the folder (:func:`edgecnn.guard.confined`), every size it asks for is bounded
(:func:`check_received`), and it is read only up to a size limit. Schema 3 (this version) adds each
file's own sha256 and size and a ``SHA256SUMS`` file; schema-2 folders are still read (their artifacts
are verified by the combined hash).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import ledger
from .artifact import Artifact, combine, verified_bytes
from .errors import ArtifactError, EdgecnnError
from .fileio import atomic_path
from .guard import check_limit, clip, read_bounded, safe_text
from .results import ArtifactResult, all_pass

MANIFEST = "manifest.json"
JOURNAL = ".edgecnn-journal.json"  # artifacts finished by a run that has not ended (yet): reusable, not a result
SCHEMA = 3
READABLE = (2, 3)  # schema 2: no per-file digests, weights paths as typed
SUMS = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` in the folder verifies every artifact without edgecnn


def chosen(sel: dict) -> set[str]:
    """What a selection group (one entry of ``Manifest.selected``) chose: its default, and the route it recorded
    for each CPU architecture (``targets``, OpenVINO int8: the default runs on every architecture; a route made
    for one architecture only, faster or more faithful there, is that architecture's)."""
    targets = sel.get("targets")
    picks = [sel.get("default"), *(targets.values() if isinstance(targets, dict) else ())]
    return {p for p in picks if isinstance(p, str)}


def losers(sel: dict) -> list[str]:
    """A selection group's candidates it did not choose: its alternatives."""
    picks = chosen(sel)
    return [c for c in sel.get("candidates") or () if c not in picks]


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
        """Stages that lost a selection to a default that is in this folder: shown as such, judged like any other.

        A group whose every candidate failed, or whose default is not an artifact here, has no alternatives."""
        built = {a.key for a in self.artifacts}
        return {c for sel in self.selected.values() if sel.get("default") in built for c in losers(sel)}

    def defaults(self) -> set[str]:
        """The stages each selection group with a default in this folder chose (:func:`chosen`) that are here."""
        built = {a.key for a in self.artifacts}
        return {c for sel in self.selected.values() if sel.get("default") in built for c in chosen(sel) & built}

    def failures(self) -> dict[str, str]:
        """Stages that could not be built or were removed (no artifact), with why."""
        built = {a.key for a in self.artifacts}
        return {k: r.error for k, r in self.results.items() if k not in built and r.error}

    def replaced(self) -> set[str]:
        """Stages with no artifact whose selection group has a default built here that passes: the group's
        purpose is met, so their failure does not fail the export."""
        built = {a.key for a in self.artifacts}
        return {c for sel in self.selected.values() if sel.get("default") in built
                and sel["default"] in self.results and self.results[sel["default"]].ok
                for c in sel["candidates"] if c not in built}

    def passed(self) -> bool:
        """Every artifact passes (advisory ones clear the floor) and every stage asked for was built (or
        replaced by the passing default of its selection group). An export's own verdict; ``check`` judges a
        folder from its files, never from these recorded results."""
        built, replaced = {a.key for a in self.artifacts}, self.replaced()
        return all_pass(r for k, r in self.results.items() if k in built or k not in replaced)

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
            check_sums(path.parent, arts)
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
    _expect(p.get("channels") in (1, 3) and type(p["channels"]) is int, "preprocessing channels (1 or 3)")
    for key in ("resolution", "resize", "crop"):
        if key in p or key == "resolution":
            _expect(_is_int(p.get(key)), f"preprocessing {key}")
            check_limit("resolution", p[key], f"preprocessing {key}")
    for key in ("mean", "std"):
        v = p.get(key)
        _expect(isinstance(v, list) and len(v) == p["channels"] and all(_is_num(x) for x in v), f"preprocessing {key}")
    _expect(all(x > 0 for x in p["std"]), "preprocessing std")
    _expect(_is_num(p.get("crop_pct")) and 0 < p["crop_pct"] <= 1, "preprocessing crop_pct")
    # One rule: the resize used is the one crop_pct implies (Preprocessing.resize); it is bounded like the
    # resolution, and a recorded `resize` that says otherwise is a tampered record, not a second opinion.
    implied = resize_for(p["resolution"], p["crop_pct"])
    check_limit("resolution", implied, "preprocessing resize (resolution / crop_pct)")
    if "resize" in p:
        _expect(p["resize"] == implied, "preprocessing resize (not what crop_pct implies)")
    if "crop" in p:
        _expect(p["crop"] == p["resolution"], "preprocessing crop (not the resolution)")


def resize_for(resolution: int, crop_pct: float) -> int:
    """The shorter side an image is resized to before the centre crop of ``resolution`` (at least it)."""
    return max(resolution, int(round(resolution / crop_pct)))


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
    _expect(m.preprocessing["channels"] == shape[1] and m.preprocessing["resolution"] == shape[2] == shape[3],
            "preprocessing (channels or resolution not the input_shape's)")
    c = m.config
    _expect(c.get("weights") is None or isinstance(c["weights"], str), "config weights")
    _expect(c.get("num_classes") is None or _is_int(c["num_classes"]), "config num_classes")
    if c.get("num_classes") is not None:
        check_limit("num_classes", c["num_classes"], "num_classes")
    _expect(_is_int(c.get("seed", 0), 0), "config seed")
    for key, sel in m.selected.items():
        _expect(isinstance(sel, dict) and (sel.get("default") is None or isinstance(sel["default"], str))
                and _strings(sel.get("candidates")), f"selected {key}")
        targets = sel.get("targets")
        _expect(targets is None or (isinstance(targets, dict) and _strings(list(targets))
                                    and all(v is None or isinstance(v, str) for v in targets.values())),
                f"selected {key} targets")
    _expect(_strings(m.notes), "notes")
    _expect(m.labels is None or _strings(m.labels), "labels")
    _expect(m.evaluation is None or isinstance(m.evaluation, dict), "evaluation")
    src = m.source
    if src is not None:
        _expect(isinstance(src, dict) and src.get("kind") in SOURCE_KINDS and isinstance(src.get("ref"), str)
                and isinstance(src.get("name"), str) and isinstance(src.get("args") or {}, dict)
                and (src.get("sha256") is None or isinstance(src["sha256"], str)), "source")
        check_limit("name", len(src["ref"]), "source name length")
        check_options(src.get("args") or {}, "source args")
    _expect(isinstance(c.get("model_args") or {}, dict), "config model_args")
    check_options(c.get("model_args") or {}, "config model_args")
    for art in m.artifacts:  # every name a reader prints or keys on: a stage name is a name, not a payload
        for value in (art.stage, art.parent, art.runtime):
            if value is not None:
                check_limit("name", len(value), "artifact stage, parent or runtime length")
    for key in m.results:
        check_limit("name", len(key), "result stage length")


MAX_OPTIONS = 32  # builder options in one manifest (the zoo's builders take a handful)


def check_options(args: dict, what: str) -> None:
    """Builder options a received manifest passes to a model builder: Python names with JSON scalar values
    (or short lists of them), so nothing in them is big before the builder's own size check
    (:func:`edgecnn.models._factory.build_model` estimates the model on the meta device first)."""
    _expect(len(args) <= MAX_OPTIONS and all(isinstance(k, str) and k.isidentifier() and len(k) <= 64
                                             for k in args), what)

    def scalar(v) -> bool:
        return v is None or type(v) is bool or _is_num(v) and abs(v) < 2**31 or isinstance(v, str) and len(v) <= 255

    _expect(all(scalar(v) or isinstance(v, list) and len(v) <= 64 and all(scalar(x) for x in v)
                for v in args.values()), what)


def check_sums(root: Path, arts: list[Artifact]) -> None:
    """``SHA256SUMS`` (what ``sha256sum -c`` verifies) says what manifest.json says about every artifact file,
    no more and no less; a folder where the two disagree was changed after its export, and the first file
    they disagree on is named. A folder without the file (schema 2, or removed) has nothing to cross-check."""
    root = Path(root)
    recorded = {os.path.normpath(f["path"]): f["sha256"] for a in arts for f in a.to_json(root.resolve())["files"]}
    if not os.path.lexists(root / SUMS) or not recorded:
        return
    if (root / SUMS).is_symlink():
        raise ArtifactError(f"{SUMS} is a symbolic link; refused")
    listed: dict[str, str] = {}
    for line in read_bounded(root / SUMS, SUMS).splitlines():
        sha, sep, name = line.partition("  ")
        if not sep:  # `sha256sum -b` writes 'HASH *NAME'
            sha, sep, name = line.partition(" *")
        if not sep or len(sha) != 64 or not name:
            raise ArtifactError(f"{SUMS} has a line that is not 'SHA256  FILE': {clip(line, 80)}")
        listed[os.path.normpath(name)] = sha.lower()
    for name in sorted(set(recorded) | set(listed)):
        if recorded.get(name) != listed.get(name):
            how = ("is not in " + MANIFEST) if name not in recorded else ("is not in " + SUMS) if name not in listed \
                else "has another sha256 there"
            raise ArtifactError(f"{SUMS} and {MANIFEST} disagree about {clip(name, 120)} (it {how}): the folder was "
                                "changed after its export; export again into it, or ask its sender for an intact copy")


def try_load(root: Path) -> Manifest | None:
    """The previous manifest, or None when there is none or it cannot be trusted."""
    try:
        return Manifest.load(root) if (root / MANIFEST).is_file() else None
    except ArtifactError:
        return None


def recorded_artifacts(root: Path) -> list[Artifact]:
    """The artifact records of ``root``'s manifest.json that can be read one by one (confined to the
    folder, an edgecnn file name), even when the manifest as a whole cannot: candidates an export may
    prune or reuse there, each only where the local record proves its files (:func:`ours`)."""
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


def journal_load(root: Path) -> list[Artifact]:
    """Artifacts an unfinished (interrupted) run completed: empty when there is no journal, one this machine's
    edgecnn did not write here (:mod:`edgecnn.ledger`: a journal grants nothing by itself), or one that
    cannot be read. Each is still reused only when the local record proves its files (:func:`reusable`)."""
    try:
        if not ledger.proves(root, root / JOURNAL):
            return []
        data = json.loads(read_bounded(root / JOURNAL, "journal"))
        if isinstance(data, list):  # schema 2: the artifacts alone
            data = {"artifacts": data}
        return [Artifact.from_json(a, root) for a in data["artifacts"]]
    except (EdgecnnError, KeyError, TypeError, AttributeError, ValueError, UnicodeDecodeError, RecursionError,
            OSError):
        return []


def journal_save(root: Path, artifacts: list[Artifact]) -> None:
    """Record the artifacts finished so far, so an interrupted run's next attempt reuses them (what it may
    replace is the local record's to say, never the journal's)."""
    data = {"artifacts": [a.to_json(root) for a in artifacts]}
    with atomic_path(root / JOURNAL) as tmp:
        tmp.write_text(json.dumps(data, default=str))


def build_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def reusable(previous: list[Artifact], key: str, build: str, root: Path) -> Artifact | None:
    """An earlier artifact for ``key`` built from the same inputs, whose files the local record proves this
    machine's edgecnn wrote in ``root``, byte for byte, if any: a received or edited record reuses nothing."""
    return next((a for a in previous if a.key == key and a.build_key == build and ours(a, root)), None)


def ours(art: Artifact, root: Path) -> bool:
    """Every file of ``art`` is exactly what this machine's edgecnn wrote in ``root`` (:func:`edgecnn.ledger.proven`),
    and ``art``'s record describes those bytes (its sha256 and per-file digests): each file hashed once."""
    hashes = [ledger.proven(root, f) for f in art.files]
    if None in hashes:
        return False
    own = {name: sha for name, sha, _size in art.digests}
    return combine(hashes) == art.sha256 and all(own.get(f.name, h) == h for f, h in zip(art.files, hashes))


def intact(art: Artifact) -> bool:
    """The artifact's file(s) are regular files on disk with the size and sha256 recorded when it was built
    (each file's own, where the record has them); sizes are compared before any byte is hashed."""
    try:
        verified_bytes(art)
        return True
    except (ArtifactError, OSError):
        return False
