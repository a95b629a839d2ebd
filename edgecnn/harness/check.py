"""edgecnn check: every artifact of an export against the PyTorch original, on real images."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .bench import measure
from .parity import Tolerance, compare


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
                      tolerance: Tolerance | None = None) -> dict:
    """Parity (and a quick latency) of one artifact. A backend that fails is a failed result, not a crash."""
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
