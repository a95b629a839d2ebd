"""Files written so that nothing half-written is ever trusted, and the lock that serialises writers.

- :func:`atomic_path`: write to a temporary name beside the destination, rename only on success;
- :func:`writable_dir`: prove a folder is writable before minutes of work, not after;
- :func:`write_failure`: the one-line error for a full disk or a read-only folder;
- :func:`sha256_file`: the content hash every artifact, checkpoint and download is checked against;
- :func:`locked`: a lock on an output folder: exclusive for a whole export, shared for check and bench.

No write here follows a symlink: the lock, the probe and every temporary file are opened with
``O_NOFOLLOW`` (and created with ``O_EXCL``), so a planted link cannot make edgecnn write elsewhere.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator

from .errors import BusyError, ExportError

# A write that fails for lack of room (or a read-only disk): the user's to fix, not a bug.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
LOCK = ".edgecnn.lock"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def create_new(path: str | Path) -> int:
    """A file descriptor for a new file at ``path``: never an existing file, never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)


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
        fd = create_new(tmp_path)
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
        probe = folder / f".write-test-{os.getpid()}-{secrets.token_hex(8)}"  # unguessable, and never followed
        os.close(create_new(probe))
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
def locked(root: Path, *, shared: bool = False, wait: bool = True, log=None) -> Iterator[None]:
    """Lock the output folder: exclusive for an export (which writes it), shared for check and bench
    (which read it), so a reader never sees an export half-way. ``wait=False``: :class:`BusyError` at once.

    The lock file is opened without following a symlink and never truncated; a reader of a folder it
    cannot write (a read-only share) reads without a lock, since no export can write there either."""
    root = Path(root)
    if not shared:
        writable_dir(root)
    try:
        import fcntl  # POSIX only
    except ImportError:
        yield
        return
    fd = _open_lock(root / LOCK, shared)
    if fd is None:
        yield
        return
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BusyError(f"{root} is being written by another edgecnn export; try again when it ends "
                                "(or leave out --no-wait to wait for it)") from None
            who = "another edgecnn export into" if not shared else "an edgecnn export into"
            (log or _say)(f"waiting for {who} {root} to finish...")
            fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _say(message: str) -> None:
    print(message, flush=True)


def _open_lock(path: Path, shared: bool) -> int | None:
    """The lock file's descriptor (created if absent), refusing a symlink or anything but a regular file."""
    try:
        # O_NONBLOCK: a FIFO planted under the name is opened without waiting for a writer, then refused
        fd = os.open(path, (os.O_RDONLY if shared else os.O_RDWR) | os.O_CREAT | NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise ExportError(f"{path} is a symbolic link; edgecnn never writes through one: remove it") from None
        if shared and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return None
        if shared and e.errno == errno.ENOENT:
            return None
        raise ExportError(f"cannot lock {path.parent} ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExportError(f"{path} is not a regular file; remove it")
    return fd


TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}(\.[A-Za-z0-9]+)*\.tmp$|^\.write-test-\d+-[0-9a-f]{16}$")


TEMP_DIR = re.compile(r"^\.(edgecnn-int8-|ir-)[A-Za-z0-9_]{6,}$")  # int8's and OpenVINO's work folders


def remove_stale_temps(root: Path, folders: tuple[str, ...] = ("", "openvino", "tensorrt")) -> list[str]:
    """Under the exclusive lock no other edgecnn writer is active here, so temporary files (the names
    :func:`atomic_path` and :func:`writable_dir` make) and the int8/OpenVINO work folders are left-overs
    of a killed run: remove them. Only entries with exactly those names, never through a symlink."""
    removed = []
    for sub in folders:
        folder = Path(root) / sub
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(os.path.join(sub, entry.name))
            elif TEMP_DIR.match(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)  # rmtree never follows a symlink inside
                removed.append(os.path.join(sub, entry.name))
    return removed
