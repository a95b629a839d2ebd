"""Empirical bias correction of a QDQ model: remove the mean output shift that int8 weights cause.

Rounding weights to int8 changes each Conv/Gemm's output by ``dW * x`` (``dW`` = dequantized minus
float weights). Its mean over the data is not zero when the inputs are not zero-mean (they rarely are
after a ReLU), so every channel's output shifts, and the shifts add up through the network. Nagel et
al. (ICCV 2019, section 4.2) and NNCF's FastBiasCorrection subtract that mean from the bias:

    b[o] -= sum_{c, kh, kw} dW[o, c, kh, kw] * E[x_c at tap (kh, kw)]

``E`` runs over the calibration images and the layer's output positions, on the *float* model's
input to the layer, with zero padding counted exactly (a border output sees fewer pixels). The
corrected bias stays int32 (``round(shift / bias_scale)`` is taken off), so the graph, its speed and
its Q/DQ layout do not change. NNCF applies its own version on the OpenVINO route; ONNX Runtime's
quantizer has none, which is what this is for. Its cost is one run of the float model per calibration
image (graph optimisations off, so every intermediate tensor is exact): the statistics are a float64
sum of each layer's input over the images, and the tap means are box sums taken once per layer.
"""
from __future__ import annotations

import numpy as np

from .graph import attr, dequantized, tensors_per_image


def _strided_sums(a: np.ndarray, taps: int, dilation: int, stride: int, count: int) -> np.ndarray:
    """``out[..., t] = sum(a[..., t * dilation + stride * y] for y < count)`` for every tap ``t`` (last axis).

    Prefix sums over each residue class mod ``stride`` (one integral image per class): each tap's sum is
    then the difference of two prefix sums, so the cost does not grow with the kernel size."""
    n = -(-a.shape[-1] // stride)
    a = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, n * stride - a.shape[-1])])
    lattice = a.reshape(*a.shape[:-1], n, stride)  # lattice[..., q, r] = a[..., q * stride + r]
    prefix = np.concatenate([np.zeros_like(lattice[..., :1, :]), np.cumsum(lattice, axis=-2)], axis=-2)
    start = np.arange(taps) * dilation
    q, r = start // stride, start % stride
    return prefix[..., q + count, r] - prefix[..., q, r]


def _taps_mean(x: np.ndarray, kernel: tuple[int, int], strides, pads, dilations) -> np.ndarray:
    """Mean over the images and output positions of every kernel tap's input: (C, kh, kw), zero padding included.

    The sum a tap sees is a strided box sum over the zero-padded input, separable in H and W: no loop
    over taps. ``correct_bias`` calls this once per layer on the inputs summed over the images (it used
    to loop over taps for every layer and image: 6,656 calls for MobileNetV2, 7.3 s of a 26 s export)."""
    kh, kw = kernel
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    total = x.sum(axis=0, dtype=np.float64)  # (C, H, W): every quantity below is linear in x
    if any(pads):
        total = np.pad(total, ((0, 0), (pt, pb), (pl, pr)))
    oh = (total.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (total.shape[2] - dw * (kw - 1) - 1) // sw + 1
    rows = _strided_sums(total.transpose(0, 2, 1), kh, dh, sh, oh)  # (C, W, kh)
    taps = _strided_sums(rows.transpose(0, 2, 1), kw, dw, sw, ow)  # (C, kh, kw)
    return taps / (len(x) * oh * ow)


def correct_bias(qdq, float_model, calibration: np.ndarray, *, threads: int | None = None):
    """A copy of ``qdq`` (ModelProto) with corrected int32 biases, and a report.

    ``float_model``: the model ``qdq`` was quantized from (same node names); ``calibration``:
    (N, C, H, W) inputs for the statistics."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    q_inits = {i.name: i for i in m.graph.initializer}
    f_inits = {i.name: i for i in float_model.graph.initializer}
    f_nodes = {n.name: n for n in float_model.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    layers, skipped = [], 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
            continue
        wdq, f = producer.get(n.input[1]), f_nodes.get(n.name)
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in q_inits:
            continue  # weights kept in float: nothing to correct
        if f is None or len(f.input) < 2 or f.input[1] not in f_inits:
            skipped += 1
            continue
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
        bdq = producer.get(bias) if bias else None
        if bias is None or not (bias in q_inits or (bdq is not None and bdq.op_type == "DequantizeLinear"
                                                    and bdq.input[0] in q_inits)):
            skipped += 1  # no bias to put the correction in
            continue
        if n.op_type == "Gemm" and (attr(n, "transA", 0) or attr(n, "alpha", 1.0) != 1.0):
            skipped += 1
            continue
        d_w = dequantized(wdq, q_inits) - numpy_helper.to_array(f_inits[f.input[1]]).astype(np.float64)
        layers.append((n, f.input[0], d_w, bdq))
    if not layers:
        return m, {"corrected": 0, "skipped": skipped}

    # Every mean below is linear in the layer's input: sum each input over the images once (float64),
    # then take each layer's tap means once, not once per image.
    names = list(dict.fromkeys(t for _, t, _, _ in layers))
    sums: dict[str, np.ndarray] = {}
    for outs in tensors_per_image(float_model, names, calibration, threads=threads):
        for t, out in zip(names, outs):
            if t in sums:
                np.add(sums[t], out, out=sums[t])
            else:
                sums[t] = out.astype(np.float64)
    shifts = []
    for n, t, d_w, bdq in layers:
        x = sums[t]  # batch 1: (1, C, H, W) or (1, F)
        if n.op_type == "Gemm":
            w = d_w if attr(n, "transB", 0) else d_w.T  # (out, in)
            shift = w @ (x.reshape(-1) / len(calibration))
        else:
            mean = _taps_mean(x, d_w.shape[2:], tuple(attr(n, "strides", [1, 1])),
                              tuple(attr(n, "pads", [0, 0, 0, 0])), tuple(attr(n, "dilations", [1, 1])))
            mean /= len(calibration)
            g = int(attr(n, "group", 1))
            cout, cg = d_w.shape[:2]
            shift = np.einsum("gockl,gckl->go", d_w.reshape(g, cout // g, cg, *d_w.shape[2:]),
                              mean.reshape(g, cg, *mean.shape[1:])).reshape(-1)
        if bdq is not None:
            raw = numpy_helper.to_array(q_inits[bdq.input[0]])
            q, info = raw.astype(np.int64), np.iinfo(raw.dtype)
            scale = np.broadcast_to(numpy_helper.to_array(q_inits[bdq.input[1]]).astype(np.float64), q.shape)
            new = np.clip(q - np.round(shift / scale), info.min, info.max).astype(info.dtype)
            q_inits[bdq.input[0]].CopyFrom(numpy_helper.from_array(new, bdq.input[0]))
            bias = q * scale
        else:
            bias = numpy_helper.to_array(q_inits[n.input[2]]).astype(np.float64)
            q_inits[n.input[2]].CopyFrom(numpy_helper.from_array((bias - shift).astype(np.float32), n.input[2]))
        shifts.append(float(np.sqrt(np.mean(shift ** 2)) / max(float(np.sqrt(np.mean(bias ** 2))), 1e-12)))
    return m, {"corrected": len(layers), "skipped": skipped, "median_shift_over_bias": float(np.median(shifts))}


def summary(report: dict) -> str:
    """One line for an artifact's notes."""
    line = f"bias correction: {report['corrected']} layer(s)"
    if report.get("corrected"):
        line += f" (median shift {report['median_shift_over_bias']:.1%} of the bias, rms)"
    if report["skipped"]:
        line += f", {report['skipped']} without a bias or a float twin left alone"
    return line
