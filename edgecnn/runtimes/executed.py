"""The execution record: in which precision each multiply-add of a model actually ran, read back from what
the runtime compiled (an "int8" file is only a request; the runtime decides when it compiles it).

- ONNX Runtime: the session's optimized model (``SessionOptions.optimized_model_filepath``), written by one
  extra session made with the runtime's own options and providers, after its graph transformers on this CPU.
  Its nodes are classified: ``QLinearConv``, ``ConvInteger``, ``QGemm``... are int8; a ``Conv``/``Gemm``/
  ``MatMul`` (``FusedConv``, NCHWc ``Conv``) computes in the type of its data input (fp16 or fp32): a
  DequantizeLinear -> Conv -> QuantizeLinear left in float is fp32 even in an int8 model. What the file holds:
  at ORT_ENABLE_ALL on this CPU, the NCHWc layout (``com.microsoft.nchwc.Conv``) and the QDQ fusions
  (``QLinearConv``) are serialised; kernels ORT only chooses at run time (MLAS's ISA dispatch, pre-packed
  weights) are not in it, so the record says which *operator* ran, not which kernel.
- OpenVINO: ``compiled_model.get_runtime_model()``: each node's ``layerType``, ``runtimePrecision``,
  ``primitiveType`` and ``originalLayersNames``. The precision counted is the one of the node's data input
  (port 0), which the kernel computes in: ``runtimePrecision`` is the widest of data *and weights*, so an fp16
  IR run under the f32 hint reads "f16" there while its kernel is ``brgconv_avx512_f32`` on f32 activations
  (measured, OpenVINO 2026.4, AMD EPYC): :func:`edgecnn.backends.openvino.node_precision`, the one rule the
  plugin's read-back (``info.executed_precision``) uses too. Free after compile.
- TensorRT: the engine inspector's JSON (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``,
  full detail only for an engine built with ``ProfilingVerbosity.DETAILED``): each layer's input format/datatype.

MACs are counted as :mod:`edgecnn.accounting` counts them (convolutions: output elements x input channels per
group x kernel area; matrix products: output elements x the reduced dimension; nothing else), here on the
graph the runtime read (ONNX or OpenVINO's model) so that a model with no PyTorch original is counted too.
The shares are MAC-weighted: ``{"int8": 0.71, "fp16": 0.0, "bf16": 0.0, "fp32": 0.29}``.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..backends.openvino import PRECISIONS as OV_PRECISIONS, node_precision  # OpenVINO type -> ours
from ..errors import backend_message

PRECISIONS = ("int8", "fp16", "bf16", "fp32")
# ONNX / ONNX Runtime operators that multiply-accumulate (standard, com.microsoft and NCHWc domains).
INT8_OPS = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat",
            "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM", "NhwcQLinearConv"}
FLOAT_MAC_OPS = {"Conv", "FusedConv", "ConvTranspose", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "NhwcFusedConv"}
MAC_OPS = INT8_OPS | FLOAT_MAC_OPS
# Operators a QDQ model asks to run in int8 besides the MAC ones (a DQ on every data input, a Q on the output):
# when ONNX Runtime leaves them between DQ and Q they run in float (listed, with 0 MACs).
_TENSOR_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 2: "int8", 3: "int8", 11: "fp64"}
_PASS_THROUGH = {"DequantizeLinear", "Cast", "Transpose", "Identity", "Reshape", "Squeeze", "Unsqueeze"}
OV_MAC_OPS = {"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData", "GroupConvolutionBackpropData"}


def record(rt) -> dict | None:
    """``rt.executed()``, or ``{"error": why}``: reading the record back never fails the artifact's row."""
    try:
        return rt.executed()
    except Exception as e:  # noqa: BLE001 - a runtime's introspection can fail any way; the row stands
        return {"error": f"could not read what {rt.name} compiled: {backend_message(e)}"}


def expected(precision: str) -> str:
    """The precision an artifact asks its MACs to run in."""
    return precision if precision in PRECISIONS else "fp32"


def summarize(layers: Iterable[dict], *, precision: str, source: str, extra_off: Iterable[dict] = (),
              unmapped: int = 0) -> dict:
    """The record from per-layer rows ``{"layer", "op", "macs", "ran"}``: MAC-weighted shares per precision,
    and every layer (and every zero-MAC operator in ``extra_off``) that did not run in ``precision``."""
    layers = list(layers)
    total = sum(r["macs"] for r in layers) + unmapped
    shares = {p: (sum(r["macs"] for r in layers if r["ran"] == p) / total if total else 0.0) for p in PRECISIONS}
    want = expected(precision)
    off = [r for r in layers if r["ran"] != want] + [r for r in extra_off if r["ran"] != want]
    record = {"macs": {p: round(v, 4) for p, v in shares.items()}, "source": source, "total_macs": total,
              "layers": len(layers), "off_precision": off}
    if unmapped:
        record["unmapped_macs"] = round(unmapped / total, 4)  # MACs of the artifact not found in what ran
    return record


# --- MACs on an ONNX graph ----------------------------------------------------------------------
def _dims(model) -> dict[str, list[int | None]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer: only the shapes it declares
        inferred = model
    g = inferred.graph
    out: dict[str, list[int | None]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    for t in g.initializer:
        out[t.name] = list(t.dims)
    return out


def _producers(nodes) -> dict[str, Any]:
    return {o: n for n in nodes for o in n.output}


def _source(name: str, producers: dict, inits: set[str]) -> str | None:
    """The initializer behind ``name``, through DequantizeLinear / Cast / Transpose... (a weight), or None."""
    for _ in range(8):
        if name in inits:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            return None
        name = node.input[0]
    return None


def onnx_macs(model) -> dict[str, dict]:
    """node name -> ``{"op", "macs", "keys"}`` for every multiply-accumulating node of an ONNX model (batch as
    exported; a free batch dimension counts 1). ``keys``: the initializers behind its weight and bias, its output
    names and its own name, which find the node again in a graph the runtime rewrote (ONNX Runtime names a fused
    node after the tensor or node it replaced: ``<output>_nchwc``, ``<node>_token_N``)."""
    g = model.graph
    dims, producers, inits = _dims(model), _producers(g.node), {t.name for t in g.initializer}
    table = {}
    for i, n in enumerate(g.node):
        if n.op_type not in MAC_OPS:
            continue
        w_index, a_index = (3, 0) if n.op_type in ("QLinearConv", "QLinearMatMul") else (1, 0)
        out = [d or 1 for d in dims.get(n.output[0], [])]
        w = dims.get(n.input[w_index], []) if len(n.input) > w_index else []
        a = dims.get(n.input[a_index], [])
        macs = 0
        if out and w and "Conv" in n.op_type:  # out x (C_in / groups) x kernel area (ConvTranspose: accounting's way)
            macs = math.prod(out) * math.prod(d or 1 for d in w[1:])
        elif out and a and n.op_type in ("Gemm", "FusedGemm", "QGemm"):
            trans_a = next((x.i for x in n.attribute if x.name == "transA"), 0)
            macs = math.prod(out) * (a[0] if trans_a else a[-1] or 1)
        elif out and a:
            macs = math.prod(out) * (a[-1] or 1)
        name = n.name or f"{n.op_type}_{i}"
        keys = [s for s in (_source(x, producers, inits) for x in n.input[1:]) if s] + list(n.output) + [name]
        table[name] = {"op": n.op_type, "macs": int(macs), "keys": keys}
    return table


def _quantized_float_ops(model) -> list[dict]:
    """Zero-MAC operators a QDQ model asks for in int8: every data input from a DequantizeLinear, the output to
    a QuantizeLinear (a residual Add, a Concat...)."""
    g = model.graph
    producers = _producers(g.node)
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    inits = {t.name for t in g.initializer}
    found = []
    for n in g.node:
        if n.op_type in MAC_OPS or n.op_type in _PASS_THROUGH or n.op_type == "QuantizeLinear":
            continue
        data = [x for x in n.input if x and x not in inits and x in producers]
        if data and all(producers[x].op_type == "DequantizeLinear" for x in data) and n.output and \
                any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], [])):
            found.append(n)
    return found


# --- ONNX Runtime -------------------------------------------------------------------------------
def _elem_types(model) -> dict[str, str]:
    """tensor name -> precision, declared where the graph says it and carried through the nodes otherwise."""
    g = model.graph
    types: dict[str, str] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        if v.type.HasField("tensor_type"):
            types[v.name] = _TENSOR_TYPES.get(v.type.tensor_type.elem_type, "other")
    for t in g.initializer:
        types[t.name] = _TENSOR_TYPES.get(t.data_type, "other")
    for n in g.node:  # ONNX Runtime writes its optimized graph in topological order
        attrs = {a.name: a for a in n.attribute}
        if n.op_type == "Cast" and "to" in attrs:
            t = _TENSOR_TYPES.get(attrs["to"].i, "other")
        elif n.op_type == "DequantizeLinear":
            t = _TENSOR_TYPES.get(attrs["output_dtype"].i, "fp32") if "output_dtype" in attrs else \
                types.get(n.input[1], "fp32") if len(n.input) > 1 else "fp32"
        elif n.op_type in ("QuantizeLinear",) or n.op_type.startswith("QLinear"):
            t = "int8"
        else:
            t = next((types[x] for x in n.input if x in types), "fp32")
        for o in n.output:
            types.setdefault(o, t)
    return types


def _ran(node, types: dict[str, str]) -> str:
    if node.op_type in INT8_OPS or node.op_type.startswith("QLinear"):
        return "int8"
    ran = types.get(node.input[0], "fp32") if node.input else "fp32"
    return ran if ran in PRECISIONS else "fp32"


def classify_onnx(artifact, optimized, *, precision: str, source: str) -> dict:
    """The record of ``artifact`` (the ONNX model given to the runtime) from ``optimized`` (the graph the runtime
    wrote after its transformers): each MAC node of the artifact is found again by its weight, bias or output
    names, and counted in the precision the node that now holds it computes in."""
    table = onnx_macs(artifact)
    uses = Counter(k for row in table.values() for k in set(row["keys"]))
    # key -> the artifact's MAC node; a key two nodes share (one zero bias for two convs) names neither
    owner = {k: name for name, row in table.items() for k in row["keys"] if uses[k] == 1}
    g = optimized.graph
    types = _elem_types(optimized)
    inits = {t.name for t in g.initializer}
    producers = _producers(g.node)
    ran: dict[str, tuple[str, str]] = {}
    for n in g.node:
        if n.op_type not in MAC_OPS and not n.op_type.startswith("QLinear"):
            continue
        names = [s for s in (_source(x, producers, inits) for x in n.input[1:]) if s] + list(n.output) + [n.name]
        for k in names:
            for cand in (k, _strip(k)):
                if cand in owner and owner[cand] not in ran:
                    ran[owner[cand]] = (_ran(n, types), _op(n))
                    break
    layers = [{"layer": name, "op": f"{row['op']} -> {ran[name][1]}", "macs": row["macs"], "ran": ran[name][0]}
              for name, row in table.items() if name in ran]
    unmapped = sum(row["macs"] for name, row in table.items() if name not in ran)
    extra = []
    if expected(precision) == "int8":
        by_output = {o: n for n in g.node for o in n.output}
        for n in _quantized_float_ops(artifact):
            now = by_output.get(n.output[0]) or by_output.get(n.output[0] + "_output_0")
            now_op = now.op_type if now is not None else None
            if now_op is not None and not now_op.startswith("QLinear") and now_op not in INT8_OPS:
                extra.append({"layer": n.name, "op": now_op, "macs": 0, "ran": _ran(now, types)})
    return summarize(layers, precision=precision, source=source, extra_off=extra, unmapped=unmapped)


def _op(node) -> str:
    """``Conv``, ``nchwc.Conv``, ``microsoft.QLinearConv``: the operator and the tail of its domain."""
    return f"{node.domain.rsplit('.', 1)[-1]}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


_PREFIXES = ("FusedBack_", "InsertedPrecisionFreeCast_")


def _strip(name: str) -> str:
    """An initializer or tensor name as the artifact had it, before ONNX Runtime's casts renamed it."""
    for p in _PREFIXES:
        name = name.removeprefix(p)
    return re.sub(r"(_token_\d+|_nchwc)$", "", name)


def onnxruntime_record(model_or_bytes, *, options, providers: list[str], precision: str) -> dict:
    """One extra session with the runtime's own ``options`` and ``providers``, writing its optimized model;
    the record read from it (``{"error": ...}`` where ONNX Runtime could not write it)."""
    import onnx
    import onnxruntime as ort

    blob = model_or_bytes.SerializeToString() if hasattr(model_or_bytes, "graph") else model_or_bytes
    level = str(options.graph_optimization_level).rsplit(".", 1)[-1]
    source = f"onnxruntime {ort.__version__} optimized model ({level}, {providers[0]})"
    with tempfile.TemporaryDirectory(prefix="edgecnn-executed-") as work:
        path = Path(work) / "optimized.onnx"
        options.optimized_model_filepath = str(path)
        try:
            ort.InferenceSession(blob, options, providers=providers)
            optimized = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - a graph ORT runs but cannot serialise: say so, never guess
            return {"error": f"ONNX Runtime could not write its optimized model: {backend_message(e)}",
                    "source": source}
    artifact = model_or_bytes if hasattr(model_or_bytes, "graph") else onnx.load_model_from_string(blob)
    return classify_onnx(artifact, optimized, precision=precision, source=source)


# --- OpenVINO -----------------------------------------------------------------------------------
def ov_macs(model) -> dict[str, int]:
    """friendly name -> MACs for each convolution and matrix product of an OpenVINO model (before compile)."""
    table = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in OV_MAC_OPS:
            continue
        out, a, w = (op.get_output_partial_shape(0), op.get_input_partial_shape(0), op.get_input_partial_shape(1))
        if not (out.rank.is_static and w.rank.is_static and a.rank.is_static):
            continue
        out_d = [d.get_length() if d.is_static else 1 for d in out]
        w_d = [d.get_length() if d.is_static else 1 for d in w]
        a_d = [d.get_length() if d.is_static else 1 for d in a]
        if kind == "GroupConvolution":  # weights [G, C_out/G, C_in/G, k...]
            macs = math.prod(out_d) * math.prod(w_d[2:])
        elif "Convolution" in kind:  # [C_out, C_in, k...]
            macs = math.prod(out_d) * math.prod(w_d[1:])
        else:
            k = a_d[-2] if op.get_attributes().get("transpose_a") else a_d[-1]
            macs = math.prod(out_d) * k
        table[op.get_friendly_name()] = int(macs)
    return table


def _ov_layer(name: str, table: dict) -> str | None:
    """The MAC layer a runtime node's original name belongs to: itself, or the layer it extends (OpenVINO's
    low-precision passes rename a quantized MatMul ``<name>/DequantizationMultiply``)."""
    while name and name not in table:
        name = name.rpartition("/")[0]
    return name or None


def _onnx_name(name: str) -> str:
    """The layer's name in the ONNX file (OpenVINO's frontend splits a Conv or Gemm's bias off, naming the
    product ``<name>/WithoutBiases``)."""
    return name.removesuffix("/WithoutBiases")


def _ov_ran(op) -> str:
    """The precision a runtime node computes in (:func:`edgecnn.backends.openvino.node_precision`)."""
    ran = node_precision(op)
    return ran if ran in OV_PRECISIONS.values() else "fp32"


def openvino_record(runtime_model, model, *, precision: str, hint: str) -> dict:
    """The record of ``model`` (as read, before compile) from ``runtime_model`` (the compiled graph)."""
    table = ov_macs(model)
    layers, seen, orphans = [], set(), []
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        names = (_ov_layer(n, table) for n in info["originalLayersNames"].astype(str).split(","))
        originals = list(dict.fromkeys(n for n in names if n and n not in seen))
        if not originals and info["layerType"].astype(str) == "FullyConnected":
            orphans.append(op)  # a MatMul fused with its bias takes the bias's name ("logits"): matched below
        if not originals:
            continue
        ran = _ov_ran(op)
        for name in originals:
            seen.add(name)
            layers.append({"layer": _onnx_name(name), "op": f"{info['layerType'].astype(str)} "
                                               f"({info['primitiveType'].astype(str)})",
                           "macs": table[name], "ran": ran})
    for op in orphans:  # by their MACs: output elements x the reduced dimension of the [N, K] weights
        w = op.get_input_partial_shape(1) if op.get_input_size() > 1 else None
        out = op.get_output_partial_shape(0)
        if w is None or not (w.is_static and out.is_static) or len(w.to_shape()) != 2:
            continue
        macs = math.prod(out.to_shape()) * w.to_shape()[1]
        match = [n for n, m in table.items() if n not in seen and m == macs]
        if len(match) == 1:
            info = op.get_rt_info()
            seen.add(match[0])
            layers.append({"layer": _onnx_name(match[0]), "op": f"FullyConnected ({info['primitiveType'].astype(str)})",
                           "macs": macs, "ran": _ov_ran(op)})
    unmapped = sum(m for n, m in table.items() if n not in seen)
    import openvino as ov

    return summarize(layers, precision=precision, unmapped=unmapped,
                     source=f"openvino {ov.get_version().split('-')[0]} runtime model (inference precision {hint})")


# --- TensorRT -----------------------------------------------------------------------------------
_TRT_TYPES = (("int8", "int8"), ("fp16", "fp16"), ("half", "fp16"), ("bf16", "bf16"), ("fp32", "fp32"),
              ("float", "fp32"), ("fp8", "fp8"), ("int4", "int4"))
_TRT_MAC = {"Convolution", "CaskConvolution", "CaskDeconvolution", "Deconvolution", "MatrixMultiply", "Gemm",
            "CaskGemmConvolution", "CaskFlattenConvolution", "FullyConnected", "CaskGemmMatrixMultiply"}


def _trt_precision(fmt: str) -> str:
    low = fmt.lower()
    return next((p for key, p in _TRT_TYPES if key in low), "fp32")


def tensorrt_record(info_json: str, *, precision: str, source: str = "tensorrt engine inspector") -> dict:
    """The record from the engine inspector's JSON (TensorRT 10/11, ``ProfilingVerbosity.DETAILED``): for each
    convolution or matrix-multiply layer, MACs from its own dimensions (output elements x weights per output
    channel; matrix products: output elements x the reduced dimension), precision from its data input's
    "Format/Datatype". An engine built without detailed profiling lists layer names only: said, not guessed."""
    try:
        info = json.loads(info_json)
    except ValueError as e:
        return {"error": f"unreadable engine information: {e}", "source": source}
    raw = info.get("Layers", []) if isinstance(info, dict) else []
    if raw and all(isinstance(layer, str) for layer in raw):
        return {"error": "the engine was built without ProfilingVerbosity.DETAILED: its inspector lists layer "
                         "names only", "source": source}
    layers = []
    for layer in raw:
        if not isinstance(layer, dict):
            continue
        kind = str(layer.get("LayerType", ""))
        param = str(layer.get("ParameterType", ""))
        if kind not in _TRT_MAC and param not in _TRT_MAC:
            continue
        ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
        if not ins or not outs:
            continue
        out = [int(d) for d in outs[0].get("Dimensions", [])]
        a = [int(d) for d in ins[0].get("Dimensions", [])]
        weights = int((layer.get("Weights") or {}).get("Count", 0))
        if weights and len(out) >= 2 and out[1]:  # NCHW: C_out is dimension 1
            macs = math.prod(out) * weights // out[1]
        elif a and out:
            macs = math.prod(out) * a[-1]
        else:
            macs = 0
        name = str(layer.get("Name", ""))
        layers.append({"layer": name, "op": kind, "macs": macs,
                       "ran": _trt_precision(str(ins[0].get("Format/Datatype", "")))})
    return summarize(layers, precision=precision, source=source)
