"""Tiny ONNX models built with onnx.helper (no torch export): fast fixtures for unit tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.artifact import INPUT_NAME, OUTPUT_NAME, describe

SHAPE = (1, 2, 4, 4)  # N, C, H, W
CLASSES = 4


def conv_gemm_model(*, dtype: int = TensorProto.FLOAT, batch: int | str = 1, seed: int = 0) -> onnx.ModelProto:
    """input -> Conv (3x2x1x1, named 'conv') -> Relu -> GlobalAveragePool -> Flatten -> Gemm (transB) -> logits."""
    rng = np.random.default_rng(seed)
    npdt = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (3, SHAPE[1], 1, 1)).astype(npdt), "conv.w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (3,)).astype(npdt), "conv.b"),
        numpy_helper.from_array(rng.normal(0, 1, (CLASSES, 3)).astype(npdt), "fc.w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (CLASSES,)).astype(npdt), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "conv.w", "conv.b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], [OUTPUT_NAME], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info(INPUT_NAME, dtype, [batch, *SHAPE[1:]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, dtype, [batch, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: str | Path, *, stage: str = "export", precision: str = "fp32"):
    """Write ``model`` and return its Artifact."""
    onnx.save(model, str(path))
    return describe(path, stage=stage, precision=precision, parent=None)


def inputs(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)
