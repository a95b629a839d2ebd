"""int8 weights of -128: a hazard for ARM and AVX2 kernels that edgecnn's own exports never carry.

ONNX Runtime's int8 kernels that add *pairs* of 8-bit products in a 16-bit lane go wrong on one value:
- ARM (measured, QEMU user mode, ONNX Runtime 1.32's aarch64 wheel): the S8S8 NEON GEMM kernel (Cortex-A72
  and every core without dot-product; u8 activations are flipped to s8 first) and the depthwise conv kernel
  (every ARM core: MLAS has no dot-product depthwise kernel) add two s8 x s8 products into an int16 lane;
  (-128) x (-128) + (-128) x (-128) = 32768 wraps to -32768. A weight of -128 against an activation code of
  -128 after the flip (u8 code 0: every zero after a ReLU) is enough.
- AVX2 without VNNI: VPMADDUBSW adds u8 x s8 pairs into a saturating int16, and -128 is the weight that
  saturates soonest (255 x -128 x 2 = -65280).
Quantizers that keep weights in [-127, 127] (ONNX Runtime's symmetric weights, which edgecnn uses; NNCF's
narrow-range weights) never produce it; PyTorch's observers (quint8/qint8, range [-128, 127]) and other
tools do. :func:`scan_minus128` finds it in any int8 ONNX model: an imported pre-quantized one included.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TARGETS = ("arm", "avx2")
REASON = ("int8 weights hold -128: on ARM, ONNX Runtime's S8S8 NEON kernels (cores without dot-product, "
          "e.g. Cortex-A72) and its depthwise kernels (every ARM core) add two s8 x s8 products in an int16 lane "
          "and (-128) x (-128) pairs wrap around; on AVX2 without VNNI, VPMADDUBSW saturates the u8 x s8 pair "
          "sums; re-quantize with weights in [-127, 127] (symmetric narrow range: what edgecnn's int8 exports use)")
# Where an ONNX int8 weight sits: (op, input index)
_WEIGHT_INPUTS = {("DequantizeLinear", 0), ("QLinearConv", 3), ("QLinearMatMul", 3), ("ConvInteger", 1),
                  ("MatMulInteger", 1), ("QGemm", 3)}


def minus128_in(model) -> dict | None:
    """The int8 weight initializers of ``model`` (an onnx.ModelProto) holding -128, or None when none does:
    ``{"tensors": n, "values": count, "names": [first 5], "targets": ["arm", "avx2"], "reason": ...,
    "unscanned": n}`` (``unscanned``: int8 weights stored outside the .onnx file, not read)."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    weights = {node.input[i] for node in model.graph.node for op, i in _WEIGHT_INPUTS
               if node.op_type == op and len(node.input) > i and node.input[i] in inits}
    hits: dict[str, int] = {}
    unscanned = 0
    for name in sorted(weights):
        t = inits[name]
        if t.data_type != onnx.TensorProto.INT8:
            continue
        if t.data_location == onnx.TensorProto.EXTERNAL:
            unscanned += 1
            continue
        n = int(np.count_nonzero(numpy_helper.to_array(t) == -128))
        if n:
            hits[name] = n
    if not hits:
        return None
    return {"tensors": len(hits), "values": sum(hits.values()), "names": list(hits)[:5], "targets": list(TARGETS),
            "reason": REASON, "unscanned": unscanned}


def scan_minus128(path: str | Path) -> dict | None:
    """:func:`minus128_in` of the ONNX file at ``path`` (external data not loaded); None for a file that is
    not a readable ONNX model (whoever runs it says why)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and onnx's own: the runtime reports the file
        return None
    return minus128_in(model)


def describe_minus128(found: dict, *, reason: bool = True) -> str:
    """One line: how many -128 weights, where, and (``reason``) why it matters on which targets."""
    where = ", ".join(found["names"]) + (", ..." if found["tensors"] > len(found["names"]) else "")
    return (f"flagged for {' and '.join(t.upper() for t in found['targets'])} targets: {found['values']} "
            f"weight value(s) of -128 in {found['tensors']} tensor(s) ({where})"
            + (f"; {found['reason']}" if reason else " (the reason: above)"))
