"""edgecnn: export classic CNNs to ONNX / OpenVINO / TensorRT, quantize them, and prove parity.

The public entry points (each loaded on first use, so ``import edgecnn.runtimes`` on a Jetson does not
build the zoo or load the exporters):

    edgecnn.create_model(name, weights=..., num_classes=...)      # the zoo (edgecnn.models)
    edgecnn.run_export(edgecnn.ExportConfig(name, int8=True))     # the pipeline (edgecnn.pipeline)
    edgecnn.export(module, input_shape=..., preprocessing=..., labels=...)   # any model, from Python
    edgecnn.runtimes.load(path_or_artifact).run(batch)             # any artifact, one interface
    edgecnn.harness.check.check_dir(out_dir), edgecnn.harness.bench.bench_dir(out_dir)
    edgecnn.sweep(models, precisions=..., targets=..., devices=..., address=...)   # the matrix (edgecnn.matrix)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
_LAZY = {"create_model": "models", "get_spec": "models", "list_models": "models",
         "ExportConfig": "pipeline", "run_export": "pipeline", "export": "pipeline",
         "sweep": "matrix"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")
