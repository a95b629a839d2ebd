"""Files written so that nothing half-written is ever trusted, and the lock that serialises writers.

- :func:`atomic_path`: write to a temporary name beside the destination, rename only on success;
- :func:`writable_dir`: prove a folder is writable before minutes of work, not after;
- :func:`write_failure`: the one-line error for a full disk or a read-only folder;
- :func:`sha256_file`: the content hash every artifact, checkpoint and download is checked against;
- :func:`locked`: an exclusive lock on an output folder for a whole export.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from .errors import ExportError

# A write that fails for lack of room (or a read-only disk): the user's to fix, not a bug.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
LOCK = ".edgecnn.lock"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
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


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Exclusive lock on the output folder for the whole export (POSIX; elsewhere atomic renames only)."""
    writable_dir(root)
    try:
        import fcntl  # POSIX only
    except ImportError:
        yield
        return
    with open(root / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another edgecnn export into {root} to finish...", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
