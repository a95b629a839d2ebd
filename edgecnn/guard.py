"""A received export folder is untrusted input: confine the paths read from it, bound what it may ask
for, and print what came from it safely. One copy of each rule, used by every reader.

- :func:`confined`: a path named by a received file (manifest, journal) resolves, after symlinks, to a
  regular file inside the folder, or is refused with one line naming the entry;
- :func:`check_limit` / :data:`LIMITS`: sizes checked before any work starts (an override per limit,
  ``$EDGECNN_MAX_<NAME>``, for the user who really needs more);
- :func:`safe_text`: control, format (bidi, zero-width, tag) and separator characters escaped before the
  terminal, Markdown or HTML; :func:`clip`: the same, bounded in length, for received text in a message.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
import unicodedata
from pathlib import Path

from .errors import ArtifactError, ConfigError

# name -> (default, what it bounds). Each is checked before work starts, with its override in the message.
LIMITS = {
    "resolution": (4096, "input height/width in pixels"),
    "batch": (1024, "batch size"),
    "images": (100_000, "calibration/evaluation images"),
    "num_classes": (100_000, "classes"),
    "name": (255, "characters in a model name"),
    "checkpoint_bytes": (4 << 30, "bytes a checkpoint may expand to"),
    "image_pixels": (64_000_000, "pixels in one image"),
    "file_bytes": (64 << 20, "bytes in a manifest, journal or result file"),
    # above the zoo's largest default (VGG-19, 144 M): a builder option (width_mult=12: 323 M, 1.3 GB) is bounded
    "params": (200_000_000, "parameters in a model built from options"),
    "artifacts": (256, "artifacts in one manifest"),
    "artifact_bytes": (64 << 30, "bytes of all of a folder's artifacts together"),
    "run_seconds": (300, "seconds one artifact may run in its worker (check, bench, predict)"),
    "run_memory_bytes": (16 << 30, "bytes of address space one artifact's worker may map"),
}


def limit(name: str) -> int:
    """The limit ``name``: its default, or ``$EDGECNN_MAX_<NAME>`` where the user set one."""
    default = LIMITS[name][0]
    raw = os.environ.get(f"EDGECNN_MAX_{name.upper()}", "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"$EDGECNN_MAX_{name.upper()} must be a whole number, got {raw!r}") from None


def check_limit(name: str, value: int, what: str | None = None, error: type = ConfigError) -> int:
    """``value`` unless it is above the limit ``name``: then one line saying which and how to raise it."""
    cap = limit(name)
    if value > cap:
        raise error(f"{what or name.replace('_', ' ')} {value} is above edgecnn's limit of {cap} "
                    f"{LIMITS[name][1]}; set EDGECNN_MAX_{name.upper()} to raise it")
    return value


def open_regular(path: str | Path, what: str) -> int:
    """A read-only descriptor for ``path``, opened once: never through a symlink (``O_NOFOLLOW``), never
    blocking on a FIFO or a device (``O_NONBLOCK``), and refused unless ``fstat`` says a regular file.
    Everything about the file (its size, its hash, its bytes) is then read from this one descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ArtifactError(f"{what} {safe_text(path)} is a symbolic link; refused") from None
        raise ArtifactError(f"cannot read {what} {safe_text(path)} ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactError(f"{what} {safe_text(path)} is not a regular file; refused")
    return fd


def _read_all(fd: int, size: int, label: str) -> bytes:
    """Exactly ``size`` bytes from ``fd`` (one more byte read proves the file did not grow meanwhile)."""
    chunks, left = [], size
    while left > 0:
        block = os.read(fd, min(left, 1 << 24))
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    data = b"".join(chunks)
    if len(data) != size or os.read(fd, 1):
        raise ArtifactError(f"{label} changed size while it was read; refused")
    return data


def read_bounded(path: str | Path, what: str) -> str:
    """The text of a received file (manifest, journal, results), refusing one over the ``file_bytes`` limit
    or that is not a regular file, before reading it: one no-follow, non-blocking open, sized by fstat."""
    try:
        return _read_small(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ArtifactError(f"{what} {safe_text(path)} is corrupt (not UTF-8 text)") from None


def read_nofollow(path: str | Path, what: str) -> bytes | None:
    """The bytes of a file edgecnn keeps beside its artifacts (an engine's build record, a timing cache), read
    like :func:`read_bounded`; ``None`` when there is none."""
    return _read_small(path, what) if os.path.lexists(path) else None


def _read_small(path: str | Path, what: str) -> bytes:
    """The bytes of a file within the ``file_bytes`` limit: opened once (:func:`open_regular`), refused by its
    size before a byte is read."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        check_limit("file_bytes", size, f"{what} {clip(path)}: size", ArtifactError)
        return _read_all(fd, size, f"{what} {clip(path)}")
    except OSError as e:
        raise ArtifactError(f"cannot read {what} {clip(path)} ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)


def read_verified(path: str | Path, *, size: int, sha256: str | None, what: str) -> bytes:
    """The bytes of a received file that are what its record says: opened once (:func:`open_regular`), its
    size compared with ``size`` before a byte is read (a 200 GB sparse file is refused at once), then read
    and hashed from that descriptor. What is returned is what was hashed: load from it, never by path again.
    ``sha256=None``: size only (a caller that combines several files' hashes checks the combination)."""
    fd = open_regular(path, what)
    try:
        actual = os.fstat(fd).st_size
        if actual != size:
            raise ArtifactError(f"{what} {safe_text(path)} is {actual} bytes, not the {size} recorded; refused")
        data = _read_all(fd, size, f"{what} {safe_text(path)}")
    except OSError as e:
        raise ArtifactError(f"cannot read {what} {safe_text(path)} ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError(f"{what} {safe_text(path)}: sha256 differs from its record; refused")
    return data


def hash_bounded(path: str | Path, *, what: str, limit_name: str = "checkpoint_bytes") -> tuple[str, int]:
    """(sha256, size) of a file named by a received record, opened once like :func:`open_regular` and refused
    by its size (the limit ``limit_name``) before a byte is hashed."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        check_limit(limit_name, size, f"{what} {safe_text(path)}: size", ArtifactError)
        h, left = hashlib.sha256(), size
        while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
            h.update(block)
            left -= len(block)
        if left or os.read(fd, 1):  # fstat's size was not the file's (a /proc file says 0): refused
            raise ArtifactError(f"{what} {safe_text(path)} is not the size it says it is; refused")
        return h.hexdigest(), size
    except OSError as e:
        raise ArtifactError(f"cannot read {what} {safe_text(path)} ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)


def confined(root: Path, rel: object, what: str) -> Path:
    """``root / rel`` resolved, when ``rel`` is a relative path that stays inside ``root`` after every
    symlink and names a regular file (or nothing yet); otherwise :class:`ArtifactError` naming ``what``
    (a symlink loop or a path the system cannot resolve included).

    ``root`` is taken as given (the user chose it); everything below it came from a received file."""
    root = Path(root).resolve()
    if not isinstance(rel, str) or not rel or "\x00" in rel or Path(rel).is_absolute():
        raise ArtifactError(f"{what}: path {clip(repr(rel), 80)} is not a relative path inside {root}; refused")
    try:
        path = (root / rel).resolve()
        exists = os.path.lexists(path)
        regular = path.is_file()
    except (OSError, RuntimeError) as e:  # ELOOP (RuntimeError before Python 3.13), ENAMETOOLONG, EACCES
        why = "a symbolic link loop" if isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP \
            else (e.strerror or type(e).__name__)
        raise ArtifactError(f"{what}: path {clip(rel, 80)} cannot be resolved ({why}); refused") from None
    if path != root and root not in path.parents:
        raise ArtifactError(f"{what}: path {clip(rel, 80)} leads outside {root}; refused")
    if exists and not regular:
        raise ArtifactError(f"{what}: {clip(rel, 80)} is not a regular file; refused")
    return path


def own_dir(root: Path, name: str) -> Path:
    """The sub-folder ``name`` of an output folder, created fresh when absent; a symlink or a file there
    is refused (a write through it would land outside the folder)."""
    path = Path(root) / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ArtifactError(f"{path} is a symbolic link or not a folder; edgecnn never writes through one: "
                            "move it away or choose another --out")
    path.mkdir(exist_ok=True)
    if path.is_symlink():  # lost a race with whoever made it a link
        raise ArtifactError(f"{path} is a symbolic link; refused")
    return path


def finite(value: float, what: str, low: float, high: float) -> float:
    """``value`` when it is a finite number in [low, high]; else one line (NaN would switch a test off)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


# Anything outside printable ASCII is looked at: control characters (Cc: ESC, BEL, CR, backspace, DEL, C1),
# format characters (Cf: bidi overrides and isolates, zero-width spaces and joiners, U+2060, U+FEFF, the tag
# characters U+E0000-U+E007F, soft hyphen) and line/paragraph separators (Zl/Zp: U+2028, U+2029).
_SUSPECT = re.compile("[^\x20-\x7e\t\n]")
_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp"))
CLIP = 200  # characters of one piece of received text quoted in a message


def _escape(m: re.Match) -> str:
    ch = m.group()
    if unicodedata.category(ch) not in _INVISIBLE:
        return ch
    code = ord(ch)
    return repr(ch)[1:-1] if code < 0x80 else f"\\x{code:02x}" if code < 0x100 else \
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(text: object, *, newlines: bool = False) -> str:
    """``text`` with every control character, format character (bidi override, zero-width, tag character)
    and line/paragraph separator written as a visible escape (``\\x1b``, ``\\u202e``, ``\\u200b``), so
    received text cannot move the cursor, clear the screen, set a title, reorder a line or hide a part of
    itself. Tabs stay; newlines stay only with ``newlines``."""
    text = str(text)
    if not newlines:
        text = text.replace("\n", "\\n")
    return _SUSPECT.sub(_escape, text)


def clip(text: object, limit: int = CLIP) -> str:
    """Received text to quote in a one-line message: :func:`safe_text`, and at most ``limit`` characters
    (an ellipsis and the full length after a longer one), so a 30 MB name makes no 30 MB message."""
    text = str(text)
    if len(text) <= limit:
        return safe_text(text)
    return f"{safe_text(text[:limit])}... ({len(text):,} characters)"


def safe_tree(obj: object) -> object:
    """``obj`` (parsed JSON) with :func:`safe_text` applied to every string in it, keys included."""
    if isinstance(obj, str):
        return safe_text(obj)
    if isinstance(obj, list):
        return [safe_tree(v) for v in obj]
    if isinstance(obj, dict):
        return {safe_text(k) if isinstance(k, str) else k: safe_tree(v) for k, v in obj.items()}
    return obj


def markdown_cell(text: object) -> str:
    """Received text as one Markdown table cell: safe for the terminal, and no '|' or HTML tag breaks out."""
    return (safe_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|"))


def available_memory() -> int | None:
    """Bytes of memory this machine has free now (MemAvailable on Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, an array that would take more than half the memory free now
    (``$EDGECNN_MAX_MEMORY_FRACTION`` changes the half)."""
    free = available_memory()
    try:
        fraction = float(os.environ.get("EDGECNN_MAX_MEMORY_FRACTION", "0.5"))
    except ValueError:
        fraction = 0.5
    if free is not None and nbytes > free * fraction:
        raise ConfigError(f"{what} need {nbytes / 2**30:.1f} GiB, more than {fraction:.0%} of the "
                          f"{free / 2**30:.1f} GiB free; use fewer or smaller inputs (or set "
                          "EDGECNN_MAX_MEMORY_FRACTION)")
