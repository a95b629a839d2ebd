"""The original: a PyTorch nn.Module in eval mode (CPU, or CUDA where present)."""
from __future__ import annotations

import copy

import numpy as np

from ..errors import ConfigError
from ..timing import BASELINES
from .base import Runtime, cuda_missing


def reference_logits(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """The original's fp32 logits for ``x``, computed in chunks (no batch-size effects on the result)."""
    import torch

    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x[i: i + batch])).float().numpy()
                               for i in range(0, len(x), batch)])


def baseline(model, name: str):
    """``model`` run the way the PyTorch baseline ``name`` runs it (eager, channels-last memory, or
    ``torch.compile`` with inductor on CPU: compiled at its first call, which needs a C++ compiler)."""
    if name == "eager":
        return model
    if name == "channels-last":
        return _channels_last(model)
    if name == "compile":
        import torch

        return torch.compile(model)
    raise ConfigError(f"unknown PyTorch baseline '{name}'; baselines are: {', '.join(BASELINES)}")


def _channels_last(model):
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # leave the original as it was

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x.contiguous(memory_format=torch.channels_last))

    return ChannelsLast(model)


class TorchRuntime(Runtime):
    name = "torch"
    formats = ("torch",)
    devices = ("cpu", "cuda")

    def _load(self) -> None:
        import torch

        if not isinstance(self.path, torch.nn.Module):
            raise TypeError("the torch runtime runs an nn.Module (the original model), not a file")
        if self.device == "cuda" and (why := cuda_missing()):
            raise ConfigError(why)
        self._threads_before = torch.get_num_threads()  # a process-wide setting: restored by close()
        if self.mode == "throughput":
            torch.set_num_threads(1)  # every request in flight runs on one thread, streams() of them at once
        elif self.threads:
            torch.set_num_threads(self.threads)
        self.model = self.path.eval().to(self.device)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.dtype is torch.float16:
            self.model = self.model.half()

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model(torch.from_numpy(x).to(self.device, self.dtype))
            return y.float().cpu().numpy()

    def _close(self) -> None:
        import torch

        torch.set_num_threads(self._threads_before)

    def versions(self) -> dict[str, str]:
        import torch

        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["gpu"] = torch.cuda.get_device_name()
        return v
