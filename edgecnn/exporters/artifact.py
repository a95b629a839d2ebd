"""Artifact: one file (or IR pair) the pipeline produced, with where it came from."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

FORMATS = ("onnx", "openvino", "tensorrt")
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or (dest.suffix + ".tmp"), dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
