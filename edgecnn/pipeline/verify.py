"""The verifier of one export: the PyTorch original, its logits on held-out real photos, and the
result of every artifact measured against them."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..artifact import Artifact
from ..harness.check import evaluate_artifact
from ..results import ArtifactResult
from ..runtimes.torch import reference_logits


class Verifier:
    def __init__(self, model: torch.nn.Module, x: np.ndarray, *, batch: int, threads: int | None, latency: bool,
                 random_weights: bool) -> None:
        self.model, self.x = model, x
        self.batch, self.threads, self.latency, self.random_weights = batch, threads, latency, random_weights
        self.reference = reference_logits(model, x)
        self.results: dict[str, ArtifactResult] = {}
        self.seconds: dict[str, float] = {}  # artifact key -> wall time of its parity run and quick latency

    def evaluate(self, art: Artifact) -> ArtifactResult:
        """Parity and a quick latency of ``art`` on its own runtime; recorded under its key."""
        t0 = time.perf_counter()
        res = evaluate_artifact(art, self.x, self.reference, batch=self.batch, threads=self.threads,
                                latency=self.latency, random_weights=self.random_weights)
        self.seconds[art.key] = round(time.perf_counter() - t0, 3)
        self.results[art.key] = res
        return res

    def forget(self, art: Artifact) -> None:
        self.results.pop(art.key, None)

    def original_logits(self, x: np.ndarray) -> np.ndarray:
        return reference_logits(self.model, x)
