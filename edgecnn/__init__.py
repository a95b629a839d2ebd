"""edgecnn: export classic CNNs to ONNX / OpenVINO / TensorRT, quantize them, and prove parity."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "get_spec", "list_models"]


def __getattr__(name: str):
    # Lazy: `import edgecnn.runtimes` on a Jetson should not build the whole zoo registry.
    if name in ("create_model", "get_spec", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")
