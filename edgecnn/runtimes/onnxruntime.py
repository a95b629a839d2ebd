"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Runtime

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
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return opts


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx",)
    devices = tuple(PROVIDERS)

    def _load(self) -> None:
        import onnxruntime as ort

        if self.device not in PROVIDERS:
            raise ConfigError(f"onnxruntime device must be one of {', '.join(PROVIDERS)}, got '{self.device}'")
        wanted = PROVIDERS[self.device]
        if wanted[0] not in ort.get_available_providers():
            raise ConfigError(
                f"onnxruntime has no {wanted[0]} here (available: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu on a machine with CUDA"
            )
        self.session = ort.InferenceSession(str(self.path), sess_options=session_options(self.threads), providers=wanted)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        if self.input_shape is None and all(isinstance(d, int) for d in inp.shape):
            self.input_shape = tuple(inp.shape)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x.astype(self.input_dtype, copy=False)})[0]

    def _close(self) -> None:
        del self.session

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__}

    def provider(self) -> str | None:
        return self.session.get_providers()[0]
