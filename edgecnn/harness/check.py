"""edgecnn check: every artifact of an export against the PyTorch original, on real images."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..data import Preprocessing, evaluation_batch
from ..errors import EdgecnnError
from ..exporters.int8 import TENSORRT_STAGE
from ..manifest import Manifest
from ..parity import Tolerance, compare
from ..results import ArtifactResult, all_pass
from ..runtimes import availability, check_device, device_for, load
from ..runtimes.torch import reference_logits
from ..timing import measure
from .common import original_model, run_batched, runs_for
from .layers import localise

# Measured: a randomly initialised MobileNetV2 lands at int8 cosine ~0.97 whatever the recipe (minmax,
# percentile, entropy, 128 or 400 images): near-tied random logits flip. Its int8 figures are shown, not judged.
RANDOM_INT8_ADVISORY = "random weights: int8 fidelity is judged only with trained weights (--weights imagenet|PATH)"
# TensorRT's QDQ model is judged through its engine. On a CPU runtime its symmetric int8 runs on other kernels:
# measured, EfficientNet-Lite0 on AVX2 without VNNI, ONNX Runtime cosine 0.77 where exact Q/DQ arithmetic gives 0.998.
TENSORRT_QDQ_ADVISORY = ("made for TensorRT: judged through its engine (tensorrt-int8); this runtime's CPU int8 "
                         "kernels are not TensorRT's (AVX2 without VNNI saturates)")


def evaluate_artifact(art: Artifact, x: np.ndarray, reference: np.ndarray, *, batch: int = 1,
                      threads: int | None = None, latency: bool = True, runtime: str | None = None,
                      device: str | None = None, tolerance: Tolerance | None = None,
                      random_weights: bool = False) -> ArtifactResult:
    """Parity (and a quick latency) of one artifact on one runtime, on ``device`` (``None``: where that
    runtime runs by default: an engine on CUDA). A backend that fails is a failed result, not a crash.
    ``random_weights``: int8 results are advisory (shown, not judged)."""
    rt_name = runtime or art.runtime
    result = ArtifactResult(artifact=art.key, precision=art.precision, runtime=rt_name, parent=art.parent,
                            device=device)
    if random_weights and art.precision == "int8":
        result.advisory = RANDOM_INT8_ADVISORY
    elif art.key == TENSORRT_STAGE:
        result.advisory = TENSORRT_QDQ_ADVISORY
    name = art.key if runtime is None else f"{art.key}@{runtime}"
    try:
        result.device = device_for(rt_name, device)
        with load(art, runtime=runtime, threads=threads, device=result.device) as rt:
            out = run_batched(rt, x, batch)
            result.parity = compare(reference, out, name=name, precision=art.precision, tolerance=tolerance)
            if latency:
                result.latency = measure(rt.run, x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, 0),
                                         warmup=3, iterations=20)
            result.info = asdict(rt.info())
    except EdgecnnError as e:
        result.error = str(e)
    return result


@dataclass
class CheckReport:
    model: str
    out_dir: str
    n_images: int
    images: str
    results: list[ArtifactResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    layers: dict | None = None

    @property
    def passed(self) -> bool:
        return all_pass(self.results)

    def to_dict(self) -> dict:
        return {"model": self.model, "out_dir": self.out_dir, "n_images": self.n_images, "images": self.images,
                "results": [r.to_dict() for r in self.results], "skipped": self.skipped, "passed": self.passed,
                "layers": self.layers}


def check_dir(out_dir: str | Path, *, images: str | None = None, runtimes: tuple[str, ...] | None = None,
              n_images: int = 32, threads: int | None = None, tolerances: dict[str, Tolerance] | None = None,
              layers: bool = False, device: str | None = None) -> CheckReport:
    """Parity of every artifact in ``out_dir`` against the original.

    Every ONNX artifact runs on each requested runtime that reads ONNX (ONNX Runtime, OpenVINO);
    IR and engines run on their own runtime. Each runtime runs on ``device`` when one is given (those
    that cannot are skipped, with why), else on its default: engines on CUDA, the rest on the CPU.
    Losing alternatives are shown but do not decide ``passed``.
    """
    check_device(device)
    manifest = Manifest.load(out_dir)
    manifest.verify()  # a truncated or swapped file is named here, not reported as a parity failure
    prep = Preprocessing.from_dict(manifest.preprocessing)
    x = evaluation_batch(prep, n_images, folder=images)
    reference = reference_logits(original_model(manifest), x)
    batch = manifest.input_shape[0]
    alternatives = manifest.alternatives()
    report = CheckReport(model=manifest.model, out_dir=str(Path(out_dir).resolve()), n_images=len(x),
                         images=images or "bundled held-out photos")
    unavailable = availability()
    for art in manifest.artifacts:
        runs, skipped = runs_for(art, runtimes, device, unavailable)
        report.skipped += skipped
        for rt_name, rt_device in runs:
            res = evaluate_artifact(art, x, reference, batch=batch, threads=threads, runtime=rt_name, device=rt_device,
                                    latency=False, tolerance=(tolerances or {}).get(art.precision),
                                    random_weights=manifest.config.get("weights") is None)
            res.alternative = art.key in alternatives
            report.results.append(res)
    if layers:
        report.layers = localise(manifest, x[: min(len(x), 8)])
    return report
