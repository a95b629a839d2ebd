"""Deployed inference memory: the largest set of tensors alive at once in the exported ONNX graph.

What a runtime must hold to run one image, read off the graph it actually runs (BatchNorm folded
into the convolutions, in-place views gone) rather than off the PyTorch modules:

- weights: every initializer (and Constant output), resident for the session's lifetime;
- activations: nodes run in the graph's topological order (the order the exporter wrote, the one
  ONNX Runtime's sequential executor follows); a tensor is allocated when its node runs and freed
  after its last consumer ran; while a node runs, its inputs and its outputs are alive together.
  The peak is the largest such sum; the model input counts until its last use.

Per precision, from the same fp32 graph: ``fp32`` as exported; ``fp16`` every float tensor in two
bytes (the fp16 artifact computes in fp16 with fp32 input/output, whose casts are counted);
``int8`` as QDQ models run on ONNX Runtime's QLinear kernels: activations in one byte, Conv/Gemm/
MatMul weights in one byte plus a per-channel fp32 scale and a zero point, biases as int32, the
model's fp32 input and output plus the quantized copy of the input.

:func:`measure_onnxruntime` checks the fp32 figure against ONNX Runtime itself: a fresh process
loads the model and runs one image; the weights' share is the resident-memory growth of creating
the session, the activations' the peak growth while running it (Linux ``/proc``: VmHWM, reset
through ``clear_refs``). It includes what the liveness model leaves out (convolution scratch
buffers, the runtime's own small allocations), so the two agree within :data:`MEASURED_TOLERANCE`.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .worker import run_python

PRECISIONS = ("fp32", "fp16", "int8")
# The fp32 peak (weights + activations) agrees with ONNX Runtime's resident memory within this fraction
# (tests/test_memory.py checks the families of MEASURED_ON; measured at 224 px, ONNX Runtime 1.32:
# VGG-16 +0.2%, ResNet-50 +5%, MobileNetV2 +9%, DenseNet-121 +14%).
# ONNX Runtime holds more than the liveness model: convolution scratch (im2col) buffers, up to ~4 MiB at 224 px,
# and small per-node allocations of its own.
MEASURED_TOLERANCE = 0.15
MEASURED_ON = ("resnet50", "mobilenet_v2", "densenet121")  # three families: residual adds, depthwise, concatenations
_FLOAT_TYPES = {1: 4, 10: 2, 11: 8, 16: 2}  # ONNX TensorProto: FLOAT, FLOAT16, DOUBLE, BFLOAT16
_ELEMENT_SIZE = {**_FLOAT_TYPES, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 12: 4, 13: 8}
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
# Outputs that share their first input's buffer: ONNX Runtime's kernels declare them aliases (no copy).
_ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
# Element-wise ops ONNX Runtime runs in place when their first input dies there (its planner's "MayInplace").
_INPLACE_OPS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Add", "Sub", "Mul",
                "Div", "Sum", "Elu", "Selu", "Softplus", "Neg", "Abs"}


@dataclass
class TensorRow:
    name: str
    op: str  # the node that produces it ("input" for the model input)
    shape: tuple[int, ...]
    dtype: str
    bytes: int


@dataclass
class GraphMemory:
    """Liveness analysis of one ONNX graph at one precision; sizes in bytes, batch as exported."""

    precision: str
    weight_bytes: int
    peak_activation_bytes: int
    peak_node: str  # the node running when the activations peak
    peak_tensors: list[str]  # the tensors alive then
    activation_total_bytes: int  # every activation, as if none were ever freed
    tensors: list[TensorRow] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return self.weight_bytes + self.peak_activation_bytes


@dataclass
class InferenceMemory:
    model: str
    resolution: int
    per_precision: dict[str, GraphMemory]
    measured: dict | None = None  # ONNX Runtime, fp32 (measure_onnxruntime)

    def to_dict(self, layers: bool = False) -> dict:
        out = {"model": self.model, "resolution": self.resolution, "measured_onnxruntime_fp32": self.measured,
               "measured_tolerance": MEASURED_TOLERANCE}
        for p, g in self.per_precision.items():
            d = asdict(g)
            d["peak_bytes"] = g.peak_bytes
            if not layers:
                d.pop("tensors")
            out[p] = d
        return out

    def table(self, con=None):
        """rich Table fitted to the console (:func:`edgecnn.layout.fit`): the node column goes first when narrow."""
        from rich.markup import escape

        from ..layout import Col, fit

        mib = 2**20
        rows = [[p, f"{g.weight_bytes / mib:.2f} MiB", f"{g.peak_activation_bytes / mib:.2f} MiB",
                 f"{g.peak_bytes / mib:.2f} MiB", escape(g.peak_node)] for p, g in self.per_precision.items()]
        if self.measured:
            m = self.measured
            rows.append(["fp32, measured", f"{m['weight_bytes'] / mib:.2f} MiB",
                         f"{m['activation_bytes'] / mib:.2f} MiB",
                         f"{(m['weight_bytes'] + m['activation_bytes']) / mib:.2f} MiB", "ONNX Runtime, resident memory"])
        cols = [Col("precision", "left"), Col("weights"), Col("live activations at peak"),
                Col("peak (weights + activations)"), Col("at node", "left", drop=1)]
        return fit(cols, rows, title=f"{escape(self.model)} @ {self.resolution}x{self.resolution}: deployed inference "
                                     "peak memory (batch 1)", con=con)

    def notes(self) -> list[str]:
        lines = ["inference peak: weights + the largest set of activations alive at once when the exported ONNX "
                 "runs node by node (BatchNorm folded; in-place and view ops allocate nothing); int8 as ONNX "
                 "Runtime's QLinear kernels hold it (1-byte activations and weights, int32 biases, fp32 I/O)"]
        if self.measured:
            m = self.measured
            gap = (m["weight_bytes"] + m["activation_bytes"]) / self.per_precision["fp32"].peak_bytes - 1 \
                if "fp32" in self.per_precision else None
            lines.append("measured: resident-memory growth of an ONNX Runtime session (weights) and of one run "
                         "(activations, incl. convolution scratch buffers the liveness model omits)"
                         + (f": {gap:+.1%} against the fp32 peak" if gap is not None else "")
                         + f"; the stated tolerance is {MEASURED_TOLERANCE:.0%} (checked on {', '.join(MEASURED_ON)} "
                         f"in tests/test_memory.py)")
        return lines


def _shapes(model) -> dict[str, tuple[tuple[int, ...], int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim)  # symbolic batch -> 1
        out[vi.name] = (dims, t.elem_type)
    return out


def _size(shape: tuple[int, ...], elem_type: int, precision: str, role: str) -> tuple[int, str]:
    """Bytes and dtype of a tensor of ``shape`` in ``precision``; role: activation | io | weight | bias | other."""
    n = 1
    for d in shape:
        n *= d
    if elem_type not in _FLOAT_TYPES or precision == "fp32" or role == "io":
        return n * _ELEMENT_SIZE.get(elem_type, 4), _dtype_name(elem_type)
    if precision == "fp16":
        return 2 * n, "float16"
    # int8
    if role in ("activation", "weight"):
        return n, "int8"
    if role == "bias":
        return 4 * n, "int32"
    return n * _ELEMENT_SIZE[elem_type], _dtype_name(elem_type)


def _dtype_name(elem_type: int) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def graph_memory(model, precision: str = "fp32") -> GraphMemory:
    """Liveness analysis of an ONNX model (a ``ModelProto`` or a path) at ``precision``."""
    import onnx
    from onnx import numpy_helper

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    g = model.graph
    shapes = _shapes(model)
    role = {}
    for node in g.node:
        if node.op_type in _WEIGHTED_OPS:
            for i, name in enumerate(node.input[1:3], start=1):
                role.setdefault(name, "weight" if i == 1 else "bias")
    weight_bytes = 0
    for init in g.initializer:
        arr_shape = tuple(init.dims)
        r = role.get(init.name, "other")
        b, _ = _size(arr_shape, init.data_type, precision, r)
        weight_bytes += b
        if precision == "int8" and r == "weight" and len(arr_shape) > 0:
            weight_bytes += arr_shape[0] * 5  # per-output-channel fp32 scale + int8 zero point
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    t = numpy_helper.to_array(a.t)
                    weight_bytes += t.nbytes
    initializers = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    outputs = {o.name for o in g.output}
    inputs = [i for i in g.input if i.name not in initializers]
    last_use: dict[str, int] = {}
    for idx, node in enumerate(g.node):
        for name in node.input:
            last_use[name] = idx
    rows: list[TensorRow] = []
    size: dict[str, int] = {}

    def allocate(name: str, op: str, io: bool) -> None:
        shape, elem = shapes.get(name, ((), 1))
        b, dtype = _size(shape, elem, precision, "io" if io else "activation")
        size[name] = b
        rows.append(TensorRow(name, op, shape, dtype, b))

    # Buffers, not tensors, hold memory: an alias or an in-place result writes into its input's buffer.
    buffer_of: dict[str, str] = {}
    holders: dict[str, set[str]] = {}  # buffer -> tensors still to be read from it
    live: dict[str, int] = {}  # buffer -> bytes
    input_names = {i.name for i in inputs}  # the caller's buffers: never written in place
    for i in inputs:
        allocate(i.name, "input", True)
        buffer_of[i.name], holders[i.name] = i.name, {i.name}
        live[i.name] = size[i.name] + (size[i.name] // 4 if precision == "int8" else 0)  # + the quantized copy
    peak, peak_node, peak_tensors = sum(live.values()), "input", list(live)
    for idx, node in enumerate(g.node):
        if node.op_type == "Constant":
            continue
        first = node.input[0] if node.input else ""
        for name in node.output:
            if not name:
                continue
            allocate(name, node.op_type, name in outputs)
            buf = buffer_of.get(first)
            reuse = buf is not None and name not in outputs and (
                node.op_type in _ALIAS_OPS
                or (node.op_type in _INPLACE_OPS and size[name] == size[first] and holders[buf] == {first}
                    and last_use.get(first) == idx and first not in outputs and first not in input_names))
            if reuse:
                buffer_of[name] = buf
                holders[buf].add(name)
                rows[-1].bytes = 0
            else:
                buffer_of[name], holders[name] = name, {name}
                live[name] = size[name]
        current = sum(live.values())
        if current > peak:
            peak, peak_node, peak_tensors = current, node.name or node.op_type, list(live)
        for name in set(node.input) | set(node.output):
            buf = buffer_of.get(name)
            if buf is None or name in outputs or last_use.get(name, -1) > idx:
                continue
            holders[buf].discard(name)
            if not holders[buf] and buf in live:
                del live[buf]
    return GraphMemory(precision=precision, weight_bytes=weight_bytes, peak_activation_bytes=peak,
                       peak_node=peak_node, peak_tensors=peak_tensors,
                       activation_total_bytes=sum(r.bytes for r in rows), tensors=rows)


def export_for_analysis(name: str, dest: str | Path, *, resolution: int | None = None,
                        options: dict | None = None) -> Path:
    """Export a registered model (random init: shapes are what matter) to an fp32 ONNX file."""
    import torch

    from ..exporters.torch_onnx import export_onnx
    from ..models import get_spec
    from ..models._factory import build_model

    spec = get_spec(name)
    options = dict(options or {})
    num_classes = options.pop("num_classes", None) or spec.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(spec, num_classes, options).eval()
    export_onnx(model, dest, input_shape=spec.input_shape(resolution))
    return Path(dest)


def inference_memory(name: str, *, resolution: int | None = None, options: dict | None = None,
                     precisions: tuple[str, ...] = PRECISIONS, measure: bool = True) -> InferenceMemory:
    """Export ``name`` and analyse its graph per precision; with ``measure``, check fp32 on ONNX Runtime."""
    import onnx

    from ..models import get_spec

    res = get_spec(name).check_resolution(resolution)
    with tempfile.TemporaryDirectory(prefix="edgecnn-memory-") as work:
        path = export_for_analysis(name, Path(work) / "model.onnx", resolution=res, options=options)
        model = onnx.load(str(path))
        per = {p: graph_memory(model, p) for p in precisions}
        measured = measure_onnxruntime(path) if measure else None
    return InferenceMemory(model=name, resolution=res, per_precision=per, measured=measured)


_MEASURE = r"""
import json, sys
import numpy as np
import onnxruntime as ort

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

path = sys.argv[1]
# A one-node session first, so that what every session costs once (kernel registry, thread pool) is not counted
# as weights.
import onnx
from onnx import TensorProto, helper
tiny = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
from edgecnn.backends.onnxruntime import session_options  # light: onnxruntime only

so = session_options(1)
so.enable_cpu_mem_arena = False  # freed activations leave the count instead of staying in the arena
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # the graph as analysed
so.add_session_config_entry("session.disable_prepacking", "1")  # no second, re-laid-out copy of the weights
so.enable_mem_pattern = False  # each tensor allocated when produced and freed when dead: the liveness model
warm = ort.InferenceSession(tiny.SerializeToString(), so, providers=["CPUExecutionProvider"])
warm.run(None, {"x": np.zeros(1, np.float32)})
before = status("VmRSS")
session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]
x = np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
loaded = status("VmRSS")
reset_peak()
session.run(None, {inp.name: x})
print(json.dumps({"weight_bytes": loaded - before, "activation_bytes": status("VmHWM") - loaded}))
"""


def measure_onnxruntime(path: str | Path) -> dict | None:
    """Resident-memory growth of an ONNX Runtime session (weights) and of its first run (activations).

    Runs in a fresh Python process, so nothing else of ours is in the count. None where ``/proc``
    cannot say (not Linux: no ``clear_refs`` to reset the peak); a worker that fails raises.
    """
    if not Path("/proc/self/clear_refs").exists():
        return None
    # A fixed mmap threshold makes glibc return every large freed block to the system at once, so resident memory
    # follows the live tensors instead of the allocator's high-water mark.
    # The worker imports edgecnn.backends.onnxruntime (the one session-options builder) from this checkout.
    proc = run_python(["-c", _MEASURE, str(path)], timeout=600, env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    if proc.returncode != 0:  # a broken measurement is a failure, never a silent "cannot measure here"
        raise RuntimeError(f"measuring {Path(path).name} on ONNX Runtime failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
