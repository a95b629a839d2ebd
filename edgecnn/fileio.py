"""Files written so that nothing half-written is ever trusted, and the lock that serialises writers.

- :func:`atomic_path`: write to a temporary name beside the destination, rename only on success, and record
  the file in the local record (:mod:`edgecnn.ledger`) that alone proves it edgecnn's later;
- :func:`temp_dir` / :func:`remove_stale_temps`: work folders, and the sweep of a killed run's left-overs
  (only names the local record holds, never a name that merely looks like edgecnn's);
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
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from . import ledger
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


TEMP_PREFIX = ".edgecnn-tmp-"  # + 32 hex digits: a name no user file has, and no other edgecnn run picks


def temp_name(parent: str | Path, name: str, tail: str = "") -> Path:
    """A fresh temporary name in ``parent``: ``.edgecnn-tmp-<32 hex>-<name><tail>``."""
    return Path(parent) / f"{TEMP_PREFIX}{secrets.token_hex(16)}-{name[:96]}{tail}"


def place(tmp: str | Path, dest: str | Path) -> None:
    """Rename the finished ``tmp`` onto ``dest`` and record ``dest`` in the local record (:mod:`edgecnn.ledger`)
    with the hash of the bytes written: the one place a file edgecnn writes becomes provably its own."""
    sha = sha256_file(tmp)
    os.replace(tmp, dest)
    ledger.record(Path(dest).parent, dest, sha)


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    Nothing half-written ever carries the final name: Ctrl-C, a full disk or an exception leaves at most
    a temporary file, removed here; a kill -9 leaves one the next export proves stale and removes (its
    name is registered in the local record before it is created). The renamed file is recorded there.
    """
    dest = Path(dest)
    tmp_path = temp_name(dest.parent, dest.name, suffix or ".tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        ledger.pending(dest.parent, tmp_path)
        # Not mkstemp: its files are 0600, and an artifact should get the permissions of any other file (umask).
        fd = create_new(tmp_path)
    except OSError as e:
        raise ExportError(f"cannot write {dest}: {dest.parent} is not a writable folder ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp_path
        place(tmp_path, dest)
    except OSError as e:
        error = write_failure(e, dest)
        if error is None:
            raise
        raise error from None
    finally:
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp_path):
                tmp_path.unlink()
        ledger.forget(dest.parent, tmp_path)


@contextlib.contextmanager
def temp_dir(parent: str | Path, label: str) -> Iterator[Path]:
    """A fresh work folder in ``parent`` (``.edgecnn-tmp-<32 hex>-<label>``), registered in the local record
    before it is created, removed (with its record) when the block ends."""
    parent = Path(parent)
    work = temp_name(parent, label)
    parent.mkdir(parents=True, exist_ok=True)
    ledger.pending(parent, work)
    try:
        work.mkdir()
        yield work
    finally:
        _remove(parent, work)


def writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (fail before the work, not after)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_name(folder, "write-test")  # unguessable, and never followed
        ledger.pending(folder, probe)
        try:
            os.close(create_new(probe))
            probe.unlink()
        finally:
            ledger.forget(folder, probe)
    except OSError as e:
        why = "a file has that name" if folder.is_file() else e.strerror or e
        raise ExportError(f"output folder {folder} is not writable ({why})") from None
    return folder


def write_failure(e: OSError, dest: str | Path) -> ExportError | None:
    """The one-line error for a write that failed for lack of room; ``None`` for any other OSError.

    The temporary folder (``$TMPDIR``, where ONNX Runtime's quantizer and other tools work) is named when it
    is the one that is full: the file that failed is in it (and not in the output folder), or, when no file
    is named (a write deep inside a library), it is full and the output folder is not."""
    if e.errno not in NO_ROOM:
        return None
    why = os.strerror(e.errno)
    temp = Path(tempfile.gettempdir())
    failed = Path(e.filename) if isinstance(e.filename, (str, os.PathLike)) and str(e.filename) else None
    in_temp = _inside(failed, temp) and not _inside(failed, Path(dest).parent) if failed is not None else \
        _nearly_full(temp) and not _nearly_full(Path(dest).parent)
    if in_temp:
        return ExportError(f"cannot write {failed or 'a temporary file'}: {why} in the temporary folder {temp} "
                           "(TMPDIR); free some space there or set TMPDIR to a folder with room")
    return ExportError(f"cannot write {dest}: {why}; free some space or choose another output folder")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


def _nearly_full(folder: Path) -> bool:
    """Under 16 MiB free where ``folder`` is (False when that cannot be read)."""
    try:
        return shutil.disk_usage(folder).free < 16 << 20
    except OSError:
        return False


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


def remove_stale_temps(root: Path, folders: tuple[str, ...] = ("", "openvino", "tensorrt")) -> list[str]:
    """Remove the temporary files and work folders a killed run of this machine's edgecnn left in ``root``
    (and its sub-folders ``folders``): only names the local record says a process that is no longer running
    registered before creating them (:func:`edgecnn.ledger.stale`), never a file because of its name,
    never through a symlink."""
    removed = []
    for sub in folders:
        folder = Path(root) / sub
        if folder.is_symlink() or not folder.is_dir():
            continue
        for path in ledger.stale(folder):
            if path.name.startswith(TEMP_PREFIX):
                _remove(folder, path)
                removed.append(os.path.join(sub, path.name))
    return removed


def _remove(folder: Path, path: Path) -> None:
    """Remove edgecnn's own temporary ``path`` (a file, a link as itself, or a work folder) and its records."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            ledger.forget_folder(path)
            shutil.rmtree(path, ignore_errors=True)  # rmtree never follows a symlink inside
        elif os.path.lexists(path):
            path.unlink()
    ledger.forget(folder, path)
