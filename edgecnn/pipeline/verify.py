"""The verifier of one export: the original, its logits on held-out real images (and its accuracy where
they carry true labels), and the result of every artifact measured against them."""
from __future__ import annotations

import time

import numpy as np

from ..artifact import Artifact
from ..harness.check import evaluate_artifact
from ..harness.common import Original
from ..parity import accuracy
from ..results import ArtifactResult


class Verifier:
    def __init__(self, original: Original, x: np.ndarray, *, batch: int, threads: int | None, latency: bool,
                 random_weights: bool, tolerances: dict | None = None) -> None:
        self.original, self.x = original, x
        self.tolerances = tolerances or {}  # precision -> Tolerance replacing the default rule
        self.batch, self.threads, self.latency, self.random_weights = batch, threads, latency, random_weights
        self.reference = original.logits(x, threads=threads)
        self.targets: np.ndarray | None = None
        self.original_accuracy: dict | None = None
        self.results: dict[str, ArtifactResult] = {}
        self.seconds: dict[str, float] = {}  # artifact key -> wall time of its parity run and quick latency

    @property
    def model(self):
        """The original as a PyTorch module (what the export stage exports)."""
        return self.original.target

    def label(self, targets: np.ndarray | None) -> None:
        """True classes of the held-out images (indices into the outputs): accuracy is measured from now on."""
        self.targets = targets
        self.original_accuracy = accuracy(self.reference, targets) if targets is not None else None

    def evaluate(self, art: Artifact) -> ArtifactResult:
        """Parity, accuracy where labelled, and a quick latency of ``art`` on its own runtime; recorded under its key."""
        t0 = time.perf_counter()
        res = evaluate_artifact(art, self.x, self.reference, batch=self.batch, threads=self.threads,
                                latency=self.latency, random_weights=self.random_weights, targets=self.targets,
                                tolerance=self.tolerances.get(art.precision),
                                baseline=self.original_accuracy)
        self.seconds[art.key] = round(time.perf_counter() - t0, 3)
        self.results[art.key] = res
        return res

    def forget(self, art: Artifact) -> None:
        self.results.pop(art.key, None)

    def original_logits(self, x: np.ndarray) -> np.ndarray:
        return self.original.logits(x, threads=self.threads)
