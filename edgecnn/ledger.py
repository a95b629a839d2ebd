"""The local record of what this machine's edgecnn wrote: the only ground for replacing, pruning or reusing a file.

A folder edgecnn writes into may be a user's, or one received from someone else; its own ``manifest.json``
or journal can say anything. What edgecnn may replace, delete or reuse there is decided here, from a
record kept outside the folder, in the user's cache directory (:func:`cache_dir`)::

    <cache>/ledger/<folder key>.json   one per folder: its path, st_dev and st_ino, and for each file
                                       edgecnn wrote there: name, size, sha256, mtime_ns, pid, host, time;
                                       and the temporary names a run is about to create ("pending")

- :func:`record`: this process wrote ``path`` (these bytes): it may later be replaced, pruned or reused;
- :func:`proves` / :func:`proven`: the file at ``path`` is a regular file with exactly the recorded size and
  sha256 (size compared before hashing; hashed from one descriptor opened without following a symlink);
- :func:`forget`: edgecnn removed or gave up ``path``;
- :func:`pending` / :func:`stale`: a temporary file or work folder this process is about to create, so a
  killed run's left-over can be proven edgecnn's (and removed) by the next run, and nothing else can.

A folder is known by its resolved path, device and inode together: a copy, a moved folder or a new folder
at an old path holds nothing edgecnn can prove, so it is rebuilt, never trusted. The record is written
atomically under an ``fcntl`` lock; an unreadable or corrupt record proves nothing (it reads as empty).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Iterator

from .errors import ExportError

LEDGER_DIR = "ledger"
MAX_BYTES = 16 << 20  # a folder's record above this is not edgecnn's: it proves nothing
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def cache_dir() -> Path:
    """``$EDGECNN_CACHE`` or ``$XDG_CACHE_HOME/edgecnn`` (``~/.cache/edgecnn``): weights and this record."""
    env = os.environ.get("EDGECNN_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"


# ---- the public API ------------------------------------------------------------------------

def record(folder: str | Path, path: str | Path, sha256: str | None = None) -> None:
    """This process wrote ``path`` (inside ``folder``): its size, sha256 (hashed here when not given) and
    mtime are recorded, with who wrote it. ``path`` must be a regular file, not a symlink."""
    where, name = _where(folder, path)
    full = Path(where[0]) / name
    try:
        st = os.lstat(full)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{full} is not a regular file")
        digest = sha256 or _hash_checked(full, st.st_size)
    except OSError as e:
        raise ExportError(f"cannot record {full} in edgecnn's local record ({getattr(e, 'strerror', None) or e})") \
            from None
    if digest is None:
        raise ExportError(f"cannot record {full}: it changed while being hashed")
    entry = {"size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns, **_writer()}
    with _editing(where) as data:
        data["files"][name] = entry
        data["pending"].pop(name, None)


def proven(folder: str | Path, path: str | Path) -> str | None:
    """The sha256 of the file at ``path`` when the record proves this machine's edgecnn wrote exactly these
    bytes (a regular file, not a symlink, of the recorded size and sha256); else None."""
    try:
        where, name = _where(folder, path)
    except (OSError, ValueError):
        return None
    entry = _load(where)["files"].get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        return None
    digest = _hash_checked(Path(where[0]) / name, entry["size"])
    return digest if digest is not None and digest == entry.get("sha256") else None


def proves(folder: str | Path, path: str | Path) -> bool:
    """The file at ``path`` is exactly what this machine's edgecnn recorded writing there."""
    return proven(folder, path) is not None


def forget(folder: str | Path, path: str | Path) -> None:
    """``path`` is no longer edgecnn's to prove (it removed the file, or is about to)."""
    try:
        where, name = _where(folder, path)
    except (OSError, ValueError):
        return
    with _editing(where) as data:
        data["files"].pop(name, None)
        data["pending"].pop(name, None)


def pending(folder: str | Path, path: str | Path) -> None:
    """This process is about to create the temporary file or work folder ``path``: if the run is killed before
    it is removed (and :func:`forget` called), the next run may prove it stale and remove it."""
    where, name = _where(folder, path)
    with _editing(where) as data:
        data["pending"][name] = _writer()


def stale(folder: str | Path) -> list[Path]:
    """The temporary names registered in ``folder`` by a process of this host that is no longer running:
    left-overs of a killed run, and edgecnn's to remove. Names whose file is gone are forgotten."""
    try:
        where = _identity(Path(folder))
    except OSError:
        return []
    found, gone = [], []
    for name, who in _load(where)["pending"].items():
        if not isinstance(who, dict) or who.get("host") != socket.gethostname() or _running(who):
            continue
        path = Path(where[0]) / name
        (found if os.path.lexists(path) else gone).append(path)
    if gone:
        with _editing(where) as data:
            for path in gone:
                data["pending"].pop(path.name, None)
    return found


def forget_folder(folder: str | Path) -> None:
    """Drop the whole record of ``folder`` (a work folder edgecnn removed)."""
    try:
        where = _identity(Path(folder))
    except OSError:
        return
    with _locked():
        with contextlib.suppress(OSError):
            _file(where).unlink()


# ---- inside ----------------------------------------------------------------------------------

def _where(folder: str | Path, path: str | Path) -> tuple[tuple[str, int, int], str]:
    """(identity of the directory holding ``path``, its file name); ``path`` must lie inside ``folder``."""
    folder, path = Path(folder).resolve(), Path(path)
    parent = path.parent.resolve()
    if parent != folder and folder not in parent.parents:
        raise ValueError(f"{path} is not inside {folder}")
    if path.name in ("", ".", ".."):
        raise ValueError(f"{path} names no file")
    return _identity(parent), path.name


def _identity(directory: Path) -> tuple[str, int, int]:
    directory = directory.resolve()
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(str(directory))
    return str(directory), st.st_dev, st.st_ino


def _file(where: tuple[str, int, int]) -> Path:
    key = hashlib.sha256(json.dumps(list(where)).encode()).hexdigest()[:40]
    return cache_dir() / LEDGER_DIR / f"{key}.json"


def _empty(where: tuple[str, int, int]) -> dict:
    return {"folder": where[0], "st_dev": where[1], "st_ino": where[2], "files": {}, "pending": {}}


def _load(where: tuple[str, int, int]) -> dict:
    """The record of one folder; empty when there is none, or it is unreadable, corrupt or another folder's."""
    try:
        fd = os.open(_file(where), os.O_RDONLY | NOFOLLOW)
    except OSError:
        return _empty(where)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return _empty(where)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = json.loads(f.read(MAX_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return _empty(where)
    finally:
        os.close(fd)
    if not (isinstance(data, dict) and [data.get("folder"), data.get("st_dev"), data.get("st_ino")] == list(where)
            and isinstance(data.get("files"), dict) and isinstance(data.get("pending"), dict)):
        return _empty(where)
    return data


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """The ledger directory (0700), held under an exclusive ``fcntl`` lock while one writer edits it."""
    base = cache_dir() / LEDGER_DIR
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o600)
    except OSError as e:
        raise ExportError(f"cannot write edgecnn's local record in {base} ({e.strerror or e}); "
                          "set EDGECNN_CACHE to a writable folder") from None
    try:
        try:
            import fcntl  # POSIX only
        except ImportError:
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield base
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _editing(where: tuple[str, int, int]) -> Iterator[dict]:
    """Read-modify-write one folder's record, under the lock, replaced atomically (never half-written)."""
    with _locked() as base:
        data = _load(where)
        yield data
        dest = _file(where)
        if not data["files"] and not data["pending"]:
            with contextlib.suppress(OSError):
                dest.unlink()
            return
        tmp = base / f".{dest.name}.{os.getpid()}.tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(data, sort_keys=True).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ExportError(f"cannot write edgecnn's local record {dest} ({e.strerror or e}); "
                              "set EDGECNN_CACHE to a writable folder") from None


def _hash_checked(path: Path, size: int) -> str | None:
    """sha256 of the regular file at ``path`` when it has exactly ``size`` bytes (compared before hashing,
    read from one descriptor opened without following a symlink, and no byte more than ``size``); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        h, left = hashlib.sha256(), size
        while left > 0:
            block = os.read(fd, min(1 << 20, left))
            if not block:
                return None
            h.update(block)
            left -= len(block)
        return h.hexdigest() if not os.read(fd, 1) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (Linux: /proc/<pid>/stat field 22), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _writer() -> dict:
    pid = os.getpid()
    return {"pid": pid, "started": _start_time(pid), "host": socket.gethostname(), "time": time.time()}


def _running(who: dict) -> bool:
    """The process that wrote ``who`` (on this host) may still be running: its pid is alive and started then."""
    pid = who.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return who.get("started") == _start_time(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, another user's
    started = _start_time(pid)
    return started is None or who.get("started") is None or started == who["started"]
