"""fp32 ONNX -> an ONNX model that computes in fp16 (fp32 input/output kept, with casts).

This is what GPUs and strongly typed TensorRT networks want: the precision lives in the graph,
not in a builder flag. ONNX Runtime's converter keeps ops it knows to be unsafe in fp16 in fp32.
"""
from __future__ import annotations

from pathlib import Path

from ..artifact import Artifact, describe
from ..fileio import atomic_path


def convert_fp16(src: Artifact, dest: str | Path) -> Artifact:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(src.path)), keep_io_types=True, disable_shape_infer=False)
    wrapped = OnnxModel(model)
    wrapped.topological_sort()  # the converter appends its I/O casts at the end of the node list
    model = wrapped.model
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return describe(dest, stage="fp16", precision="fp16", parent=src.stage, notes="fp16 compute, fp32 I/O")
