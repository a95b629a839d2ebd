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
