"""The images an export was judged on, recorded in its manifest, so that ``check`` judges on the same ones.

``export --images DIR`` records DIR (absolute), every image file in it (path relative to DIR, sha256,
bytes) and how many inputs it asked for. ``check`` without ``--images`` reads them back only when the
folder still holds exactly those files with exactly those hashes: the record comes from a manifest,
which may have been received from elsewhere, so its paths are never trusted on their own. A file whose
hash matches is the very file that export read (and the decoder still judges it as an image); anything
else (the folder moved, a file added, removed or changed, a malformed record) falls back to the
bundled photos, said in one line.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from ..data import find_images
from ..errors import EdgecnnError
from ..fileio import sha256_file
from ..guard import safe_text

KEY = "images_record"


def record(folder: str | Path | None, requested: int) -> dict | None:
    """What ``export --images folder`` evaluated on (None for the bundled photos)."""
    if folder is None:
        return None
    root = Path(folder).resolve()
    files = find_images(root)
    return {"folder": str(root), "requested": int(requested), "n_files": len(files),
            "files": [{"path": p.relative_to(root).as_posix(), "sha256": sha256_file(p), "bytes": p.stat().st_size}
                      for p in files]}


def recorded(evaluation: dict | None) -> tuple[Path | None, int | None, str | None]:
    """``(folder, requested, note)``: the recorded folder when every recorded file is still there, alone,
    with its hash; else ``(None, None, why)`` (``note`` None when the export used the bundled photos)."""
    rec = (evaluation or {}).get(KEY)
    if rec is None:
        return None, None, None
    try:
        folder, why = _verify(rec)
    except (EdgecnnError, OSError, KeyError, TypeError, ValueError, AttributeError) as e:
        folder, why = None, f"its record cannot be read ({type(e).__name__})"
    if folder is None:
        where = safe_text(rec.get("folder")) if isinstance(rec, dict) else "?"
        return None, None, (f"the images the export was judged on ({where}) are not usable here: {why}; "
                            "judged on the bundled photos instead (pass --images DIR to choose)")
    return folder, int(rec["requested"]), None


def _verify(rec: dict) -> tuple[Path | None, str]:
    folder = Path(rec["folder"])
    files = rec["files"]
    if not isinstance(rec["requested"], int) or not isinstance(files, list) or not folder.is_absolute():
        return None, "its record is malformed"
    if not folder.is_dir():
        return None, "the folder is gone"
    wanted = {}
    for f in files:
        rel = PurePosixPath(f["path"])
        if rel.is_absolute() or ".." in rel.parts or not isinstance(f["sha256"], str):
            return None, f"its record names a file outside the folder ({safe_text(f['path'])})"
        wanted[str(rel)] = f["sha256"]
    here = {p.relative_to(folder).as_posix(): p for p in find_images(folder)}
    if set(here) != set(wanted):
        added, gone = len(set(here) - set(wanted)), len(set(wanted) - set(here))
        return None, f"the folder changed ({added} image(s) added, {gone} gone)"
    for rel, path in here.items():
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, f"{safe_text(rel)} is not a regular file"
        if sha256_file(path) != wanted[rel]:
            return None, f"{safe_text(rel)} changed since the export (sha256 differs)"
    return folder, ""
