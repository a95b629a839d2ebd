"""Artifact: one file (or IR pair) the pipeline produced, with where it came from."""
from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ExportError

FORMATS = ("onnx", "openvino", "tensorrt")
# A write that fails for lack of room (or a read-only disk): the user's to fix, not a bug.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Artifact:
    """``path`` is relative to the output folder in the manifest, absolute in memory."""

    stage: str  # export | simplify | fp16 | int8 | openvino | tensorrt ...
    format: str
    precision: str
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

    def to_json(self, root: Path) -> dict:
        d = asdict(self)
        d["path"] = os.path.relpath(self.path, root)
        return d

    @classmethod
    def from_json(cls, d: dict, root: Path) -> "Artifact":
        return cls(**{**d, "path": (root / d["path"]).resolve()})


@contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    Nothing half-written ever carries the final name: Ctrl-C, a full disk or an exception
    leaves at most a ``.tmp`` file that is removed here (or ignored by later runs).
    """
    dest = Path(dest)
    tmp_path = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{suffix or dest.suffix + '.tmp'}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its files are 0600, and an artifact should get the permissions of any other file (umask).
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise ExportError(f"cannot write {dest}: {dest.parent} is not a writable folder ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as e:
        error = write_failure(e, dest)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (fail before the work, not after)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        why = "a file has that name" if folder.is_file() else e.strerror or e
        raise ExportError(f"output folder {folder} is not writable ({why})") from None
    return folder


def write_failure(e: OSError, dest: str | Path) -> ExportError | None:
    """The one-line error for a write that failed for lack of room; ``None`` for any other OSError."""
    if e.errno not in NO_ROOM:
        return None
    return ExportError(f"cannot write {dest}: {os.strerror(e.errno)}; free some space or choose another output folder")
