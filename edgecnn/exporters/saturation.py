"""Where a U8S8 QDQ model saturates on x86 AVX2 without VNNI, and what that does to its outputs.

The mechanism: ONNX Runtime's MLAS U8S8 kernels on AVX2 (QGEMM and the ConvSym indirect
convolution) multiply uint8 activations by int8 weights with ``VPMADDUBSW``, which adds each pair
of adjacent u8 x s8 products into a *saturating* int16 before ``VPMADDWD`` widens to int32. A pair
``a0*w0 + a1*w1`` beyond [-32768, 32767] is clipped. ``a`` is the raw uint8 code (the activation
zero point is folded into the bias), so a pair of same-sign weights with ``|w0| + |w1| >= 129``
can saturate once both codes are large. 7-bit weights (|w| <= 64) never can: 255 * 128 < 32767.
VNNI (``VPDPBUSD`` adds four products in int32), AMX and ARM dot-product kernels do not saturate.

Pairs, as MLAS packs them (the assumption every figure here rests on):
- Conv: per group, the reduction axis is ordered (kh, kw, c) (``ReorderFilter``: kernel position
  outer, input channel inner), and elements (2i, 2i+1) of that order form a pair, the last one
  padded with zero when the length is odd. With an even channel count a pair is two consecutive
  input channels at the same kernel position; with an odd one (an RGB stem) pairs straddle kernel
  positions. Padding contributes the zero-point code.
- Gemm: consecutive input features.
- Depthwise Conv (group == channels, one input channel per group): not analysed. MLAS widens to
  32 bits first (``vpmovzxbd``/``vpmovsxbd`` + ``vpmaddwd`` in ``ConvSymDepthwiseKernelAvx2``; the
  generic ``MlasConvDepthwise`` accumulates in int32), so no pair reaches an int16.

Evidence. This cannot be observed by running ONNX Runtime on a VNNI (or AMX, or ARM) machine:
its kernels there accumulate in int32. What this module offers instead is an *emulation*: the QDQ
model is run in float (graph optimisations off: exact Q/DQ arithmetic) with, for every quantized
Conv/Gemm, a side branch that recomputes each pair that can saturate from the raw uint8 codes, and
adds ``scale_a * scale_w * (clip(p, int16) - p)`` to the layer's output. Without the branch the
result matches ONNX Runtime's int8 kernels on VNNI (lite0 without bias correction: cosine 0.9953
both); with it, what AVX2 without VNNI computes. Checked against real AVX2 kernels on an AMD EPYC
Zen 3 (AVX2, no VNNI), natively and under ``qemu-x86_64 -cpu Haswell`` (tests/test_avx2_kernels.py):
ONNX Runtime's kernels and this emulation give per-crop cosines >= 0.9987 on EfficientNet-Lite0, and
both reproduce the u8s8 loss (0.922) and the saturation-aware recovery (0.998). OpenVINO's CPU plugin
saturates too: on one grouped 1x1 convolution exactly as emulated here (tests/test_openvino_amx.py),
on the whole of Lite0 only approximately (its kernels pair some inputs differently), so the emulation
is ONNX Runtime's.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .graph import attr, collect, logits

INT16_MIN, INT16_MAX = -32768, 32767
U8_MAX = 255


@dataclass
class QLayer:
    """A quantized Conv/Gemm of a QDQ model: int8 weights, uint8 input codes and their parameters."""

    node: str
    op: str
    output: str
    act_codes: str  # the QuantizeLinear output (uint8 codes) feeding this layer
    a_scale: float
    a_zp: int
    w_q: np.ndarray  # int8 weights as (Cout, Cin/group, kh, kw)
    w_scale: np.ndarray  # (Cout,)
    bias: np.ndarray | None
    group: int = 1
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)

    @property
    def depthwise(self) -> bool:
        return self.group > 1 and self.w_q.shape[1] == 1 and self.w_q.shape[0] == self.group

    def flat_weights(self) -> np.ndarray:
        """(group, Cout/group, K) int32, K ordered (kh, kw, c) as MLAS packs it."""
        cout, cg, kh, kw = self.w_q.shape
        w = self.w_q.astype(np.int32).transpose(0, 2, 3, 1).reshape(cout, kh * kw * cg)
        return w.reshape(self.group, cout // self.group, -1)

    def risky_pairs(self) -> dict[str, np.ndarray]:
        """Every pair that saturates for SOME uint8 input (same sign, 255 * (|w0|+|w1|) out of int16)."""
        w = self.flat_weights()
        if w.shape[2] % 2:
            w = np.concatenate([w, np.zeros(w.shape[:2] + (1,), np.int32)], axis=2)
        w0, w1 = w[:, :, 0::2], w[:, :, 1::2]
        risky = ((w0 > 0) & (w1 > 0) & (U8_MAX * (w0 + w1) > INT16_MAX)) | \
                ((w0 < 0) & (w1 < 0) & (U8_MAX * (w0 + w1) < INT16_MIN))
        g, o, i = np.nonzero(risky)
        per_group = w.shape[1]
        return {"group": g, "oc": g * per_group + o, "k0": 2 * i, "k1": 2 * i + 1,
                "w0": w0[g, o, i], "w1": w1[g, o, i], "n_pairs": int(w0.size)}


# ---- reading a QDQ model ---------------------------------------------------------------
def quantized_layers(model) -> list[QLayer]:
    """The Conv/Gemm nodes whose input and weight both come from DequantizeLinear (uint8 x int8)."""
    from onnx import numpy_helper

    init = {i.name: i for i in model.graph.initializer}
    arr = lambda name: numpy_helper.to_array(init[name])  # noqa: E731
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = []
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
            continue
        adq, wdq = producer.get(n.input[0]), producer.get(n.input[1])
        if not (adq and wdq and adq.op_type == wdq.op_type == "DequantizeLinear" and wdq.input[0] in init):
            continue
        if adq.input[0] in init or len(adq.input) < 3 or adq.input[2] not in init:
            continue
        zp = arr(adq.input[2])
        w_q = arr(wdq.input[0])
        if zp.dtype != np.uint8 or w_q.dtype != np.int8:
            continue  # only U8S8 runs through VPMADDUBSW
        w_scale = arr(wdq.input[1]).astype(np.float64).ravel()  # one per output channel, or one
        bias = None
        if len(n.input) > 2 and n.input[2]:
            b = producer.get(n.input[2])
            if b is not None and b.op_type == "DequantizeLinear" and b.input[0] in init:
                bias = arr(b.input[0]).astype(np.float64) * arr(b.input[1]).astype(np.float64)
            elif n.input[2] in init:
                bias = arr(n.input[2]).astype(np.float64)
        common = dict(node=n.name, op=n.op_type, output=n.output[0], act_codes=adq.input[0],
                      a_scale=float(arr(adq.input[1])), a_zp=int(zp), bias=bias)
        if n.op_type == "Gemm":
            if attr(n, "transA", 0) or attr(n, "alpha", 1.0) != 1.0:
                continue
            w = w_q if attr(n, "transB", 0) else w_q.T
            w_q4 = w[:, :, None, None]
        else:
            if w_q.ndim != 4 or attr(n, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue  # 2-D convolutions with explicit pads only
            w_q4 = w_q
            pads = tuple(attr(n, "pads", [0, 0, 0, 0]))
            common.update(group=int(attr(n, "group", 1)), strides=tuple(attr(n, "strides", [1, 1])),
                          pads=(pads[0], pads[1], pads[2], pads[3]), dilations=tuple(attr(n, "dilations", [1, 1])))
        scale = np.broadcast_to(w_scale, (w_q4.shape[0],)).copy()
        layers.append(QLayer(w_q=w_q4, w_scale=scale, **common))
    return layers


def _layer_inputs(model, layers: list[QLayer], x: np.ndarray, threads: int | None) -> dict[str, np.ndarray]:
    """The uint8 codes entering every layer, from the float-simulated QDQ model (batch 1 at a time)."""
    import onnx

    names = list(dict.fromkeys(layer.act_codes for layer in layers))
    return collect(model, names, x, threads=threads, elem_type=onnx.TensorProto.UINT8)


def _columns(layer: QLayer, codes: np.ndarray) -> np.ndarray:
    """im2col of uint8 codes: (N, group, K, L) int32, K ordered (kh, kw, c), padding = zero-point code."""
    if codes.ndim == 2:
        codes = codes[:, :, None, None]
    n, c, h, w = codes.shape
    cout, cg, kh, kw = layer.w_q.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = layer.strides, layer.dilations, layer.pads
    x = np.pad(codes, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=layer.a_zp) if any(layer.pads) else codes
    oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    taps = [x[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]
    cols = np.stack(taps, axis=1).reshape(n, kh * kw, layer.group, cg, oh * ow)  # (N, T, G, cg, L)
    return cols.transpose(0, 2, 1, 3, 4).reshape(n, layer.group, kh * kw * cg, oh * ow).astype(np.int32)


def analyse_layer(layer: QLayer, codes: np.ndarray, *, detail: bool = True) -> dict:
    """Worst cases and measured saturation of one layer on ``codes`` (its uint8 inputs).

    ``detail=False`` skips what only a report needs (the layer's signal and the 7-bit rounding noise of
    channels that never saturate: the two largest matmuls) and leaves out ``sqnr_db`` and
    ``reduce_range_sqnr_db``; ``harmful_channels`` is the same either way."""
    row = {"node": layer.node, "op": layer.op, "weight_shape": list(layer.w_q.shape), "depthwise": layer.depthwise,
           "activation_zero_point": layer.a_zp}
    if layer.depthwise:
        return {**row, "pairs": 0, "risky_pairs": 0, "static_worst": 0.0, "observed_worst": 0.0,
                "saturated_fraction": 0.0, "outputs_hit": 0.0, "sqnr_db": float("inf"),
                "reduce_range_sqnr_db": float("inf"), "can_saturate": False, "observed_can_saturate": False,
                "saturates": False, "harmful": False, "harmful_channels": []}
    rp = layer.risky_pairs()
    cols = _columns(layer, codes)  # (N, G, K, L)
    g, k0, k1, w0, w1 = rp["group"], rp["k0"], rp["k1"], rp["w0"], rp["w1"]
    k_total = cols.shape[2]
    kk1 = np.minimum(k1, k_total - 1)
    valid1 = k1 < k_total
    # Worst case over the per-position code ranges seen on the calibration data.
    lo, hi = cols.min(axis=(0, 3)), cols.max(axis=(0, 3))  # (G, K)
    def extreme(f):  # noqa: E306
        a = f(w0 * lo[g, k0], w0 * hi[g, k0])
        b = np.where(valid1, f(w1 * lo[g, kk1], w1 * hi[g, kk1]), 0)
        return a + b
    observed = np.maximum(extreme(np.maximum), -extreme(np.minimum)) if len(g) else np.zeros(0)
    # Measured: the risky pairs on every position of every image.
    p = w0[None, :, None] * cols[:, g, k0] + np.where(valid1, w1, 0)[None, :, None] * cols[:, g, kk1]
    err = np.clip(p, INT16_MIN, INT16_MAX) - p  # (N, P, L) int32: exact, |p| <= 2 * 255 * 128
    cout = layer.w_q.shape[0]
    acc_err = np.zeros((cols.shape[0], cout, cols.shape[3]))
    if len(g):
        order = np.argsort(rp["oc"], kind="stable")
        oc_sorted = rp["oc"][order]
        starts = np.flatnonzero(np.r_[True, oc_sorted[1:] != oc_sorted[:-1]])
        acc_err[:, oc_sorted[starts]] = np.add.reduceat(err[:, order], starts, axis=1, dtype=np.int64)
    step = layer.a_scale * layer.w_scale  # (Cout,): accumulator units -> output units
    noise_c = ((acc_err * step[None, :, None]) ** 2).sum(axis=(0, 2))
    centered = (cols - layer.a_zp).astype(np.float32)
    w = layer.flat_weights().astype(np.float32)  # (G, O, K)
    # A channel is harmful when saturation costs it more than 7-bit weights would: only channels that
    # saturate at all can be, so the rounding noise is computed for those alone.
    hit = np.flatnonzero(noise_c > 0)
    noise7_c = _seven_bit_noise(w, centered, step, np.arange(cout) if detail else hit)
    harmful = hit[noise_c[hit] > (noise7_c[hit] if detail else noise7_c)]
    row.update({"pairs": rp["n_pairs"], "risky_pairs": int(len(g)),
                "static_worst": float(U8_MAX * np.max(np.abs(w0) + np.abs(w1)) / INT16_MAX) if len(g) else 0.0,
                "observed_worst": float(observed.max() / INT16_MAX) if len(g) else 0.0,
                "saturated_fraction": float(np.count_nonzero(err) / (rp["n_pairs"] * err.shape[0] * err.shape[2])),
                "outputs_hit": float(np.count_nonzero(acc_err) / acc_err.size),
                "can_saturate": bool(len(g)), "observed_can_saturate": bool(len(g) and observed.max() > INT16_MAX),
                "saturates": bool(len(hit)), "harmful": bool(len(harmful)), "harmful_channels": harmful.tolist()})
    if not detail:
        return row
    # The layer's output (dequantized accumulator + bias) as the signal.
    acc = np.matmul(w[None], centered).reshape(cols.shape[0], cout, -1)
    y = acc * step[None, :, None] + (layer.bias[None, :, None] if layer.bias is not None else 0.0)
    signal = float(np.sum(y ** 2))
    return {**row, "sqnr_db": _db(signal, float(noise_c.sum())), "reduce_range_sqnr_db": _db(signal, float(noise7_c.sum()))}


def _seven_bit_noise(w: np.ndarray, centered: np.ndarray, step: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Energy of the error 7-bit weights (codes re-rounded to scale x 127/64) would add to each of
    ``channels``' outputs on ``centered`` (the layer's columns minus the zero point, (N, G, K, L));
    ``w``: the layer's 8-bit weight codes as float32, (G, O, K)."""
    per_group = w.shape[1]
    delta = (np.round(w * (64 / 127)) * (127 / 64) - w).astype(np.float32).reshape(-1, w.shape[2])  # (Cout, K)
    out = np.zeros(len(channels))
    groups = channels // per_group
    for gi in np.unique(groups):
        mask = groups == gi
        sel = channels[mask]
        e = np.matmul(delta[sel], centered[:, gi]) * step[sel][None, :, None]  # (N, len(sel), L)
        out[mask] = (e.astype(np.float64) ** 2).sum(axis=(0, 2))
    return out


def _db(signal: float, noise: float) -> float:
    return float(10 * np.log10(signal / noise)) if noise > 0 else float("inf")


def analyse(qdq_onnx: str | Path, calibration: np.ndarray, *, max_images: int = 8,
            threads: int | None = None, detail: bool = True) -> list[dict]:
    """Every quantized Conv/Gemm of a U8S8 QDQ model: can it saturate, and how much does it on real inputs.

    Per layer: ``risky_pairs`` (pairs that saturate for some uint8 input), ``static_worst`` (largest
    |pair sum| / 32767 over all uint8 inputs), ``observed_worst`` (the same over the per-position code
    ranges seen on ``calibration``), ``saturated_fraction`` (of all pair sums on ``calibration``),
    ``outputs_hit`` (fraction of outputs with at least one saturated pair), ``sqnr_db`` (layer output
    vs the saturation error it picks up), ``reduce_range_sqnr_db`` (vs the rounding error 7-bit weights
    would add instead) and ``harmful_channels`` (output channels whose saturation error exceeds what
    7-bit weights would cost them). Numpy only; ``max_images`` bounds the cost; ``detail=False`` leaves out
    the two SQNR figures (see :func:`analyse_layer`).
    """
    import onnx

    model = onnx.load(str(qdq_onnx))
    layers = quantized_layers(model)
    x = np.ascontiguousarray(calibration[:max_images], np.float32)
    codes = _layer_inputs(model, layers, x, threads) if layers else {}
    return [analyse_layer(layer, codes[layer.act_codes], detail=detail) for layer in layers]


def saturating_layers(qdq_onnx: str | Path, calibration: np.ndarray, *, criterion: str = "measured",
                      max_images: int = 8, threads: int | None = None) -> list[dict]:
    """The layers that saturate int16 pair sums on AVX2 without VNNI, by ``criterion``:

    - ``"static"``: for some uint8 input (almost every layer of an 8-bit per-channel model);
    - ``"observed"``: for inputs within the per-position code ranges of ``calibration`` (nearly as many);
    - ``"measured"`` (default): on the ``calibration`` inputs themselves;
    - ``"harmful"``: some output channel loses more to saturation than 7-bit weights would cost it.
    A 7-bit-weight model has none under any criterion. Each item is an :func:`analyse` row.
    """
    key = {"static": "can_saturate", "observed": "observed_can_saturate", "measured": "saturates",
           "harmful": "harmful"}
    if criterion not in key:
        raise ValueError(f"criterion must be one of {', '.join(key)}, got {criterion!r}")
    rows = analyse(qdq_onnx, calibration, max_images=max_images, threads=threads)
    return [row for row in rows if row[key[criterion]]]


# ---- the emulation: float-simulated QDQ + exact int16 pair saturation ---------------------
def _branch(layer: QLayer, tag: str) -> tuple[list, list, str]:
    """Nodes and initializers that compute ``scale_a * scale_w * (clip(p) - p)`` summed per output channel."""
    from onnx import helper, numpy_helper

    rp = layer.risky_pairs()
    n_p = len(rp["oc"])
    cout, cg, kh, kw = layer.w_q.shape
    k_total = kh * kw * cg
    valid1 = rp["k1"] < k_total
    k1 = np.minimum(rp["k1"], k_total - 1)
    # A pair = a 2-input-channel group of a grouped Conv, one tap each (they may differ: odd channel counts).
    chan = lambda k: rp["group"] * cg + k % cg  # noqa: E731
    gather = np.stack([chan(rp["k0"]), chan(k1)], axis=1).reshape(-1).astype(np.int64)
    wb = np.zeros((n_p, 2, kh, kw), np.float32)
    idx = np.arange(n_p)
    wb[idx, 0, (rp["k0"] // cg) // kw, (rp["k0"] // cg) % kw] = rp["w0"]
    wb[idx, 1, (k1 // cg) // kw, (k1 // cg) % kw] = np.where(valid1, rp["w1"], 0)
    mix = np.zeros((cout, n_p, 1, 1), np.float32)
    mix[rp["oc"], idx, 0, 0] = layer.a_scale * layer.w_scale[rp["oc"]]
    t = lambda s: f"{tag}_{s}"  # noqa: E731
    inits = [numpy_helper.from_array(gather, t("gather")), numpy_helper.from_array(wb, t("pairw")),
             numpy_helper.from_array(mix, t("mix")),
             numpy_helper.from_array(np.array(INT16_MIN, np.float32), t("lo")),
             numpy_helper.from_array(np.array(INT16_MAX, np.float32), t("hi"))]
    nodes = [helper.make_node("Cast", [layer.act_codes], [t("codes")], to=1)]
    src = t("codes")
    if layer.op == "Gemm":
        inits.append(numpy_helper.from_array(np.array([0, -1, 1, 1], np.int64), t("shape4")))
        nodes.append(helper.make_node("Reshape", [src, t("shape4")], [t("codes4")]))
        src = t("codes4")
    elif any(layer.pads):
        pt, pl, pb, pr = layer.pads
        inits += [numpy_helper.from_array(np.array([0, 0, pt, pl, 0, 0, pb, pr], np.int64), t("pads")),
                  numpy_helper.from_array(np.array(layer.a_zp, np.float32), t("zp"))]
        nodes.append(helper.make_node("Pad", [src, t("pads"), t("zp")], [t("padded")], mode="constant"))
        src = t("padded")
    nodes += [
        helper.make_node("Gather", [src, t("gather")], [t("pairs_in")], axis=1),
        helper.make_node("Conv", [t("pairs_in"), t("pairw")], [t("p")], group=n_p,
                         strides=list(layer.strides), dilations=list(layer.dilations)),
        helper.make_node("Clip", [t("p"), t("lo"), t("hi")], [t("clipped")]),
        helper.make_node("Sub", [t("clipped"), t("p")], [t("lost")]),
        helper.make_node("Conv", [t("lost"), t("mix")], [t("corr4")]),
    ]
    out = t("corr4")
    if layer.op == "Gemm":
        inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), t("shape2")))
        nodes.append(helper.make_node("Reshape", [out, t("shape2")], [t("corr")]))
        out = t("corr")
    return nodes, inits, out


def build_emulation(qdq_onnx: str | Path, dest: str | Path) -> dict:
    """Write ``dest``: the QDQ model plus, for each U8S8 Conv/Gemm with pairs that can saturate, the
    int16 saturation error added to its output. Run it with graph optimisations OFF (see
    :func:`emulated_logits`): Q/DQ then compute in float exactly as the int8 kernels do, minus saturation."""
    import onnx

    model = onnx.load(str(qdq_onnx))
    layers = [layer for layer in quantized_layers(model) if not layer.depthwise and len(layer.risky_pairs()["oc"])]
    by_output = {layer.output: (i, layer) for i, layer in enumerate(layers)}
    new_nodes = []
    for node in model.graph.node:
        hit = by_output.get(node.output[0]) if node.op_type in ("Conv", "Gemm") else None
        if hit is None:
            new_nodes.append(node)
            continue
        i, layer = hit
        raw = f"{layer.output}__before_saturation"
        node.output[0] = raw
        nodes, inits, corr = _branch(layer, f"sat{i}")
        model.graph.initializer.extend(inits)
        new_nodes += [node, *nodes, onnx.helper.make_node("Add", [raw, corr], [layer.output])]
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    onnx.save(model, str(dest))
    return {"layers": len(layers), "pairs": int(sum(len(layer.risky_pairs()["oc"]) for layer in layers))}


def emulated_logits(qdq_onnx: str | Path, x: np.ndarray, *, saturate: bool = True,
                    threads: int | None = None) -> np.ndarray:
    """Outputs of a U8S8 QDQ model as AVX2-without-VNNI computes them (``saturate=False``: as VNNI does).

    An emulation, not a measurement: see the module docstring for what it assumes.
    """
    if not saturate:
        return logits(qdq_onnx, x, threads, optimize=False)
    with tempfile.TemporaryDirectory(prefix="edgecnn-sat-") as work:
        path = Path(work) / "emulation.onnx"
        build_emulation(qdq_onnx, path)
        return logits(path, x, threads, optimize=False)


# ---- the saturation-aware recipe: 7-bit weights only in the output channels that need them ---------
def seven_bit_channels(qdq_onnx: str | Path, float_onnx: str | Path, calibration: np.ndarray, dest: str | Path, *,
                       max_images: int = 8, threads: int | None = None) -> dict[str, list[int]]:
    """Write ``dest``: ``qdq_onnx`` with 7-bit weights (scale max|w|/64, codes in [-64, 64]) in exactly
    the output channels whose int16 saturation on ``calibration`` costs more than 7-bit rounding would
    (``harmful_channels`` of :func:`analyse`), re-quantized from the float weights of ``float_onnx``
    (nodes matched by name), bias codes re-scaled to match. Every other channel keeps its 8-bit weights.
    Returns {node: channels}. Measured on EfficientNet-Lite0 (emulated AVX2, see the module docstring):
    ~6% of the output channels of 24 layers; emulated AVX2 cosine 0.996 (8-bit everywhere: 0.915; 7-bit
    everywhere: 0.980; 8-bit on VNNI: 0.995), all without bias correction (with it: 0.998, 0.920, 0.994, 0.998).
    """
    import onnx
    from onnx import numpy_helper

    rows = analyse(qdq_onnx, calibration, max_images=max_images, threads=threads, detail=False)
    plan = {r["node"]: r["harmful_channels"] for r in rows if r["harmful_channels"]}
    model = onnx.load(str(qdq_onnx))
    fmodel = onnx.load(str(float_onnx))
    finit = {i.name: numpy_helper.to_array(i) for i in fmodel.graph.initializer}
    fnodes = {n.name: n for n in fmodel.graph.node}
    init = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = {layer.node: layer for layer in quantized_layers(model)}
    done = {}
    for node in model.graph.node:
        if node.name not in plan or node.name not in fnodes or fnodes[node.name].input[1] not in finit:
            continue
        fnode, channels = fnodes[node.name], np.asarray(plan[node.name])
        w_f = finit[fnode.input[1]].astype(np.float64)
        transposed = node.op_type == "Gemm" and not attr(node, "transB", 0)
        if transposed:
            w_f = w_f.T
        wdq = producer[node.input[1]]
        w_q, w_s = numpy_helper.to_array(init[wdq.input[0]]).copy(), numpy_helper.to_array(init[wdq.input[1]]).copy()
        if w_s.size != w_f.shape[0]:
            continue  # per-tensor weights: no per-channel scale to change
        w_q_oc = w_q.T if transposed else w_q
        for c in channels:
            scale = float(np.abs(w_f[c]).max()) / 64 or 1.0
            w_s[c] = scale
            w_q_oc[c] = np.clip(np.round(w_f[c] / scale), -64, 64)
        init[wdq.input[0]].CopyFrom(numpy_helper.from_array(w_q.astype(np.int8), wdq.input[0]))
        init[wdq.input[1]].CopyFrom(numpy_helper.from_array(w_s.astype(np.float32), wdq.input[1]))
        bdq = producer.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if bdq is not None and bdq.op_type == "DequantizeLinear" and len(fnode.input) > 2 and fnode.input[2] in finit:
            b_scale = (layers[node.name].a_scale * w_s.astype(np.float64)).astype(np.float32)
            b_q = np.round(finit[fnode.input[2]].astype(np.float64) / b_scale)
            init[bdq.input[0]].CopyFrom(numpy_helper.from_array(
                np.clip(b_q, -2**31, 2**31 - 1).astype(np.int32), bdq.input[0]))
            init[bdq.input[1]].CopyFrom(numpy_helper.from_array(b_scale, bdq.input[1]))
        done[node.name] = channels.tolist()
    onnx.save(model, str(dest))
    return done
