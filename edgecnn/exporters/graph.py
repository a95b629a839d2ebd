"""Small ONNX graph helpers shared by the int8 passes (saturation, sensitivity, equalisation, bias correction)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..backends.onnxruntime import session


def attr(node, name: str, default):
    """A node attribute's value, or ``default``."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def dequantized(dq, inits: dict) -> np.ndarray:
    """The float64 value of a DequantizeLinear whose input is an initializer (per-tensor or along its axis)."""
    from onnx import numpy_helper

    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    s = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    has_zp = len(dq.input) > 2 and dq.input[2]
    z = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if has_zp else np.zeros(())
    if np.size(s) > 1:  # per-channel: broadcast along the DQ's axis
        shape = [1] * q.ndim
        shape[attr(dq, "axis", 1)] = -1
        s, z = s.reshape(shape), (z.reshape(shape) if np.size(z) > 1 else z)
    return (q - z) * s


def consumers(model) -> dict[str, list]:
    """Tensor name -> the nodes reading it."""
    out: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out


def static_batch(dims) -> int:
    """The batch a model input takes: its first dimension when fixed (an int > 0), else 1 (a dynamic axis)."""
    first = list(dims)[0] if len(dims) else None
    return first if isinstance(first, int) and not isinstance(first, bool) and first > 0 else 1


def chunks(x: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
    """``x`` in chunks of ``batch`` inputs, each with how many of them are real: the last chunk is
    completed by repeating its last input (a model exported at a fixed batch takes nothing else)."""
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        yield chunk, n


def logits(model_or_path, x: np.ndarray, threads: int | None = None, *, optimize: bool = True) -> np.ndarray:
    """The first output for every input of ``x`` (run at batch 1, or the model's fixed batch), concatenated."""
    sess = session(model_or_path, threads, optimize=optimize)
    inp = sess.get_inputs()[0]
    return np.concatenate([sess.run(None, {inp.name: c})[0][:n] for c, n in chunks(x, static_batch(inp.shape))])


def tensors_per_image(model, names: list[str], x: np.ndarray, *, threads: int | None = None,
                      optimize: bool = False, elem_type: int = 1) -> Iterator[list[np.ndarray]]:
    """Run ``model`` (a ModelProto) on each input of ``x`` and yield the values of ``names`` (batch 1 each;
    a model exported at a fixed batch N is run N inputs at a time, its outputs split per input).

    Graph optimisations are off by default, so intermediate tensors keep their names and a QDQ
    model runs its exact Q/DQ arithmetic in float. ``elem_type``: the ONNX type of the added outputs
    (1 float, 2 uint8) where the graph does not declare it."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.output)}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or elem_type, None))
    sess = session(m, threads, optimize=optimize)
    inp = sess.get_inputs()[0]
    batch = static_batch(inp.shape)
    for chunk, n in chunks(x, batch):
        outs = sess.run(names, {inp.name: chunk})
        for k in range(n):
            yield outs if batch == 1 else [o[k: k + 1] for o in outs]


def collect(model, names: list[str], x: np.ndarray, *, threads: int | None = None,
            elem_type: int = 1) -> dict[str, np.ndarray]:
    """The values of ``names`` for every input of ``x``, concatenated along the batch axis."""
    outs = list(tensors_per_image(model, names, x, threads=threads, elem_type=elem_type))
    return {name: np.concatenate([np.atleast_1d(o[j]) for o in outs]) for j, name in enumerate(names)}
