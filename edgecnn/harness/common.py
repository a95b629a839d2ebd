"""What check and bench share: the original model behind an export folder, which runtimes read an
artifact, and feeding a fixed-batch artifact."""
from __future__ import annotations

import numpy as np
import torch

from ..artifact import Artifact
from ..manifest import Manifest
from ..models import create_model
from ..runtimes import RUNTIMES


def original_model(manifest: Manifest) -> torch.nn.Module:
    """Rebuild the PyTorch original an export was made from (same weights, classes and seed)."""
    cfg = manifest.config
    return create_model(manifest.model, weights=cfg.get("weights"), num_classes=cfg.get("num_classes"),
                        seed=cfg.get("seed", 0))


def runtimes_for(art: Artifact, wanted: tuple[str, ...] | None) -> list[str]:
    """The runtimes that read ``art``'s format (its own first), limited to ``wanted``."""
    names = [n for n in RUNTIMES.names() if art.format in RUNTIMES.get(n).formats]
    if art.runtime in names:
        names.remove(art.runtime)
        names.insert(0, art.runtime)
    return [n for n in names if wanted is None or n in wanted]


def run_batched(rt, x: np.ndarray, batch: int) -> np.ndarray:
    """Feed ``x`` in chunks of the artifact's batch size, padding the last chunk by repetition."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        outs.append(rt.run(chunk)[:n])
    return np.concatenate(outs)
