"""ONNX Runtime session options and sessions, for the runtime and for the int8 passes that run models."""
from __future__ import annotations

from pathlib import Path

# device -> execution providers to ask for, best first (CPU always last as the fallback).
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def session_options(threads: int | None, *, optimize: bool = True):
    """ONNX Runtime session options: quiet, ``threads`` intra-op threads, optionally no graph rewrites
    (exact Q/DQ arithmetic for analysis instead of fused int8 kernels)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: an error reaches the caller as an exception, said in one line
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return opts


def session(model_or_path, threads: int | None = None, *, optimize: bool = True, providers: list[str] | None = None,
            folder: str | Path | None = None):
    """An ONNX Runtime session for a ModelProto, a file's bytes or a file (CPU unless ``providers`` say otherwise).
    ``folder``: where a model given as bytes keeps its external data (weights saved beside a large model);
    ONNX Runtime reads them only from inside that folder."""
    import onnxruntime as ort

    src = (model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else
           model_or_path if isinstance(model_or_path, bytes) else str(model_or_path))
    opts = session_options(threads, optimize=optimize)
    if folder is not None and isinstance(src, bytes):
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    return ort.InferenceSession(src, opts, providers=providers or PROVIDERS["cpu"])
