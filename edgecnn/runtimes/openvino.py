"""OpenVINO: IR (.xml/.bin) or ONNX, on CPU (GPU / NPU / AUTO where the plugins exist)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import hostinfo
from ..artifact import METADATA_KEYS, rt_info_path
from ..backends.openvino import AMX_HINT, AMX_REORDER, ov, plugin_precision, precision_hint
from ..errors import ArtifactError, ConfigError, backend_message
from ..timing import Throughput, summarize
from .base import Runtime


def compile_failure(e: BaseException, path, *, amx: bool | None = None) -> ArtifactError:
    """The one-line error for a model OpenVINO's CPU plugin read but could not compile."""
    msg = backend_message(e)
    amx = hostinfo.has_amx() if amx is None else amx
    hint = f" ({AMX_HINT})" if amx and AMX_REORDER in msg else ""
    return ArtifactError(f"OpenVINO could not compile {Path(str(path)).name}: {msg}{hint}")


class OpenVINORuntime(Runtime):
    name = "openvino"
    formats = ("openvino", "onnx")
    devices = ("cpu", "gpu", "npu", "auto")

    def _load(self) -> None:
        core = ov().Core()
        device = self.device.upper()
        if device != "AUTO" and device not in core.available_devices:
            raise ConfigError(f"OpenVINO has no {device} device here (available: {', '.join(core.available_devices)})")
        config: dict[str, object] = {"PERFORMANCE_HINT": self.mode.upper()}  # LATENCY | THROUGHPUT
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = precision_hint(core, self.precision)
        # A corrupt or truncated file fails here: "could not load". Verified bytes are read from memory.
        from_bytes = self.data and not (Path(self.path).suffix == ".onnx" and _external_data(self.data[0]))
        model = core.read_model(*self.data) if from_bytes else core.read_model(str(self.path))
        self._metadata = _rt_info(model)
        self._model = model  # as read: what executed() counts MACs on (compile leaves it as it is)
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as e:
            raise compile_failure(e, self.path) from None
        self.request = self.compiled.create_infer_request()
        self.plugin = plugin_precision(self.compiled)  # read back from the compiled model, never assumed
        shape = self.compiled.input(0).get_partial_shape()
        if self.input_shape is None and shape.is_static:
            self.input_shape = tuple(int(d) for d in shape.to_shape())

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()

    def streams(self) -> int:
        """What OpenVINO's own hint chose: its optimal number of infer requests in flight."""
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def throughput(self, x: np.ndarray, *, duration_s: float, warmup: int = 2) -> Throughput:
        """streams() asynchronous requests always in flight, as OpenVINO's benchmark_app runs them.

        Each request is waited for on this thread (``wait`` releases the GIL) and restarted at once; no
        Python callback runs on OpenVINO's threads. With ``AsyncInferQueue.set_callback`` a callback still
        finishing after ``wait_all`` needed the GIL while ``close`` held it to join those threads:
        measured (OpenVINO 2026.4, a loaded 2-core machine), ``bench --mode throughput`` then hung in close.
        Every request started is counted: the ones in flight at the deadline are waited for."""
        x = self._checked(x)
        for _ in range(warmup):
            self._run(x)
        streams = self.streams()
        requests = [self.compiled.create_infer_request() for _ in range(streams)]
        times: list[float] = []
        t0 = time.perf_counter()
        for request in requests:
            request.start_async({0: x})
        i = 0
        while True:
            request = requests[i % streams]
            request.wait()
            times.append(request.latency)  # ms, as benchmark_app reads it
            if time.perf_counter() - t0 >= duration_s:
                break
            request.start_async({0: x})
            i += 1
        for k in range(1, streams):  # the others still in flight
            request = requests[(i + k) % streams]
            request.wait()
            times.append(request.latency)
        elapsed = time.perf_counter() - t0
        del requests
        return Throughput(len(times) * x.shape[0] / elapsed, len(times), streams, elapsed,
                          summarize(times, batch=x.shape[0]))

    def _close(self) -> None:
        del self.request, self.compiled, self._model

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def executed(self) -> dict | None:
        """From the compiled model's runtime graph (no extra compile)."""
        from . import executed

        return executed.openvino_record(self.compiled.get_runtime_model(), self._model, precision=self.precision,
                                        hint=_type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")))

    def versions(self) -> dict[str, str]:
        return {"openvino": ov().get_version(), "inference_precision": self.plugin["inference_precision"]}

    def executed_precision(self) -> dict:
        """:func:`edgecnn.backends.openvino.plugin_precision` of the compiled model."""
        return dict(self.plugin)


def _type_name(t) -> str:
    """``f32``, ``bf16``: an OpenVINO element type as its short name."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def _rt_info(model) -> dict[str, str]:
    """edgecnn's metadata in an IR (``rt_info`` edgecnn/labels...) or in an ONNX file read by OpenVINO
    (its ONNX frontend keeps ``metadata_props`` under ``rt_info`` framework/<key>)."""
    found = {}
    for key in METADATA_KEYS:
        for path in (rt_info_path(key), ["framework", key]):
            if model.has_rt_info(path):
                found[key] = model.get_rt_info(path).astype(str)
                break
    return found


def _external_data(onnx_bytes: bytes) -> bool:
    """The ONNX model keeps weights in files beside it (a large export): OpenVINO reads those only from a path,
    so such a model is read from its path; its .onnx bytes were verified, the external files are confined to
    its folder by the ONNX frontend."""
    import onnx

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception:  # noqa: BLE001 - not parseable here: OpenVINO will say why when it reads the bytes
        return False
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
