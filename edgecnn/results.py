"""One typed result per artifact and runtime, shared by the export table, the manifest, check, bench and report.

The pass rule lives here, once: :attr:`ArtifactResult.ok` for one result, :func:`all_pass` for a set.
Every present artifact is judged from its own outputs. The labels a result carries ("advisory", "alternative",
"not judged") change how a row is shown; none of them lets an output below the floor (:func:`clears_floor`) pass,
and the artifact a user deploys (``deployed``) is judged against its full tolerance whatever its labels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from .parity import ParityResult
from .timing import Latency, Throughput


# The floor an advisory or "not judged" row must still clear: loose enough for a randomly initialised model's
# int8 (near-tied random logits flip), far above garbage (a wrong or permuted classifier: cosine -0.05 to 0.27,
# top-1 agreement 0%). Measured on the 32 bundled held-out photos, random init (seeds 0 and 1), int8 on ONNX
# Runtime, AMD EPYC (AVX-512 VNNI), 2026-12-07, cosine / top-1 agreement on all 32: MobileNetV2 0.970 / 69% and
# 0.970 / 63%, ShuffleNetV2 x1.0 0.982 / 59% and 0.981 / 59%, SqueezeNet 1.1 1.000 / 100% (both seeds). TensorRT's
# QDQ model (s8s8) on a CPU runtime ("not judged") scores lowest: EfficientNet-Lite0 with ImageNet weights on AVX2
# without VNNI, cosine 0.769 (ONNX Runtime) and 0.737 (OpenVINO), top-1 agreement 53% and 50% on the confident
# crops (benchmarks/results/int8_fidelity.md): the floor sits below that too, and far above garbage on both figures.
FLOOR_COSINE = 0.5
# An int8 artifact is flagged when less than this share of its multiply-adds ran in int8. A fully quantized
# CNN keeps only what its recipe leaves in float (the classifier, or an excluded stem: MobileNetV2's first conv
# is 3.6% of its MACs, its classifier 0.4%); a runtime that leaves a class of layers in float falls far below
# (x86 ONNX Runtime with the s8s8 preset, AMD EPYC with AVX-512 VNNI: MobileNetV2 68%, its 15 convs that share
# a tensor with a residual Add and the 10 Adds left between DQ and Q; benchmarks/results/int8_executed.md).
MIN_INT8_SHARE = 0.9
FLOOR_TOP1 = 0.2  # top-1 agreement with the original on every image (not only the confident ones)


def clears_floor(parity: ParityResult | None) -> bool:
    """Outputs that are at least not garbage (NaN-safe: a NaN figure does not clear it)."""
    return parity is not None and parity.cosine >= FLOOR_COSINE and parity.top1 >= FLOOR_TOP1


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
    advisory: str | None = None  # judged against the floor only (int8 on random weights), and why
    alternative: bool = False  # lost a selection to a working default: shown as such, judged like any other
    slower_than_fp32: float | None = None  # int8 p50 / fp32 p50 on the same runtime, when above the margin
    speedup: float | None = None  # bench: PyTorch eager p50 / this p50 (throughput: this img/s / eager's), same run
    speedup_vs_best_torch: float | None = None  # the same against the fastest PyTorch baseline of the run
    throughput: Throughput | None = None  # bench --mode throughput: images/s with every core busy
    batch: int | None = None  # the batch size it was run at (bench rows: one per batch)
    device: str | None = None
    info: dict = field(default_factory=dict)  # what ran it: runtime versions, provider, threads
    # made for another runtime (TensorRT's QDQ model on a CPU runtime): shown, not counted, never deployed;
    # it must still clear the floor
    not_judged: str | None = None
    deployed: bool = False  # what `predict` deploys on this runtime: judged against its full tolerance
    # peak resident-memory growth (MiB) of the worker process that loaded and ran it (check: at the check's batch;
    # bench: at the row's batch), from after importing the runtime's library: measured, None where not run in one
    peak_rss_mib: float | None = None
    # bench: the scenario it was measured under and its VALID/INVALID verdict with reasons, early-stopping estimate,
    # windows, output check and machine state (edgecnn.harness.scenario); None where no scenario ran
    scenario: dict | None = None
    # the execution record (runtimes/executed.py): {"macs": {"int8": 0.71, "fp16": 0.0, "bf16": 0.0, "fp32": 0.29},
    # "source": ..., "off_precision": [{"layer", "op", "macs", "ran"}...]}, read back from what the runtime compiled
    executed: dict | None = None
    # int8 ONNX weights of -128 (edgecnn.exporters.int8_range): {"tensors", "values", "names", "targets":
    # ["arm", "avx2"], "reason"}; a warning for those targets' kernels, never a verdict on the outputs seen here
    minus128: dict | None = None

    @property
    def int8_share(self) -> float | None:
        """The share of the model's MACs that ran in int8, where the runtime said."""
        macs = (self.executed or {}).get("macs")
        return macs.get("int8") if isinstance(macs, dict) and isinstance(macs.get("int8"), (int, float)) else None

    @property
    def low_int8(self) -> str | None:
        """An int8 artifact that ran less than :data:`MIN_INT8_SHARE` of its MACs in int8: why, with the layers
        (a flag like ``slower_than_fp32``, never part of the pass rule)."""
        share = self.int8_share
        if self.precision != "int8" or share is None or share >= MIN_INT8_SHARE:
            return None
        off = (self.executed or {}).get("off_precision")  # a received manifest's: any shape, read defensively
        off = [o for o in off if isinstance(o, dict)] if isinstance(off, list) else []
        mac_layers = [o for o in off if isinstance(o.get("macs"), (int, float)) and o["macs"] > 0]
        ops: dict[str, int] = {}
        for o in off:
            key = f"{str(o.get('op', '?')).split(' -> ')[-1]} in {o.get('ran', '?')}"
            ops[key] = ops.get(key, 0) + 1
        names = ", ".join(str(o.get("layer")) for o in sorted(mac_layers, key=lambda o: -o["macs"])[:3])
        return (f"only {share:.0%} of its MACs ran in int8 (< {MIN_INT8_SHARE:.0%}): "
                + ", ".join(f"{n} {k}" for k, n in ops.items()) + (f" (largest: {names})" if names else ""))

    @property
    def judged(self) -> bool:
        """Counted among the artifacts a pass is about (a check with none judged is an error, not a pass)."""
        return self.not_judged is None or self.deployed

    @property
    def ok(self) -> bool:
        """It ran, and its outputs match the original within tolerance; an advisory or not-judged row that is
        not the deployed one needs only to clear the floor (:func:`clears_floor`), which garbage never does."""
        if self.error is not None:
            return False
        if self.parity is None or self.parity.passed:
            return True
        return not self.deployed and (self.advisory is not None or self.not_judged is not None) \
            and clears_floor(self.parity)

    @property
    def verdict(self) -> str:
        """failed | not judged | pass | advisory | FAIL."""
        if self.error is not None:
            return "failed"
        if not self.judged and self.ok:
            return "not judged"
        if self.parity is None or self.parity.passed:
            return "pass"
        return "advisory" if self.ok else "FAIL"

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
        if self.low_int8:  # the flag, with its reason and layers, for readers of the JSON (derived: not read back)
            d["low_int8"] = self.low_int8
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactResult":
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        fields["parity"] = ParityResult.from_dict(d["parity"]) if d.get("parity") else None
        fields["latency"] = Latency.from_dict(d["latency"]) if d.get("latency") else None
        fields["throughput"] = Throughput.from_dict(d["throughput"]) if d.get("throughput") else None
        return cls(**fields)


def all_pass(results: Iterable[ArtifactResult]) -> bool:
    """Every result is ok, whatever its labels, and at least one is judged: a pass over nothing is no pass."""
    results = list(results)
    return any(r.judged for r in results) and all(r.ok for r in results)
