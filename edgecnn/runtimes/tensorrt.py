"""TensorRT: runs a serialized engine (``model.<precision>.engine``) on an NVIDIA GPU.

Device memory and streams come from torch, a core dependency that already owns a CUDA context,
a caching allocator and streams; pycuda or cuda-python would be a second CUDA binding to install
and keep in step. Inputs are converted to the engine's input type on the GPU (an fp16 engine
built from an fp16-I/O ONNX takes half-precision input) and outputs come back as float32. There is
one execution context per runtime, so ``run`` holds a lock around it: threads sharing a runtime take
turns instead of overwriting each other's input shape and tensor addresses.

An engine only deserializes on the TensorRT version and GPU architecture that built it; the
build record beside it (see :mod:`edgecnn.backends.tensorrt`) is checked first so a mismatch
says what to do instead of failing inside TensorRT.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import tensorrt as backend
from ..backends.tensorrt import gpu_info, make_logger, read_sidecar
from ..errors import ArtifactError, ConfigError
from .base import Runtime


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    formats = ("tensorrt",)
    devices = ("cuda",)

    def _load(self) -> None:
        import torch  # imported on use: the ONNX Runtime / OpenVINO worker starts without it

        trt = backend.require()
        path = Path(self.path)
        self._device = torch.device("cuda", torch.cuda.current_device())
        self._host = gpu_info(self._device.index)
        _check_build_record(path, self._host)
        with torch.cuda.device(self._device):
            self._logger = make_logger(trt)
            self._trt_runtime = trt.Runtime(self._logger)
            self.engine = self._trt_runtime.deserialize_cuda_engine(self.data[0] if self.data else path.read_bytes())
            if self.engine is None:
                detail = self._logger.errors[-1] if self._logger.errors else "TensorRT returned no engine"
                raise ArtifactError(f"corrupt or incompatible engine {path.name}: {detail}")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise ArtifactError(f"could not create an execution context for {path.name} (out of GPU memory?)")
            self._stream = torch.cuda.Stream(device=self._device)
        self._input, self._output = _io_names(trt, self.engine)
        self._in_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self._input))
        self._out_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self._output))
        self._lock = threading.Lock()
        self._batch_range, opt_shape = _batch_range(self.engine, self._input)
        if self.input_shape is None:
            self.input_shape = opt_shape

    def _run(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self._batch_range
        if not lo <= x.shape[0] <= hi:
            raise ConfigError(f"batch {x.shape[0]} is outside what this engine was built for ({lo}..{hi}); "
                              "rebuild it with a dynamic batch range that covers it")
        with self._lock:  # the context holds the input shape and tensor addresses of one call at a time
            return self._execute(x)

    def _execute(self, x: np.ndarray) -> np.ndarray:
        import torch  # imported on use: the ONNX Runtime / OpenVINO worker starts without it

        ctx = self.context
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            inp = torch.from_numpy(x).to(self._device).to(self._in_dtype).contiguous()
            if ctx.set_input_shape(self._input, tuple(inp.shape)) is False:
                raise ConfigError(f"TensorRT rejected input shape {tuple(inp.shape)}")
            out = torch.empty(tuple(ctx.get_tensor_shape(self._output)), dtype=self._out_dtype, device=self._device)
            _bind(ctx, self._input, inp.data_ptr())
            _bind(ctx, self._output, out.data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                detail = self._logger.errors[-1] if self._logger.errors else "see the TensorRT log"
                raise ArtifactError(f"TensorRT could not execute {Path(self.path).name}: {detail}")
            result = out.float().cpu()  # queued on the same stream, after the engine
        self._stream.synchronize()
        return result.numpy()

    def _close(self) -> None:
        # The context must go before the engine, the engine before the runtime that made it.
        del self.context
        del self.engine
        del self._trt_runtime, self._stream

    def executed(self) -> dict | None:
        """From the engine inspector (full detail for engines built with ProfilingVerbosity.DETAILED, as
        edgecnn builds them)."""
        import tensorrt as trt

        from . import executed

        inspector = self.engine.create_engine_inspector()
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return executed.tensorrt_record(text, precision=self.precision,
                                        source=f"tensorrt {self._host['tensorrt']} engine inspector")

    def versions(self) -> dict[str, str]:
        import torch  # imported on use: the ONNX Runtime / OpenVINO worker starts without it

        return {"tensorrt": self._host["tensorrt"], "cuda": torch.version.cuda or "", "gpu": self._host["gpu"]}


def _check_build_record(path: Path, here: dict[str, str]) -> None:
    """Refuse an engine whose record names another TensorRT version or GPU architecture."""
    meta = read_sidecar(path)
    if meta is None:  # an engine from elsewhere: TensorRT itself will say whether it fits
        return
    built = (meta.get("tensorrt", "?"), meta.get("compute_capability", "?"))
    now = (here["tensorrt"], here["compute_capability"])
    if built != now:
        raise ArtifactError(
            f"{path.name}: engine built with TensorRT {built[0]} for {built[1]}; this machine has TensorRT "
            f"{now[0]} / {now[1]}; rebuild it with edgecnn export <model> --targets tensorrt")


def _bind(ctx: Any, name: str, address: int) -> None:
    """Point tensor ``name`` at ``address``; TensorRT says False (not an exception) when it refuses."""
    if not ctx.set_tensor_address(name, address):
        raise ArtifactError(f"TensorRT refused the device address of tensor '{name}' (misaligned or not an I/O tensor)")


def _io_names(trt: Any, engine: Any) -> tuple[str, str]:
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(f"expected an engine with one input and one output, got {inputs} and {outputs}")
    return inputs[0], outputs[0]


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch  # imported on use: the ONNX Runtime / OpenVINO worker starts without it

    try:
        return torch.from_numpy(np.empty(0, dtype=trt.nptype(dtype))).dtype
    except TypeError:
        raise ArtifactError(f"engine I/O type {dtype} is not supported (expected float32 or float16)") from None


def _batch_range(engine: Any, name: str) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(smallest, largest) batch the engine accepts, and the shape it was optimised for."""
    shape = tuple(engine.get_tensor_shape(name))
    if all(d >= 0 for d in shape):
        return (shape[0], shape[0]), shape
    lo, opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
    return (lo[0], hi[0]), opt
