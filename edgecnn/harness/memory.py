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

What a deployment sees is more: ONNX Runtime with edgecnn's own session options (its defaults: memory
arena, memory patterns, every graph optimisation, weight prepacking) keeps the parsed model beside the
session's weights, re-lays weights out for its kernels (NCHWc, prepacked GEMM), and serves activations
from an arena and a memory-pattern block, with convolution scratch on top. :func:`deployed_estimate`
puts that on the liveness figures (:data:`DEPLOYED_MODEL`, fitted by benchmarks/memory_tolerance.py on
some families and checked on held-out ones, within :data:`DEPLOYED_TOLERANCE`); :func:`probe` measures it
in a fresh process (Linux ``/proc``: VmHWM, reset through ``clear_refs``), and ``info --memory --measure``
prints both, flagging an estimate outside its tolerance. :func:`measure_onnxruntime` measures the
liveness settings instead (arena, patterns and prepacking off), where ONNX Runtime holds close to the
liveness figure (:data:`MEASURED_TOLERANCE`, on the families of :data:`MEASURED_ON`).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .rss import can_reset_peak
from .worker import run_python

PRECISIONS = ("fp32", "fp16", "int8")
# In the liveness settings (arena, memory patterns, prepacking off, basic optimisation; glibc's mmap threshold fixed)
# ONNX Runtime's resident memory is 0 to +26% above the fp32 liveness peak: measured 2026-12-07 (AMD EPYC, ONNX
# Runtime 1.32, 224 px, simplified graphs): ResNet-50 +5.5%, MobileNet v1 +5.7%, MobileNetV3-L +10.0%, MobileNetV2
# +11.5%, SqueezeNet 1.1 +14.3%, DenseNet-121 +15.9%, ShuffleNetV2 x1.0 +23.6%, EfficientNet-B0 +26.0% (convolution
# scratch and ONNX Runtime's own per-node allocations, which the liveness model leaves out; largest where the
# activations are small beside them). tests/test_memory.py checks the families of MEASURED_ON. Not what a
# deployment sees: DEPLOYED_TOLERANCE is for edgecnn's own settings.
MEASURED_TOLERANCE = 0.30
MEASURED_ON = ("resnet50", "mobilenet_v2", "densenet121")  # three families: residual adds, depthwise, concatenations
# The deployed peak with edgecnn's ONNX Runtime settings ~ a x weights outside fully connected layers + a' x those of
# Gemm/MatMul layers + b x peak activations + c MiB (fp32, one image, a fresh process's first session, model read from
# its file). c is measured, not fitted: the deployed peak of a one-node model (ONNX Runtime's environment, kernel
# registry and thread pool: what a first session costs whatever the model). ONNX Runtime holds a convolution's weights
# about 2.7 times (the parsed model, the session's copy re-laid out for its kernels) and a fully connected layer's
# about 1.7 times (prepacked for its GEMM); one factor for both left VGG at +32% and AlexNet at +40%. The factors are
# fitted by benchmarks/memory_tolerance.py on resnet, densenet, mobilenet_v2, squeezenet and vgg only; the tolerance
# is the largest error over every measured family, held-out ones included (mobilenet_v1/v3, shufflenet_v1/v2,
# efficientnet, mnasnet, squeezenext), rounded up to 5%: worst efficientnet +20.5%, mobilenet_v3 +18%, shufflenet_v2
# -16% (benchmarks/results/memory_tolerance.md; measured 2026-12-07 17:28 UTC, refitted 17:40, AMD EPYC (AVX2,
# AVX-512 VNNI), 2 cores under load, ONNX Runtime 1.32.0, edgecnn's default threads). Resident memory after the arena
# and memory-pattern allocations depends on what glibc kept from loading the model, so the figure is an estimate;
# --measure gives this machine's.
DEPLOYED_MODEL = (2.65, 1.66, 2.89, 9.1)
DEPLOYED_TOLERANCE = 0.25
DEPLOYED_TOLERANCE_BY_FAMILY: dict[str, float] = {}  # none needed: every measured family is within 25%
DEPLOYED_MEASURED = ("benchmarks/memory_tolerance.py, 2026-12-07, AMD EPYC (AVX-512 VNNI), ONNX Runtime 1.32: worst "
                     "error efficientnet +20.5%, mobilenet_v3 +18%, on 12 families, 7 of them held out of the fit")
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
    gemm_weight_bytes: int = 0  # the part of weight_bytes that Gemm/MatMul layers (fully connected) hold

    @property
    def peak_bytes(self) -> int:
        return self.weight_bytes + self.peak_activation_bytes


@dataclass
class InferenceMemory:
    model: str
    resolution: int
    per_precision: dict[str, GraphMemory]
    measured: dict | None = None  # ONNX Runtime in the liveness settings, fp32 (measure_onnxruntime)
    deployed: dict | None = None  # ONNX Runtime with edgecnn's own settings, fp32 (probe, "deployed")
    family: str = ""

    @property
    def tolerance(self) -> float:
        return DEPLOYED_TOLERANCE_BY_FAMILY.get(self.family, DEPLOYED_TOLERANCE)

    @property
    def estimate_bytes(self) -> int | None:
        """The fp32 deployed peak with edgecnn's ONNX Runtime settings, estimated from the liveness figures."""
        return deployed_estimate(self.per_precision["fp32"]) if "fp32" in self.per_precision else None

    @property
    def gap(self) -> float | None:
        """Estimate / measured deployed peak - 1 (None where not measured)."""
        est = self.estimate_bytes
        return None if not self.deployed or est is None else est / self.deployed["peak_bytes"] - 1

    @property
    def within_tolerance(self) -> bool | None:
        return None if self.gap is None else abs(self.gap) <= self.tolerance

    def to_dict(self, layers: bool = False) -> dict:
        out = {"model": self.model, "resolution": self.resolution, "measured_onnxruntime_fp32": self.measured,
               "deployed_estimate_bytes": self.estimate_bytes, "deployed_tolerance": self.tolerance,
               "deployed_model": {"other_weights_x": DEPLOYED_MODEL[0], "gemm_weights_x": DEPLOYED_MODEL[1],
                                  "activations_x": DEPLOYED_MODEL[2], "constant_mib": DEPLOYED_MODEL[3],
                                  "measured": DEPLOYED_MEASURED},
               "deployed_measured": self.deployed, "deployed_gap": self.gap,
               "deployed_within_tolerance": self.within_tolerance}
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

        def mib(v):
            return f"{v / 2**20:.2f} MiB"

        rows = [[p, mib(g.weight_bytes), mib(g.peak_activation_bytes), mib(g.peak_bytes), escape(g.peak_node)]
                for p, g in self.per_precision.items()]
        if self.estimate_bytes is not None:
            rows.append(["fp32 deployed, estimate", "-", "-", mib(self.estimate_bytes),
                         f"edgecnn's ONNX Runtime settings, +/-{self.tolerance:.0%}"])
        if self.deployed:
            d = self.deployed
            rows.append(["fp32 deployed, measured", mib(d["loaded_bytes"]),
                         mib(d["run_peak_bytes"] - d["loaded_bytes"]),
                         mib(d["peak_bytes"]), "fresh process, edgecnn's settings"])
        if self.measured:
            m = self.measured
            rows.append(["fp32 liveness settings, measured", mib(m["weight_bytes"]), mib(m["activation_bytes"]),
                         mib(m["weight_bytes"] + m["activation_bytes"]), "arena, patterns, prepacking off"])
        cols = [Col("precision", "left"), Col("weights"), Col("live activations at peak"),
                Col("peak (weights + activations)"), Col("at node", "left", drop=1)]
        return fit(cols, rows, title=f"{escape(self.model)} @ {self.resolution}x{self.resolution}: deployed inference "
                                     "peak memory (batch 1)", con=con)

    def notes(self) -> list[str]:
        mib = 2**20
        conv, fc, act, c = DEPLOYED_MODEL
        lines = ["inference peak (liveness): weights + the largest set of activations alive at once when the exported "
                 "ONNX runs node by node (BatchNorm folded; in-place and view ops allocate nothing); int8 as ONNX "
                 "Runtime's QLinear kernels hold it (1-byte activations and weights, int32 biases, fp32 I/O)",
                 f"deployed estimate: {conv} x weights ({fc} x those of fully connected layers) + {act} x activations "
                 f"+ {c} MiB, what ONNX Runtime with edgecnn's "
                 "own session options (arena, memory patterns, all graph optimisations, prepacking) takes above the "
                 "liveness figure: the first session's one-time cost, the parsed model kept beside the session's "
                 "weights, weights re-laid out for its "
                 "kernels (NCHWc, prepacked GEMM), the arena and memory-pattern blocks, convolution scratch; within "
                 f"+/-{self.tolerance:.0%} of a fresh process's resident memory ({DEPLOYED_MEASURED})"]
        if self.deployed:
            d, g = self.deployed, self.per_precision.get("fp32")
            line = (f"measured (a fresh process's first session, edgecnn's settings, model read from its file): "
                    "deployed peak "
                    f"{d['peak_bytes'] / mib:.1f} MiB; the estimate is {self.gap:+.1%} from it")
            line += (f", within the stated +/-{self.tolerance:.0%}" if self.within_tolerance else
                     f": OUTSIDE the stated tolerance of +/-{self.tolerance:.0%} (the estimate does not hold for this "
                     "model; budget the measured figure)")
            if g is not None:
                line += (f"; the gap to the liveness figure ({g.peak_bytes / mib:.1f} MiB): session creation "
                         f"{(d['loaded_bytes'] - g.weight_bytes) / mib:+.1f} MiB (the runtime's one-time cost, parsed "
                         f"model, re-laid-out and prepacked weights), runs "
                         f"{(d['run_peak_bytes'] - d['loaded_bytes'] - g.peak_activation_bytes) / mib:+.1f} "
                         "MiB (arena, memory-pattern block, scratch)")
            lines.append(("WARNING: " if not self.within_tolerance else "") + line)
            if self.measured and g is not None:
                m = self.measured
                held = m["weight_bytes"] + m["activation_bytes"]
                lgap = held / g.peak_bytes - 1
                line = (f"in the liveness settings (arena, patterns, prepacking off, basic optimisation) ONNX Runtime "
                        f"holds {held / mib:.1f} MiB, {lgap:+.1%} against the liveness figure")
                if abs(lgap) > MEASURED_TOLERANCE:
                    line = (f"WARNING: {line}: OUTSIDE that figure's stated tolerance of +/-{MEASURED_TOLERANCE:.0%} "
                            "(stated from eight families at 224 px, measured 0 to +26% there)")
                lines.append(line)
            lines.append("loaded from bytes (edgecnn check and predict read the verified file first) add the file's "
                         "size while the session lives")
        return lines


def deployed_estimate(g: GraphMemory) -> int:
    """Peak resident growth of an fp32 ONNX Runtime session with edgecnn's settings, one image: see DEPLOYED_MODEL."""
    conv, fc, act, c = DEPLOYED_MODEL
    return int(conv * (g.weight_bytes - g.gemm_weight_bytes) + fc * g.gemm_weight_bytes + act * g.peak_activation_bytes
               + c * 2**20)


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
    gemm = {name for node in g.node if node.op_type in ("Gemm", "MatMul") for name in node.input[1:3]}
    weight_bytes = gemm_bytes = 0
    for init in g.initializer:
        arr_shape = tuple(init.dims)
        r = role.get(init.name, "other")
        b, _ = _size(arr_shape, init.data_type, precision, r)
        weight_bytes += b
        gemm_bytes += b if init.name in gemm else 0
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
                       activation_total_bytes=sum(r.bytes for r in rows), tensors=rows, gemm_weight_bytes=gemm_bytes)


def export_for_analysis(name: str, dest: str | Path, *, resolution: int | None = None,
                        options: dict | None = None) -> Path:
    """Export a registered model (random init: shapes are what matter) to an fp32 ONNX file."""
    import torch

    from ..exporters.simplify import simplify_onnx
    from ..exporters.torch_onnx import export_onnx
    from ..models import get_spec
    from ..models._factory import build_model

    spec = get_spec(name)
    options = dict(options or {})
    num_classes = options.pop("num_classes", None) or spec.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(spec, num_classes, options).eval()
    dest = Path(dest)
    raw = export_onnx(model, dest.with_name(dest.stem + "-raw.onnx"), input_shape=spec.input_shape(resolution))
    # The graph a deployment runs is the simplified one (constants folded: a TF-style padding's shape
    # arithmetic otherwise leaves the shapes after it unknown to shape inference); the raw export where onnxsim fails.
    simplified, _ = simplify_onnx(raw, dest)
    if simplified is None:
        Path(raw.path).replace(dest)
    else:
        Path(raw.path).unlink()
    return dest


def inference_memory(name: str, *, resolution: int | None = None, options: dict | None = None,
                     precisions: tuple[str, ...] = PRECISIONS, measure: bool = False) -> InferenceMemory:
    """Export ``name`` and analyse its graph per precision; with ``measure``, measure fp32 on ONNX Runtime in
    fresh processes: with edgecnn's own settings (the deployed peak) and in the liveness settings."""
    import onnx

    from ..models import get_spec

    res = get_spec(name).check_resolution(resolution)
    with tempfile.TemporaryDirectory(prefix="edgecnn-memory-") as work:
        path = export_for_analysis(name, Path(work) / "model.onnx", resolution=res, options=options)
        model = onnx.load(str(path))
        per = {p: graph_memory(model, p) for p in precisions}
        measured = measure_onnxruntime(path) if measure else None
        deployed = probe(path) if measure and can_reset_peak() else None
    return InferenceMemory(model=name, resolution=res, per_precision=per, measured=measured, deployed=deployed,
                           family=get_spec(name).family)


def probe(path: str | Path, *, threads: int | None = None, mode: str = "deployed", env: dict | None = None) -> dict:
    """Resident memory of an ONNX Runtime session of ``path`` in a fresh process (:mod:`.memory_probe`): ``mode``
    deployed (edgecnn's own session options) or liveness (what the liveness model counts). A worker that fails
    raises: a broken measurement is a failure, never a silent "cannot measure here"."""
    proc = run_python(["-m", "edgecnn.harness.memory_probe", str(path), str(threads or 0), mode], timeout=600, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {Path(path).name} on ONNX Runtime failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_onnxruntime(path: str | Path) -> dict | None:
    """Resident-memory growth of an ONNX Runtime session (weights) and of its runs (activations), in the
    configuration the liveness model describes (arena, memory patterns, prepacking off; basic optimisation).

    Runs in a fresh Python process, so nothing else of ours is in the count. None where ``/proc``
    cannot say (not Linux: no ``clear_refs`` to reset the peak); a worker that fails raises.
    """
    if not can_reset_peak():
        return None
    # A fixed mmap threshold makes glibc return every large freed block to the system at once, so resident memory
    # follows the live tensors instead of the allocator's high-water mark.
    m = probe(path, mode="liveness", env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    return {"weight_bytes": m["loaded_bytes"], "activation_bytes": m["run_peak_bytes"] - m["loaded_bytes"]}
