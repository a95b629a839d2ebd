"""OpenVINO's import, and what its CPU plugin is known to refuse."""
from __future__ import annotations

from typing import Any

from ..errors import MissingBackendError

# Seen on a 2-core Intel Xeon with AMX (OpenVINO 2026.4): the int8 QDQ ShuffleNet v1 g2, g3 x1.5 and g4 fail
# to compile with "No reorder available for the following tensor descriptors: abcde and aBDec16c64b4c"
# (oneDNN has no weight reorder into its AMX-blocked layout for those grouped int8 convolutions); the same
# models compile with AMX kernels disabled (ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI), and the NNCF-quantized IR
# of the same model compiles with AMX on. tests/test_openvino_amx.py holds the one-convolution reproducer.
AMX_REORDER = "No reorder available"
AMX_HINT = ("a known limit of OpenVINO's AMX int8 kernels for grouped convolutions; the NNCF route "
            "(openvino-int8-nncf) compiles, or start the process with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI "
            "to run without AMX")


def unavailable() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "the openvino package is not installed"
    return None


def ov() -> Any:
    """The ``openvino`` module, or :class:`MissingBackendError` naming the pip extra."""
    try:
        import openvino
    except ImportError:
        raise MissingBackendError("openvino", extra="openvino", reason="not installed") from None
    return openvino


# Layers whose arithmetic the precision question is about (the runtime model's ``layerType``).
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "GEMM")
_PRECISIONS = {"u8": "int8", "i8": "int8", "f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def _text(value) -> str:
    """An ``ov.Type`` (or OVAny) as OpenVINO spells it: f32, f16, bf16."""
    for attr in ("get_type_name", "astype"):
        if hasattr(value, attr):
            return value.get_type_name() if attr == "get_type_name" else value.astype(str)
    return str(value)


def plugin_precision(compiled) -> dict:
    """What the plugin actually runs a compiled model in, read back from it, not assumed from the config it was
    given: ``inference_precision`` (``INFERENCE_PRECISION_HINT`` as the compiled model reports it: f32, f16,
    bf16), ``compute_layers`` (its runtime model's convolution / fully-connected / MatMul layers counted by the
    precision of the kernel each runs: fp32, fp16, bf16, int8) and ``reference_kernels`` (how many of those run on
    OpenVINO's reference ``ref_*`` kernels: on ARM, convolutions with a non-zero activation zero point do, in f16
    even under an f32 hint). ``fp32_kept``: every compute layer that is not int8 ran in fp32."""
    layers: dict[str, int] = {}
    reference = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if "layerType" not in rt or rt["layerType"].astype(str) not in COMPUTE_LAYERS:
            continue
        precision = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"
        name = _PRECISIONS.get(precision.lower(), precision)
        layers[name] = layers.get(name, 0) + 1
        if "primitiveType" in rt and rt["primitiveType"].astype(str).startswith("ref"):
            reference += 1
    hint = _text(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return {"inference_precision": hint, "compute_layers": layers, "reference_kernels": reference,
            "fp32_kept": hint == "f32" and not set(layers) - {"fp32", "int8"}}
