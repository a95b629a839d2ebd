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


def precision_hint(core, precision: str) -> str:
    """The ``INFERENCE_PRECISION_HINT`` edgecnn compiles an artifact of ``precision`` with on the CPU: OpenVINO's
    CPU plugin otherwise runs in bf16 wherever the CPU has AVX512-BF16 / AMX (8-bit mantissas, not what an fp32
    artifact promises) and in f16 on fp16-capable ARM cores; fp16 runs as fp16 only where the CPU computes it
    natively, else its fp16 weights are widened to f32. Shared by the runtime and the emulated ARM worker."""
    native_fp16 = "FP16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "f16" if precision == "fp16" and native_fp16 else "f32"


# Layers whose arithmetic the precision question is about (the runtime model's ``layerType``).
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "GEMM")
PRECISIONS = {"u8": "int8", "i8": "int8", "f16": "fp16", "bf16": "bf16", "f32": "fp32"}  # OpenVINO's -> ours


def node_precision(op) -> str:
    """The precision a runtime-model node computes in: its data input's (port 0), else its ``runtimePrecision``.
    Not ``runtimePrecision`` first: it is the widest of data *and weights*, so an fp16 IR run under the f32
    hint reads "f16" there while its kernel is ``brgconv_avx512_f32`` on f32 activations (measured, OpenVINO
    2026.4, AMD EPYC). One rule for the plugin's read-back and the execution record."""
    data = op.get_input_element_type(0).get_type_name() if op.get_input_size() else ""
    rt = op.get_rt_info()
    declared = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else ""
    return PRECISIONS.get(data) or PRECISIONS.get(declared.lower()) or declared or "?"


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
        name = node_precision(op)
        layers[name] = layers.get(name, 0) + 1
        if "primitiveType" in rt and rt["primitiveType"].astype(str).startswith("ref"):
            reference += 1
    hint = _text(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return {"inference_precision": hint, "compute_layers": layers, "reference_kernels": reference,
            "fp32_kept": hint == "f32" and not set(layers) - {"fp32", "int8"}}
