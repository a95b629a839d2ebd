"""edgecnn check: every artifact of an export against the PyTorch original, on real images."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .bench import measure
from .parity import Tolerance, compare

# Measured: a randomly initialised MobileNetV2 lands at int8 cosine ~0.97 whatever the recipe (minmax,
# percentile, entropy, 128 or 400 images): near-tied random logits flip. Its int8 figures are shown, not judged.
RANDOM_INT8_ADVISORY = "random weights: int8 fidelity is judged only with trained weights (--weights imagenet|PATH)"


@torch.inference_mode()
def reference_logits(model: torch.nn.Module, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """The original's fp32 logits, computed in chunks (no batch-size effects on the result)."""
    return np.concatenate([model(torch.from_numpy(x[i: i + batch])).float().numpy() for i in range(0, len(x), batch)])


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


def evaluate_artifact(art, x: np.ndarray, reference: np.ndarray, *, batch: int = 1, threads: int | None = None,
                      latency: bool = True, runtime: str | None = None, device: str = "cpu",
                      tolerance: Tolerance | None = None, random_weights: bool = False) -> dict:
    """Parity (and a quick latency) of one artifact. A backend that fails is a failed result, not a crash.

    ``random_weights``: int8 results are marked advisory (shown, not judged; see RANDOM_INT8_ADVISORY).
    """
    result = _evaluate(art, x, reference, batch=batch, threads=threads, latency=latency, runtime=runtime,
                       device=device, tolerance=tolerance)
    if random_weights and art.precision == "int8":
        result["advisory"] = RANDOM_INT8_ADVISORY
    return result


def _evaluate(art, x, reference, *, batch, threads, latency, runtime, device, tolerance) -> dict:
    from .. import runtimes
    from ..errors import EdgecnnError

    name = art.key if runtime is None else f"{art.key}@{runtime}"
    try:
        with runtimes.load(art, runtime=runtime, threads=threads, device=device) as rt:
            out = run_batched(rt, x, batch)
            parity = compare(reference, out, name=name, precision=art.precision, tolerance=tolerance)
            lat = measure(rt.run, x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, 0),
                          warmup=3, iterations=20) if latency else None
            info = asdict(rt.info())
    except EdgecnnError as e:
        return {"parity": {"passed": False, "failures": [str(e)], "cosine": float("nan"),
                           "top1_confident": float("nan")}, "latency": None, "error": str(e)}
    return {"parity": parity.to_dict(), "latency": lat.to_dict() if lat else None, "runtime": info}


def original_model(manifest):
    """Rebuild the PyTorch original an export was made from (same weights, classes and seed)."""
    from ..models import create_model

    cfg = manifest.config
    return create_model(manifest.model, weights=cfg.get("weights"), num_classes=cfg.get("num_classes"),
                        seed=cfg.get("seed", 0))


def check_dir(out_dir: str | Path, *, images: str | None = None, runtimes: tuple[str, ...] | None = None,
              n_images: int = 32, threads: int | None = None, tolerances: dict[str, Tolerance] | None = None,
              layers: bool = False) -> dict:
    """Parity of every artifact in ``out_dir`` against the original, and against its parent stage.

    Every ONNX artifact runs on each requested runtime that reads ONNX (ONNX Runtime, OpenVINO);
    IR and engines run on their own runtime. Returns a JSON-ready dict with ``passed``.
    """
    from ..data import Preprocessing, evaluation_batch
    from ..exporters.manifest import Manifest
    from ..runtimes import RUNTIMES, availability

    manifest = Manifest.load(out_dir)
    manifest.verify()  # a truncated or swapped file is named here, not reported as a parity failure
    prep = Preprocessing.from_dict(manifest.preprocessing)
    x = evaluation_batch(prep, n_images, folder=images)
    reference = reference_logits(original_model(manifest), x)
    batch = manifest.input_shape[0]
    avail = availability()
    rows, skipped = [], []
    for art in manifest.artifacts:
        for rt_name in _runtimes_for(art, runtimes, RUNTIMES):
            if avail.get(rt_name):
                skipped.append(f"{art.key}@{rt_name}: unavailable: {avail[rt_name]}")
                continue
            tol = (tolerances or {}).get(art.precision)
            res = evaluate_artifact(art, x, reference, batch=batch, threads=threads, runtime=rt_name,
                                    latency=False, tolerance=tol, random_weights=manifest.config.get("weights") is None)
            res.update(artifact=art.key, stage=art.stage, runtime=rt_name, precision=art.precision, parent=art.parent)
            rows.append(res)
    alternatives = manifest.alternatives()
    for r in rows:
        if r["artifact"] in alternatives:
            r["alternative"] = True
    passed = all("error" not in r and (r["parity"].get("passed") or r.get("advisory") or r.get("alternative"))
                 for r in rows)
    out = {"model": manifest.model, "out_dir": str(Path(out_dir).resolve()), "n_images": len(x),
           "images": images or "bundled held-out photos", "results": rows, "skipped": skipped, "passed": passed}
    if layers:
        from .layers import localise

        out["layers"] = localise(manifest, x[: min(len(x), 8)])
    return out


def _runtimes_for(art, wanted: tuple[str, ...] | None, registry) -> list[str]:
    names = [n for n in registry.names() if art.format in registry.get(n).formats]
    if art.runtime in names:  # the artifact's own runtime first
        names.remove(art.runtime)
        names.insert(0, art.runtime)
    return [n for n in names if wanted is None or n in wanted]
