"""The build cache of one export folder: reuse what an earlier identical run built, journal what this
run finishes, record what fails, and prune what no run lists any more.

An artifact is reused when its build key (a hash of everything it was built from) and its sha256 on
disk both match the record of the last complete run (manifest.json) or of an interrupted one (the
journal). Nothing else in the folder is ever trusted.

Ownership: a file is replaced or deleted only when edgecnn recorded it (path, sha256, size) and it still
has that hash, or when the journal says an interrupted run was writing it. Anything else where an
artifact goes (a user's own ``model.onnx``, a symlink) stops the export with one line naming it; files
no stage writes are never touched.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..artifact import Artifact, rehash
from ..errors import EdgecnnError, ExportError, first_line
from ..guard import safe_text
from ..manifest import (JOURNAL, Manifest, build_key, intact, journal_load, journal_save, recorded_artifacts,
                        reusable, try_load)


class BuildCache:
    def __init__(self, out: Path, *, force: bool, log: Callable[[str], None], say: Callable[[str], None]) -> None:
        self.out, self.log, self.say = out, log, say
        self.earlier: Manifest | None = try_load(out)  # its stale files are pruned even with --force
        self.journal, self.writing = journal_load(out)  # what an interrupted run finished, and was writing
        # what edgecnn recorded here: replaced or pruned only while each file still has its recorded hash
        self.recorded = (self.earlier.artifacts if self.earlier else recorded_artifacts(out)) + self.journal
        self.previous = [] if force else self.recorded
        self.artifacts: list[Artifact] = []
        self.failed: dict[str, str] = {}  # stage -> why it could not be built
        self.seconds: dict[str, float] = {}  # stage -> wall time of its build (0 when reused)

    def owns(self, path: Path) -> bool:
        """``path`` is free, or a file edgecnn wrote here and recorded, with that hash still."""
        path = Path(path)
        if not os.path.lexists(path):
            return True
        if path.is_symlink():
            return False
        resolved = path.resolve()
        return resolved in self.writing or any(resolved in r.files and intact(r) for r in self.recorded)

    def claim(self, files: tuple[Path, ...]) -> None:
        """Stop (one line) before ``files`` would replace anything edgecnn did not write."""
        for f in files:
            if not self.owns(f):
                raise ExportError(f"{safe_text(f)} is in the way: edgecnn did not write it (it is not recorded in "
                                  "manifest.json with this sha256); move it away or choose another --out")

    def stage(self, key: str, parts: tuple, make: Callable[[], Artifact | None], *,
              optional: bool = True, files: tuple[Path, ...] = ()) -> Artifact | None:
        """Reuse the artifact for ``key`` if built from identical ``parts``, else ``make`` it (writing ``files``).

        A derived stage (``optional``) that fails is recorded in :attr:`failed` with its one-line reason
        and the export goes on; the first stage, with nothing to fall back on, raises. A file of ``files``
        that edgecnn does not own stops the export whatever the stage."""
        bkey = build_key(key, *parts)
        old = reusable(self.previous, key, bkey)
        t0 = time.perf_counter()
        if old is not None:
            self.log(f"  {key}: reused ({old.path.name}, unchanged inputs)")
            art = old if old.digests else rehash(old)  # a schema-2 record gets its per-file digests
        else:
            self.claim(files)
            journal_save(self.out, self.artifacts, writing=files)
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
        journal_save(self.out, self.artifacts)
        return art

    def drop(self, art: Artifact) -> None:
        """Forget an artifact this run will not keep, and delete its file(s): nothing unlisted is left to trust."""
        self.artifacts.remove(art)
        journal_save(self.out, self.artifacts)
        for f in art.files:
            f.unlink(missing_ok=True)

    def finish(self) -> None:
        """Remove files an earlier run listed that this run does not, and the journal."""
        keep = {f for a in self.artifacts for f in a.files}
        for old in self.recorded:  # confined to the folder when read; deleted only while edgecnn's bytes
            if old.path not in keep and self.out in old.path.parents and intact(old):
                for f in old.files:
                    if f not in keep:
                        f.unlink(missing_ok=True)
        (self.out / JOURNAL).unlink(missing_ok=True)
