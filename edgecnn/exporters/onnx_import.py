"""An existing ONNX file as the start of the pipeline: checked to be an image classifier (one NCHW float
input, one output), then copied in as ``model.onnx`` with the graph unchanged except for the names every
edgecnn artifact uses (``input`` -> ``logits``) and a fixed (or ``batch``-named) first dimension.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifact import INPUT_NAME, OUTPUT_NAME, Artifact, describe
from ..errors import ConfigError, ExportError, first_line
from ..fileio import atomic_path

FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class OnnxSignature:
    input_name: str
    input_shape: tuple  # ints, or the dimension's symbol (str) / None where it is not fixed
    output_name: str
    opset: int


def _load(path: str | Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, onnx its own errors
        raise ConfigError(f"{Path(path).name} is not a readable ONNX model ({type(e).__name__}: "
                          f"{first_line(e, 120)})") from None


def inspect_onnx(path: str | Path, model=None) -> OnnxSignature:
    """The one image input and one output of an ONNX classifier; anything else is a one-line error."""
    import onnx

    model = _load(path) if model is None else model
    graph, name = model.graph, Path(path).name
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ConfigError(f"{name} has {len(inputs)} inputs ({', '.join(i.name for i in inputs) or 'none'}); "
                          "edgecnn exports image classifiers with one NCHW float input")
    inp = inputs[0]
    tensor = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    if not inp.type.HasField("tensor_type") or tensor.elem_type != FLOAT or len(dims) != 4:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if inp.type.HasField("tensor_type") else "?"
        raise ConfigError(f"{name}'s input '{inp.name}' is {kind} {list(dims)}, not an NCHW float32 image batch")
    if len(graph.output) != 1:
        raise ConfigError(f"{name} has {len(graph.output)} outputs ({', '.join(o.name for o in graph.output)}); "
                          "edgecnn expects one (batch, classes) output")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxSignature(inp.name, dims, graph.output[0].name, opset)


def import_onnx(src: str | Path, dest: str | Path, *, input_shape: tuple[int, int, int, int],
                dynamic_batch: bool) -> Artifact:
    """Copy ``src`` to ``dest`` with edgecnn's tensor names and the input shape fixed to ``input_shape``."""
    import onnx

    model = _load(src)
    sig = inspect_onnx(src, model)
    graph = model.graph
    renames = {sig.input_name: INPUT_NAME, sig.output_name: OUTPUT_NAME}
    taken = {n for node in graph.node for n in (*node.input, *node.output)} - set(renames)
    if taken & set(renames.values()):
        raise ExportError(f"{Path(src).name} already uses the tensor name "
                          f"'{sorted(taken & set(renames.values()))[0]}' inside the graph; rename it and retry")
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = renames.get(value.name, value.name)
    first = graph.input[[i.name for i in graph.input].index(INPUT_NAME)].type.tensor_type.shape.dim
    for dim, size in zip(first, input_shape):
        dim.Clear()
        dim.dim_value = size
    if dynamic_batch:
        first[0].Clear()
        first[0].dim_param = "batch"
    out_dims = graph.output[0].type.tensor_type.shape.dim
    if out_dims:
        out_dims[0].Clear()
        if dynamic_batch:
            out_dims[0].dim_param = "batch"
        else:
            out_dims[0].dim_value = input_shape[0]
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - checker and shape inference raise several types
        raise ExportError(f"{Path(src).name} does not pass onnx.checker at input shape {list(input_shape)}: "
                          f"{first_line(e)}") from None
    with atomic_path(dest) as tmp:
        onnx.save(model, str(tmp))
    return describe(dest, stage="export", precision="fp32", parent=None,
                    notes=f"imported {Path(src).name} (opset {sig.opset}; graph unchanged: tensors renamed "
                          f"{sig.input_name}->{INPUT_NAME}, {sig.output_name}->{OUTPUT_NAME}, input shape fixed)")
