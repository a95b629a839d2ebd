"""The original: a PyTorch nn.Module in eval mode (CPU, or CUDA where present)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import Runtime, cuda_missing


@torch.inference_mode()
def reference_logits(model: torch.nn.Module, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """The original's fp32 logits for ``x``, computed in chunks (no batch-size effects on the result)."""
    return np.concatenate([model(torch.from_numpy(x[i: i + batch])).float().numpy() for i in range(0, len(x), batch)])


class TorchRuntime(Runtime):
    name = "torch"
    formats = ("torch",)
    devices = ("cpu", "cuda")

    def _load(self) -> None:
        if not isinstance(self.path, torch.nn.Module):
            raise TypeError("the torch runtime runs an nn.Module (the original model), not a file")
        if self.device == "cuda" and (why := cuda_missing()):
            raise ConfigError(why)
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model = self.path.eval().to(self.device)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.dtype is torch.float16:
            self.model = self.model.half()

    @torch.inference_mode()
    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self.model(torch.from_numpy(x).to(self.device, self.dtype))
        return y.float().cpu().numpy()

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["gpu"] = torch.cuda.get_device_name()
        return v
