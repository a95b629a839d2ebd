"""Localise a parity failure: per-layer error between the fp32 model and the int8 (QDQ) one.

ONNX Runtime's ``qdq_loss_debug`` does the work: it exposes every intermediate tensor of both
models, runs them on the same inputs and matches tensors by name. We rank layers by SQNR (the
lower, the worse) so the report names the layers that lose the signal.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..exporters.int8 import BatchReader, model_batch


def layer_errors(float_onnx: Path, qdq_onnx: Path, x: np.ndarray) -> list[dict]:
    from onnxruntime.quantization import qdq_loss_debug as dbg

    with tempfile.TemporaryDirectory(prefix="edgecnn-layers-") as work:
        fa, qa = Path(work) / "float.onnx", Path(work) / "qdq.onnx"
        dbg.modify_model_output_intermediate_tensors(str(float_onnx), str(fa))
        dbg.modify_model_output_intermediate_tensors(str(qdq_onnx), str(qa))
        batch = model_batch(float_onnx)  # a model exported with --batch N takes N inputs at a time
        float_act = dbg.collect_activations(str(fa), BatchReader(x, batch=batch))
        qdq_act = dbg.collect_activations(str(qa), BatchReader(x, batch=batch))
    matched = dbg.create_activation_matching(qdq_act, float_act)
    errors = dbg.compute_activation_error(matched)
    rows = [{"tensor": name, "sqnr_db": float(e["xmodel_err"]), "quant_sqnr_db": float(e["qdq_err"])}
            for name, e in errors.items() if "xmodel_err" in e]
    return sorted(rows, key=lambda r: r["sqnr_db"])


def localise(manifest, x: np.ndarray, worst: int = 10) -> dict:
    """For each int8 ONNX artifact: the ``worst`` layers by SQNR against its fp32 parent."""
    by_stage = {a.stage: a for a in manifest.artifacts}
    out = {}
    for art in manifest.artifacts:
        if art.format == "onnx" and art.precision == "int8" and art.parent in by_stage:
            rows = layer_errors(by_stage[art.parent].path, art.path, x)
            out[art.key] = {"against": art.parent, "layers": len(rows), "worst": rows[:worst]}
    if not out:
        out["note"] = "no int8 ONNX artifact with an fp32 parent in this folder: nothing to localise"
    return out
