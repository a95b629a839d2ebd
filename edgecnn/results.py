"""One typed result per artifact and runtime, shared by the export table, the manifest, check, bench and report.

The pass rule lives here, once: :attr:`ArtifactResult.ok` for one result, :func:`all_pass` for a set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from .parity import ParityResult
from .timing import Latency, Throughput


@dataclass
class ArtifactResult:
    artifact: str  # the artifact's key in its manifest (its stage), or "torch-eager"
    precision: str
    runtime: str | None = None
    parent: str | None = None
    parity: ParityResult | None = None  # against the PyTorch original (None: not compared, e.g. bench)
    latency: Latency | None = None
    accuracy: dict | None = None  # against true labels, where the images carry them
    error: str | None = None  # could not be built, loaded or run: a failure whatever the weights
    advisory: str | None = None  # shown, not judged (int8 on random weights), and why
    alternative: bool = False  # lost a selection to a working default: shown and kept, not deployed
    slower_than_fp32: float | None = None  # int8 p50 / fp32 p50 on the same runtime, when above the margin
    speedup: float | None = None  # bench: PyTorch eager p50 / this p50 (throughput: this img/s / eager's), same run
    speedup_vs_best_torch: float | None = None  # the same against the fastest PyTorch baseline of the run
    throughput: Throughput | None = None  # bench --mode throughput: images/s with every core busy
    batch: int | None = None  # the batch size it was run at (bench rows: one per batch)
    device: str | None = None
    info: dict = field(default_factory=dict)  # what ran it: runtime versions, provider, threads

    @property
    def ok(self) -> bool:
        """It ran, and its outputs match the original within tolerance (or it is advisory only)."""
        if self.error is not None:
            return False
        return self.parity is None or self.parity.passed or self.advisory is not None

    @property
    def verdict(self) -> str:
        """failed | pass | advisory | fail (alternative) | FAIL."""
        if self.error is not None:
            return "failed"
        if self.parity is None or self.parity.passed:
            return "pass"
        if self.advisory is not None:
            return "advisory"
        return "fail" if self.alternative else "FAIL"

    @classmethod
    def failed(cls, artifact: str, precision: str, error: str, **fields) -> "ArtifactResult":
        return cls(artifact=artifact, precision=precision, error=error, **fields)

    def to_dict(self) -> dict:
        d = asdict(self)
        # ``is not None``: a ParityResult is falsy when it fails, and a failing one must be kept.
        d["parity"] = self.parity.to_dict() if self.parity is not None else None
        d["latency"] = self.latency.to_dict() if self.latency is not None else None
        d["throughput"] = self.throughput.to_dict() if self.throughput is not None else None
        d["ok"] = self.ok
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactResult":
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        fields["parity"] = ParityResult.from_dict(d["parity"]) if d.get("parity") else None
        fields["latency"] = Latency.from_dict(d["latency"]) if d.get("latency") else None
        fields["throughput"] = Throughput.from_dict(d["throughput"]) if d.get("throughput") else None
        return cls(**fields)


def all_pass(results: Iterable[ArtifactResult]) -> bool:
    """Every deployable result is ok; losing alternatives are shown but do not decide."""
    return all(r.ok for r in results if not r.alternative)
