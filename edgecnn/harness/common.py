"""What check and bench share: the original model behind an export folder, which runtimes read an
artifact and on which device, and feeding a fixed-batch artifact."""
from __future__ import annotations

import numpy as np
import torch

from ..artifact import Artifact
from ..errors import ConfigError
from ..exporters.graph import chunks
from ..manifest import Manifest
from ..models import create_model
from ..runtimes import RUNTIMES, device_for


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


def runs_for(art: Artifact, wanted: tuple[str, ...] | None, device: str | None,
             unavailable: dict[str, str | None]) -> tuple[list[tuple[str, str]], list[str]]:
    """(runtime, device) pairs to run ``art`` on, and the pairs left out with why.

    Each runtime runs on ``device`` when one is asked for, else on its own default (:func:`runtimes.device_for`):
    an engine on CUDA, the rest on the CPU. A runtime that cannot use the asked device is left out, not failed."""
    runs, skipped = [], []
    for name in runtimes_for(art, wanted):
        if unavailable.get(name):
            skipped.append(f"{art.key}@{name}: unavailable: {unavailable[name]}")
            continue
        try:
            runs.append((name, device_for(name, device)))
        except ConfigError as e:
            skipped.append(f"{art.key}@{name}: {e}")
    return runs, skipped


def run_batched(rt, x: np.ndarray, batch: int) -> np.ndarray:
    """Feed ``x`` in chunks of the artifact's batch size, padding the last chunk by repetition."""
    return np.concatenate([rt.run(chunk)[:n] for chunk, n in chunks(x, batch)])
