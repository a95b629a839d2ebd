"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends.onnxruntime import PROVIDERS, session, session_options
from ..errors import ConfigError
from .base import Runtime

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
        # Throughput mode: every request in flight runs on one intra-op thread (streams() of them at once).
        self._threads = 1 if self.mode == "throughput" else self.threads
        self._model = self.data[0] if self.data else None  # the verified bytes, kept for executed()
        self.session = session(self._model or self.path, self._threads, providers=wanted, folder=Path(self.path).parent)
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

    def executed(self) -> dict | None:
        """One extra session with this one's options and providers writes its optimized model; read back."""
        from . import executed

        model = self._model if self._model is not None else Path(self.path).read_bytes()
        opts = session_options(self._threads)
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(Path(self.path).parent))
        return executed.onnxruntime_record(model, options=opts, providers=self.session.get_providers(),
                                           precision=self.precision)

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)
