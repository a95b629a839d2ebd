"""The sample library a latency scenario draws its queries from (MLPerf's QuerySampleLibrary, in small).

Real preprocessed images, never one repeated tensor: the centre crop of each photo (the bundled held-out photos,
or ``--images DIR``), then random crops drawn with ``seed`` (:func:`edgecnn.data.evaluation_batch`). Its SHA-256
(shape and bytes) names it in the results, so ``edgecnn report`` compares only runs on the same samples.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..data import Preprocessing, evaluation_batch
from ..guard import safe_text

DEFAULT_SIZE = 32
DEFAULT_SEED = 1  # the crops' seed (evaluation_batch's default: the same held-out crops as check)


@dataclass(frozen=True)
class SampleLibrary:
    x: np.ndarray  # (n, C, H, W) float32
    source: str  # "bundled photos" or the folder given
    seed: int

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(repr(tuple(self.x.shape)).encode())
        h.update(np.ascontiguousarray(self.x, dtype=np.float32).tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def settings(self) -> dict:
        return {"library_size": len(self), "library_seed": self.seed, "library_sha256": self.sha256,
                "images": self.source}


def sample_library(prep: Preprocessing, *, n: int = DEFAULT_SIZE, folder=None, seed: int = DEFAULT_SEED
                   ) -> SampleLibrary:
    """``n`` preprocessed samples from the bundled photos or ``folder`` (an untrusted folder: unreadable files are
    named and skipped by :mod:`edgecnn.data`)."""
    x = evaluation_batch(prep, n, folder=folder, seed=seed)
    return SampleLibrary(x, "bundled photos" if folder is None else safe_text(str(folder)), seed)
