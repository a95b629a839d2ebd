"""Cross-layer equalisation (CLE) of a float ONNX model before int8 quantization.

Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction" (ICCV 2019):
for a Conv ``P`` whose output channel ``i`` feeds, through an optional Relu, only Convs ``C``
(pointwise -> depthwise, depthwise -> pointwise, squeeze -> expand), the model is unchanged by

    W_P[i] /= s_i,  b_P[i] /= s_i,  W_C[:, i] *= s_i        (s_i > 0, Relu(x / s) = Relu(x) / s)

and ``s_i = sqrt(r_P[i] / r_C[i])`` (``r``: the channel's largest |weight| in P's output channel, in
C's input channel) gives both the same range, so no channel of a depthwise filter bank is left with
a handful of int8 levels. Sweeps repeat it until chains (P -> C -> D) settle. The result is checked
against the original on calibration inputs and rejected (the original kept) if its outputs move.

Not crossed, on purpose:
- Clip(0, M) (ReLU6: MobileNetV2, EfficientNet-Lite) is not positively homogeneous: scaling moves
  its clip point to ``M * s_i``. Scaling only the channels whose calibration maximum stays below the
  clip was tried on EfficientNet-Lite0 (real weights): exact on the calibration photos, yet the fp32
  model's logits on held-out photos moved to cosine 0.967 (0.993 with a 4x margin, shrinking only):
  a calibration maximum is no bound. Those pairs are counted and left alone.
- channel shuffles (ShuffleNet v1) and hard-swish (MobileNetV3).
"""
from __future__ import annotations

import numpy as np

from .graph import attr, consumers, tensors_per_image

HOMOGENEOUS = ("Relu",)
MAX_DRIFT = 1e-5  # 1 - cosine between the equalised and the original model's outputs (float rounding only)


class _Pair:
    def __init__(self, producer, users) -> None:
        self.producer, self.users = producer, users
        self.total = None  # product of the scales applied so far (per channel)


def _const_conv(node, inits: dict, uses: dict) -> bool:
    """A Conv with constant weights (and bias) that it alone reads."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    params = [t for t in node.input[1:] if t]
    return all(t in inits and len(uses.get(t, [])) == 1 for t in params)


def find_pairs(model) -> tuple[list[_Pair], int]:
    """Every (Conv, optional Relu, Convs) chain that equalisation can scale exactly, and how many
    Conv -> Clip -> Conv chains (ReLU6, see the module docstring) were left alone."""
    inits = {i.name for i in model.graph.initializer}
    uses = consumers(model)
    outputs = {o.name for o in model.graph.output}
    pairs, clipped = [], 0
    for p in model.graph.node:
        if not _const_conv(p, inits, uses) or p.output[0] in outputs:
            continue
        nxt = uses.get(p.output[0], [])
        act = None
        if len(nxt) == 1 and nxt[0].op_type in HOMOGENEOUS + ("Clip",):
            act = nxt[0]
            if act.output[0] in outputs:
                continue
            nxt = uses.get(act.output[0], [])
        tensor = (act or p).output[0]
        if not nxt or not all(_const_conv(c, inits, uses) and c.input[0] == tensor for c in nxt):
            continue
        if act is not None and act.op_type == "Clip":
            clipped += 1
            continue
        pairs.append(_Pair(p, nxt))
    return pairs, clipped


def equalize(model, calibration: np.ndarray | None = None, *, sweeps: int = 8, threads: int | None = None):
    """An equalised copy of ``model`` (ONNX ModelProto, float) and a report of what was scaled.

    ``calibration`` (N, C, H, W): inputs to verify the result on (the first 8)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    pairs, clipped = find_pairs(m)
    report = {"pairs": len(pairs), "relu6_pairs_left": clipped, "equalised": 0, "sweeps": 0}
    if not pairs:
        return m, report

    arrays = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in m.graph.initializer}
    for p in pairs:
        p.total = np.ones(arrays[p.producer.input[1]].shape[0])

    def user_view(c) -> np.ndarray:
        """The consumer's weights as (group, Cout/group, Cin/group, kh, kw)."""
        w = arrays[c.input[1]]
        g = int(attr(c, "group", 1))
        return w.reshape(g, w.shape[0] // g, *w.shape[1:])

    def in_range(c) -> np.ndarray:  # largest |w| per input channel of the consumer, (Cin,)
        v = np.abs(user_view(c))
        return v.max(axis=(1, 3, 4)).reshape(-1)

    for sweep in range(sweeps):
        largest = 0.0
        for p in pairs:
            w_p = arrays[p.producer.input[1]]
            r1 = np.abs(w_p).reshape(w_p.shape[0], -1).max(axis=1)
            ranges = [in_range(c) for c in p.users]
            if any(r.shape != r1.shape for r in ranges):
                continue  # channel counts do not line up (should not happen in a valid graph)
            r2 = np.max(ranges, axis=0)
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
            p.total = p.total * s
            arrays[p.producer.input[1]] = w_p / s.reshape(-1, 1, 1, 1)
            if len(p.producer.input) > 2 and p.producer.input[2]:
                arrays[p.producer.input[2]] = arrays[p.producer.input[2]] / s
            for c in p.users:
                v = user_view(c)
                g, cin_g = v.shape[0], v.shape[2]
                v = v * s.reshape(g, 1, cin_g, 1, 1)
                arrays[c.input[1]] = v.reshape(arrays[c.input[1]].shape)
            largest = max(largest, float(np.max(np.abs(np.log(s)))))
        report["sweeps"] = sweep + 1
        if largest < 1e-3:
            break
    touched = set()
    for p in pairs:
        if np.any(np.abs(np.log(p.total)) > 1e-6):
            report["equalised"] += 1
            touched.update([p.producer.input[1], *p.producer.input[2:3], *(c.input[1] for c in p.users)])
    for init in m.graph.initializer:
        if init.name in touched:
            init.CopyFrom(numpy_helper.from_array(arrays[init.name].astype(np.float32), init.name))
    if calibration is not None and report["equalised"]:
        drift = _drift(model, m, calibration[: min(8, len(calibration))], threads)
        report["drift"] = drift
        if drift > MAX_DRIFT:
            report["rejected"] = f"outputs moved (1 - cosine {drift:.2e} > {MAX_DRIFT:g}); kept the original"
            return model, report
    return m, report


def _drift(original, equalised, x: np.ndarray, threads: int | None) -> float:
    """1 - the smallest per-input cosine between the two models' outputs."""
    out = original.graph.output[0].name
    worst = 0.0
    for (a,), (b,) in zip(tensors_per_image(original, [out], x, threads=threads),
                          tensors_per_image(equalised, [out], x, threads=threads)):
        a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
        cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
        worst = max(worst, 1.0 - cos)
    return worst


def summary(report: dict) -> str:
    """One line for an artifact's notes."""
    if "rejected" in report:
        return f"cross-layer equalisation rejected: {report['rejected']}"
    line = f"cross-layer equalisation: {report['equalised']} of {report['pairs']} conv pairs scaled"
    if report["relu6_pairs_left"]:
        line += f" ({report['relu6_pairs_left']} pairs through ReLU6 left alone)"
    return line
