"""The build cache of one export folder: reuse what an earlier identical run of this machine built, journal
what this run finishes, record what fails, and prune what no run lists any more.

Ownership is proved locally, never claimed by the folder: a file is replaced, pruned or reused only when the
local record outside the folder (:mod:`edgecnn.ledger`) proves this machine's edgecnn wrote exactly those
bytes there. The folder's ``manifest.json`` and journal say *which* earlier artifact was built from what
(its build key), never *whose* it is. Anything else where edgecnn writes (a user's own ``model.onnx``, their
web app's ``manifest.json`` or release ``SHA256SUMS``, a received folder's artifacts, a symlink) stops the
export with one line naming it; files no stage writes are never touched.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import ledger
from ..artifact import Artifact, rehash
from ..errors import EdgecnnError, ExportError, first_line
from ..guard import safe_text
from ..manifest import JOURNAL, MANIFEST, SUMS, Manifest, build_key, journal_load, journal_save, \
    recorded_artifacts, reusable, try_load


def owns(out: Path, path: Path) -> bool:
    """``path`` is free, or a file this machine's edgecnn wrote in ``out``, byte for byte (the local record)."""
    return not os.path.lexists(path) or ledger.proves(out, path)


def claim(out: Path, files: tuple[Path, ...] | list[Path]) -> None:
    """Stop (one line) before ``files`` would replace anything this machine's edgecnn did not write in ``out``."""
    for f in files:
        if not owns(out, f):
            raise ExportError(f"{safe_text(f)} is in the way: edgecnn did not write it (this machine's record of "
                              "what edgecnn wrote in this folder does not hold these bytes); move it away or choose "
                              "another --out")


def claim_records(out: Path) -> None:
    """The folder's own records, written by every export: a foreign ``manifest.json`` or ``SHA256SUMS``
    (a web app's, a release's, a received folder's) stops the export before any work."""
    claim(out, (out / MANIFEST, out / SUMS))


class BuildCache:
    def __init__(self, out: Path, *, force: bool, log: Callable[[str], None], say: Callable[[str], None]) -> None:
        self.out, self.log, self.say = out, log, say
        claim_records(out)
        # A journal this machine did not write is ignored: never read, written over or deleted.
        self.journaling = owns(out, out / JOURNAL)
        if not self.journaling:
            log(f"  ignored {JOURNAL}: edgecnn did not write it here (left as it is)")
        self.earlier: Manifest | None = try_load(out)  # ours (claimed above) or absent
        self.journal = journal_load(out) if self.journaling else []
        # what an earlier run listed: reused, replaced or pruned only where the local record proves each file
        self.recorded = (self.earlier.artifacts if self.earlier else recorded_artifacts(out)) + self.journal
        self.previous = [] if force else self.recorded
        self.artifacts: list[Artifact] = []
        self.failed: dict[str, str] = {}  # stage -> why it could not be built
        self.seconds: dict[str, float] = {}  # stage -> wall time of its build (0 when reused)

    def owns(self, path: Path) -> bool:
        return owns(self.out, path)

    def claim(self, files: tuple[Path, ...]) -> None:
        claim(self.out, files)

    def stage(self, key: str, parts: tuple, make: Callable[[], Artifact | None], *,
              optional: bool = True, files: tuple[Path, ...] = ()) -> Artifact | None:
        """Reuse the artifact for ``key`` if built from identical ``parts``, else ``make`` it (writing ``files``).

        A derived stage (``optional``) that fails is recorded in :attr:`failed` with its one-line reason
        and the export goes on; the first stage, with nothing to fall back on, raises. A file of ``files``
        that edgecnn does not own stops the export whatever the stage."""
        bkey = build_key(key, *parts)
        old = reusable(self.previous, key, bkey, self.out)
        t0 = time.perf_counter()
        if old is not None:
            self.log(f"  {key}: reused ({old.path.name}, unchanged inputs)")
            art = old if old.digests else rehash(old)  # a schema-2 record gets its per-file digests
        else:
            self.claim(files)
            self.log(f"  {key}: building...")
            try:
                art = make()
            except EdgecnnError as e:
                if not optional:
                    raise
                self.failed[key] = first_line(e)
                self.say(f"{key}: failed: {self.failed[key]}")
                return None
            finally:
                self.seconds[key] = round(time.perf_counter() - t0, 3)
            if art is None:
                return None
            art = replace(art, build_key=bkey)
            self.log(f"  {key}: built in {self.seconds[key]:.1f} s")
        self.artifacts.append(art)
        self._journal()
        return art

    def drop(self, art: Artifact) -> None:
        """Forget an artifact this run will not keep, and delete its file(s): nothing unlisted is left to trust."""
        self.artifacts.remove(art)
        self._journal()
        for f in art.files:
            self._remove(f)

    def finish(self) -> None:
        """Remove files an earlier run listed that this run does not (each only while the local record proves
        it), and this run's journal."""
        keep = {f for a in self.artifacts for f in a.files}
        for old in self.recorded:  # confined to the folder when read
            if old.path not in keep and self.out in old.path.parents:
                for f in old.files:
                    if f not in keep:
                        self._remove(f)
        if self.journaling:
            self._remove(self.out / JOURNAL)

    def _journal(self) -> None:
        if self.journaling:
            journal_save(self.out, self.artifacts)

    def _remove(self, path: Path) -> None:
        """Delete ``path`` when the local record proves this machine's edgecnn wrote it, byte for byte."""
        if ledger.proves(self.out, path):
            path.unlink(missing_ok=True)
            ledger.forget(self.out, path)
