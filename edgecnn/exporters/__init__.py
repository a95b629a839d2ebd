"""Exporters: every stage of the pipeline as a plain function (torch -> ONNX -> ... -> engine).

    from edgecnn.exporters import ExportConfig, run_export
    result = run_export(ExportConfig("mobilenet_v2", int8=True))
"""
from __future__ import annotations

from .artifact import Artifact, atomic_path
from .fp16 import convert_fp16
from .int8 import Int8Recipe, quantize_int8
from .manifest import Manifest
from .openvino import convert_ir, quantize_nncf
from .pipeline import ExportConfig, ExportResult, run_export
from .simplify import simplify_onnx
from .tensorrt import build_engine
from .torch_onnx import export_onnx

__all__ = ["Artifact", "ExportConfig", "ExportResult", "Int8Recipe", "Manifest", "atomic_path", "build_engine",
           "convert_fp16", "convert_ir", "export_onnx", "quantize_int8", "quantize_nncf", "run_export", "simplify_onnx"]
