"""Checkpoints: local files, downloads into a cache (hash-checked), installed weight packages.

Every load goes through ``torch.load(..., weights_only=True)``: a checkpoint that tries to run
code is refused, not executed.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from .errors import DownloadError, WeightsError
from .fileio import sha256_file
from .guard import check_limit
from .ledger import cache_dir  # noqa: F401  (one rule for the cache folder: weights and the local record)

DEFAULT_TIMEOUT_S = 30.0
# Prefixes that wrappers put in front of every key: DataParallel/DDP ('module.'), Lightning and most
# training loops ('model.', 'net.'), torch.compile ('_orig_mod.').
WRAPPER_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def offline() -> bool:
    """``$EDGECNN_OFFLINE`` set (1/true/yes): never download; use cached or installed weights only."""
    return os.environ.get("EDGECNN_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def download(url: str, *, sha256: str | None, dest_dir: str | Path | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, progress: bool = True) -> Path:
    """Fetch ``url`` into the cache, unless a verified copy is already there.

    The file streams into a temporary file beside its destination and is renamed into place only
    after its SHA-256 matches ``sha256`` (a full digest or a prefix, as torchvision names its
    files), so a partial or corrupt download is never used.
    """
    dest = cached(url, dest_dir=dest_dir)
    if dest.exists() and _hash_ok(dest, sha256):
        return dest
    dest_dir, name = dest.parent, dest.name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the weights cache {dest_dir}: {e.strerror}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, timeout=timeout, progress=progress)
        if not _hash_ok(Path(tmp), sha256):
            raise DownloadError(f"{url}: SHA-256 {sha256_file(tmp)[:16]}... does not match the expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def cached(url: str, *, dest_dir: str | Path | None = None) -> Path:
    """Where :func:`download` keeps ``url`` (it may not be there yet; :func:`is_cached` says)."""
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir() / "checkpoints"
    return dest_dir / (Path(urllib.parse.urlparse(url).path).name or "checkpoint.pth")


def is_cached(url: str, *, sha256: str | None) -> bool:
    path = cached(url)
    return path.is_file() and _hash_ok(path, sha256)


def _hash_ok(path: Path, sha256: str | None) -> bool:
    return sha256 is None or sha256_file(path).startswith(sha256.lower())


def _stream(url: str, out, *, timeout: float, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, Path(url).name) if progress else None
            try:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"could not download {url} ({reason}); if this machine is offline, download the file elsewhere "
            "and pass it with --weights PATH (or weights=PATH)"
        ) from None


def _progress_bar(total: int | None, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is a nicety, not a dependency
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (or a dict wrapping one under 'state_dict' / 'model' / 'model_state_dict') safely.

    Key prefixes that wrappers add ('module.', 'model.'...) are stripped by :func:`fit_keys` when the
    checkpoint meets the model it is loaded into."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    check_limit("checkpoint_bytes", expanded_size(path), f"checkpoint {path}: expanded size", WeightsError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's notes on pickle protocols: we say what matters
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{path} was refused: it is not a plain tensor checkpoint ({_refusal(e)[:160]}); "
                           "if you trust its source, re-save just its state_dict with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError, TypeError) as e:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}); "
                           "expected a file written by torch.save(model.state_dict(), PATH)") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    bad = next((k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise WeightsError(f"{path} holds NaN or infinite values (first in '{bad}'): the checkpoint is broken; "
                           "re-save it from a model that trained without diverging")
    return dict(obj)


def expanded_size(path: Path) -> int:
    """The bytes a checkpoint takes once read: a torch.save zip's entries uncompressed (from its directory,
    without inflating anything), else the file's size."""
    try:
        with zipfile.ZipFile(path) as z:
            return sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return path.stat().st_size


def fit_keys(state_dict: Mapping[str, torch.Tensor], own: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Strip the wrapper prefixes (:data:`WRAPPER_PREFIXES`, nested ones too) that every key of the
    checkpoint carries and the model's own keys do not. Training-loop state outside the prefix (a
    loss's buffers, an EMA copy under another name) is left for :func:`load_into` to name."""
    state = dict(state_dict)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)
                       and not all(k.startswith(p) for k in own)), None)
        if prefix is None:
            return state
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def head_classes(model: nn.Module, state_dict: Mapping[str, torch.Tensor], num_classes: int) -> int | None:
    """The class count of the checkpoint's head, where it differs from the model's ``num_classes`` and
    nowhere else: the tensors whose only difference is a leading dimension of ``num_classes`` (model)
    versus one common N (checkpoint). None when the checkpoint's head has the model's size, or the
    difference is not that simple (a head of another structure)."""
    own = model.state_dict()
    state = fit_keys(state_dict, own)
    if set(state) != set(own):
        return None
    counts = set()
    for key, value in own.items():
        theirs, ours = tuple(state[key].shape), tuple(value.shape)
        if theirs == ours:
            continue
        if not ours or ours[0] != num_classes or theirs[1:] != ours[1:] or not theirs:
            return None
        counts.add(theirs[0])
    return counts.pop() if len(counts) == 1 else None


def _refusal(e: Exception) -> str:
    """What the weights-only unpickler refused (e.g. 'Unsupported global: GLOBAL posix.system ...')."""
    text = str(e)
    _, _, detail = text.partition("WeightsUnpickler error:")
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in (detail or text).splitlines()
             if line.strip() and not line.strip().startswith(boilerplate)]
    return lines[0] if lines else "unsupported content"


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str,
              classes: tuple[int, int] | None = None) -> list[str]:
    """Strict load that names the first problem.

    ``classes=(in_checkpoint, in_model)``: tensors whose only difference is that leading
    dimension form the classifier head, which is left freshly initialised (transfer learning).
    Returns the keys of the skipped head.
    """
    own = model.state_dict()
    state_dict = fit_keys(state_dict, own)
    skipped = []
    for key, value in own.items():
        if key not in state_dict:
            raise WeightsError(f"{source} does not fit {type(model).__name__}: missing key '{key}'")
        theirs, ours = tuple(state_dict[key].shape), tuple(value.shape)
        if theirs != ours:
            if classes and theirs[1:] == ours[1:] and (theirs[:1], ours[:1]) == ((classes[0],), (classes[1],)):
                skipped.append(key)
                continue
            raise WeightsError(
                f"{source} does not fit this model: first mismatching key '{key}' has shape "
                f"{theirs} in the checkpoint, {ours} in the model"
            )
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: unexpected key '{extra[0]}'")
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in skipped}, strict=not skipped)
    return skipped
