"""The build cache of one export folder: reuse what an earlier identical run built, journal what this
run finishes, record what fails, and prune what no run lists any more.

An artifact is reused when its build key (a hash of everything it was built from) and its sha256 on
disk both match the record of the last complete run (manifest.json) or of an interrupted one (the
journal). Nothing else in the folder is ever trusted.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..errors import EdgecnnError, first_line
from ..manifest import JOURNAL, Manifest, build_key, journal_load, journal_save, reusable, try_load


class BuildCache:
    def __init__(self, out: Path, *, force: bool, log: Callable[[str], None], say: Callable[[str], None]) -> None:
        self.out, self.log, self.say = out, log, say
        self.earlier: Manifest | None = try_load(out)  # its stale files are pruned even with --force
        self.journal = journal_load(out)  # what an interrupted run finished
        self.previous = [] if force else (self.earlier.artifacts if self.earlier else []) + self.journal
        self.artifacts: list[Artifact] = []
        self.failed: dict[str, str] = {}  # stage -> why it could not be built
        self.seconds: dict[str, float] = {}  # stage -> wall time of its build (0 when reused)

    def stage(self, key: str, parts: tuple, make: Callable[[], Artifact | None], *,
              optional: bool = True) -> Artifact | None:
        """Reuse the artifact for ``key`` if built from identical ``parts``, else ``make`` it.

        A derived stage (``optional``) that fails is recorded in :attr:`failed` with its one-line reason
        and the export goes on; the first stage, with nothing to fall back on, raises."""
        bkey = build_key(key, *parts)
        old = reusable(self.previous, key, bkey)
        t0 = time.perf_counter()
        if old is not None:
            self.log(f"  {key}: reused ({old.path.name}, unchanged inputs)")
            art = old
        else:
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
        keep = {a.path for a in self.artifacts}
        for old in (self.earlier.artifacts if self.earlier else []) + self.journal:
            if old.path not in keep and self.out in old.path.parents:
                for f in old.files:
                    f.unlink(missing_ok=True)
        (self.out / JOURNAL).unlink(missing_ok=True)
