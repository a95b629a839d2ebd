"""Static post-training int8 quantization to a QDQ ONNX (onnxruntime.quantization).

Two layouts matter, and no single one is best everywhere (measured, SqueezeNet 1.1, 2 threads,
AMD EPYC with AVX-512 VNNI: ORT fp32 6.6 ms, U8S8 5.2 ms, S8S8 14.4 ms):
- ``u8s8``: uint8 asymmetric activations, per-channel symmetric int8 weights. ONNX Runtime's
  fast CPU kernels are U8S8; OpenVINO reads it too.
- ``s8s8``: int8 activations and weights, zero point 0 everywhere: what TensorRT's explicit
  quantization requires (and valid for OpenVINO); slow on ONNX Runtime's x86 CPU path.
- ``u8s8-saturation-aware``: the default on AVX2 CPUs without VNNI, where the U8S8 kernel's
  VPMADDUBSW adds pairs of u8 x s8 products into saturating int16: 7-bit weights only in the output
  channels where saturation, measured on the calibration images, costs more than 7-bit rounding
  (:mod:`.saturation`); 8-bit everywhere else.
- ``u8s8-reduce-range``: 7-bit weights everywhere (ORT's global ``reduce_range``).
Measured on EfficientNet-Lite0 (real weights, 120 held-out crops; benchmarks/int8_fidelity.py), logit
cosine on ONNX Runtime's real AVX2 kernels (AMD EPYC Zen 3, no VNNI; the same under QEMU Haswell),
all with bias correction: u8s8 0.922, u8s8-reduce-range 0.994, u8s8-saturation-aware 0.998 (7-bit
weights in ~6% of the output channels); with int32 accumulation (VNNI) u8s8 gives 0.998. On that AVX2
CPU ONNX Runtime's s8s8 kernels lose more still (0.769): TensorRT's model is judged through its engine.
Two optional passes (:mod:`.bias_correction`, on by default; :mod:`.equalize`, opt-in), measured on
the same model and crops with ORT: bias correction u8s8 0.9953 -> 0.9983, u8s8-reduce-range 0.980 ->
0.994, per-tensor weights larger still; cross-layer equalisation finds only 2 ReLU/linear pairs in
Lite0 (ReLU6 is not crossed) and changes per-channel results by < 0.001; on a random ShuffleNet v1
it raised the emulated AVX2 saturation (cosine 0.9957 -> 0.9804): hence opt-in (benchmarks/int8_passes.py).
The preset is chosen from the ISA the process sees (:func:`default_preset`), recorded in the manifest,
and can be overridden. Calibration statistics come from real images preprocessed exactly as
the model expects.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import hostinfo
from ..artifact import INPUT_NAME, Artifact, describe
from ..errors import CalibrationDataError, ConfigError, ExportError
from ..fileio import atomic_path, temp_dir
from . import bias_correction, equalize, saturation
from .graph import chunks, consumers, static_batch

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis attribute) needs 13


@dataclass(frozen=True)
class Int8Recipe:
    preset: str = "u8s8"  # the preset this recipe starts from (recorded in the manifest)
    per_channel: bool = True
    activation_type: str = "uint8"  # uint8 (asymmetric) | int8 (symmetric, zero point 0)
    weight_type: str = "int8"
    reduce_range: bool = False  # 7-bit weights: avoids u8*s8 pair saturation on AVX2 without VNNI
    calibration: str = "minmax"
    percentile: float = 99.999
    exclude_nodes: tuple[str, ...] = field(default_factory=tuple)  # kept in float (sensitivity fallback)
    reduce_range_nodes: tuple[str, ...] = field(default_factory=tuple)  # Conv/Gemm nodes given 7-bit weights
    saturation_aware: bool = False  # 7-bit weights only where int16 pair saturation costs more (saturation.py)
    equalize: bool = False  # cross-layer equalisation of Conv-Relu-Conv pairs first (equalize.py)
    bias_correction: bool = True  # remove the mean output shift of int8 weights (bias_correction.py)
    # TensorRT (:func:`tensorrt_recipe`): its DequantizeLinear takes only int8/fp8/int4 inputs, so biases stay
    # float (ONNX Runtime fuses int32 biases into QLinearConv, so its route keeps them); and its placement
    # guidance leaves the outputs of the last layers unquantized: the logits stay float.
    quantize_bias: bool = True
    quantize_output: bool = True

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got '{self.calibration}'")
        if self.activation_type not in ("int8", "uint8") or self.weight_type not in ("int8", "uint8"):
            raise ConfigError("activation/weight type must be int8 or uint8")

    @property
    def u8s8(self) -> bool:
        """The layout whose AVX2 (non-VNNI) kernels saturate int16 pair sums."""
        return self.activation_type == "uint8" and self.weight_type == "int8"

    @property
    def symmetric(self) -> bool:
        """Zero point 0 for activations and weights: what TensorRT needs."""
        return self.activation_type == "int8" and self.weight_type == "int8"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude_nodes"] = list(self.exclude_nodes)
        d["reduce_range_nodes"] = list(self.reduce_range_nodes)
        return d


PRESETS = {
    "u8s8": Int8Recipe(),
    "u8s8-saturation-aware": Int8Recipe(preset="u8s8-saturation-aware", saturation_aware=True),
    "u8s8-reduce-range": Int8Recipe(preset="u8s8-reduce-range", reduce_range=True),
    "s8s8": Int8Recipe(preset="s8s8", activation_type="int8"),
}
TENSORRT_PRESET = "s8s8"
TENSORRT_STAGE = "int8-tensorrt"  # the QDQ model made for TensorRT (model.int8-tensorrt.onnx)


def tensorrt_recipe(recipe: Int8Recipe) -> Int8Recipe:
    """The recipe for TensorRT's QDQ model, keeping what the user chose besides the layout: symmetric
    int8 (zero point 0, which TensorRT requires), float biases, float graph outputs.

    Float biases: TensorRT's IDequantizeLayer accepts only int8/fp8/int4 inputs, and ONNX Runtime's
    default int32 bias behind a DequantizeLinear fails its ONNX parser. Float outputs: NVIDIA's placement
    guidance is to quantize the inputs of weighted layers, not their outputs (its ONNX quantizer,
    ModelOpt, drives this same ONNX Runtime quantizer with QuantizeBias=False and no output
    quantization); here only the graph outputs are taken out of Q/DQ (nothing after them can use int8,
    and the logits keep full precision), so the interior keeps the placement the parity table measured."""
    sym = get_preset(TENSORRT_PRESET)
    return replace(recipe, preset=sym.preset, activation_type=sym.activation_type, weight_type=sym.weight_type,
                   reduce_range=False, saturation_aware=False, reduce_range_nodes=(), quantize_bias=False,
                   quantize_output=False)


def default_preset(isa: list[str] | None = None) -> str:
    """The ONNX Runtime CPU preset for the ISA this process runs on (``hostinfo.cpu_info()["isa"]``: what
    the process sees through CPUID, which the kernels dispatch on, not /proc/cpuinfo; they differ under
    emulators and in some VMs)."""
    if hostinfo.saturates_u8s8(isa):  # AVX2 without VNNI: u8 x s8 pairs saturate in int16
        return "u8s8-saturation-aware"  # beats global reduce_range (lite0, real AVX2 kernels: int8_fidelity.md)
    # VNNI / AMX accumulate in int32. So does every ARM core, whatever its HWCAPs (NEON only, dot product, i8mm,
    # SVE): where two products share an int16 lane (the Cortex-A72's kernel, every core's depthwise kernel),
    # only -128 x -128 pairs can wrap, and ONNX Runtime's quantizer writes weights in [-127, 127]; u8s8 is then
    # bit-exact on all of them (tests/test_arm_kernels.py, real kernels under qemu-aarch64). s8s8 is exact too,
    # but spends half its codes on negative values that post-ReLU activations never take.
    return "u8s8"


def get_preset(name: str) -> Int8Recipe:
    if name not in PRESETS:
        raise ConfigError(f"unknown int8 preset '{name}'; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def recipe_for(preset: str | None = None, **overrides) -> Int8Recipe:
    """``preset``'s recipe (``None``: this CPU's default, :func:`default_preset`) with ``overrides``
    (``calibration``, ``per_channel``, ``bias_correction``...; a ``None`` value keeps the preset's).
    The one place where "the default int8 recipe" is decided."""
    return replace(get_preset(default_preset() if preset is None else preset),
                   **{k: v for k, v in overrides.items() if v is not None})


class BatchReader:
    """onnxruntime CalibrationDataReader over an array of preprocessed inputs, with progress.

    ``batch``: the model's fixed batch (1 for a dynamic batch axis): a model exported with ``--batch N``
    takes exactly N inputs, so the calibration images go in N at a time, the last group completed by
    repeating its last image (min/max statistics do not change; histograms count it twice)."""

    def __init__(self, data: np.ndarray, progress: bool = False, batch: int = 1) -> None:
        self.data = data
        self.progress = progress
        self.batch = batch
        self.rewind()

    def _iter(self) -> Iterator[dict]:
        it = chunks(self.data, self.batch)
        if self.progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="int8 calibration", unit="batch", total=-(-len(self.data) // self.batch), leave=False)
        for chunk, _ in it:
            yield {INPUT_NAME: chunk}

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._iter()

    def __iter__(self) -> Iterator[dict]:
        return self._iter()


def quantize_int8(src: Artifact, dest: str | Path, calibration: np.ndarray, *, recipe: Int8Recipe | None = None,
                  opset: int, progress: bool = True) -> Artifact:
    """Quantize ``src`` (fp32 ONNX) with calibration inputs ``calibration`` (N, C, H, W float32)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = recipe or Int8Recipe()
    if recipe.per_channel and opset < MIN_OPSET:
        raise ConfigError(f"per-channel int8 needs opset >= {MIN_OPSET}, got {opset}")
    if calibration.ndim != 4 or len(calibration) == 0:
        raise CalibrationDataError("no calibration inputs")
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[recipe.calibration]
    extra = {
        "ActivationSymmetric": recipe.activation_type == "int8",
        "WeightSymmetric": recipe.weight_type == "int8",
        "CalibPercentile": recipe.percentile,
        "CalibMovingAverage": False,
        "QuantizeBias": recipe.quantize_bias,
    }
    seven_bit = list(recipe.reduce_range_nodes)
    passes: list[str] = []
    _finite_weights(src.path)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with temp_dir(Path(dest).parent, "int8") as work, atomic_path(dest) as tmp:
        prepped = os.path.join(work, "prepped.onnx")
        quant_pre_process(str(src.path), prepped, skip_symbolic_shape=True)
        batch = model_batch(prepped)
        if recipe.equalize:
            import onnx

            model, report = equalize.equalize(onnx.load(prepped), calibration)
            onnx.save(model, prepped)
            passes.append(equalize.summary(report))

        def run(out: str, nodes: list[str]) -> None:
            overrides = _reduce_range_overrides(prepped, nodes, per_channel=recipe.per_channel)
            quantize_static(prepped, out, BatchReader(calibration, progress, batch), quant_format=QuantFormat.QDQ,
                            per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                            activation_type=qtype[recipe.activation_type], weight_type=qtype[recipe.weight_type],
                            calibrate_method=method, nodes_to_exclude=list(recipe.exclude_nodes),
                            extra_options={**extra, "TensorQuantOverrides": overrides} if overrides else extra)

        channels: dict[str, list[int]] = {}
        if recipe.saturation_aware and recipe.u8s8 and not recipe.reduce_range:
            first = os.path.join(work, "first.onnx")
            run(first, seven_bit)
            if recipe.per_channel:  # 7-bit weights in the output channels that need them, 8-bit elsewhere
                channels = saturation.seven_bit_channels(first, prepped, calibration, tmp)
            else:  # one scale per tensor: the whole layer goes 7-bit
                seven_bit += [r["node"] for r in saturation.saturating_layers(first, calibration, criterion="harmful")
                              if r["node"] not in seven_bit]
                run(str(tmp), seven_bit)
        else:
            run(str(tmp), seven_bit)
        if not recipe.quantize_output:
            import onnx

            model = onnx.load(str(tmp))
            passes.append(f"{float_outputs(model)} graph output(s) kept in float")
            onnx.save(model, str(tmp))
        if recipe.bias_correction:
            import onnx

            model, report = bias_correction.correct_bias(onnx.load(str(tmp)), onnx.load(prepped), calibration)
            onnx.save(model, str(tmp))
            passes.append(bias_correction.summary(report))
    note = (f"QDQ, {'per-channel' if recipe.per_channel else 'per-tensor'} {recipe.weight_type} weights, "
            f"{'int32' if recipe.quantize_bias else 'float'} biases, {recipe.activation_type} activations, "
            f"{recipe.calibration} calibration on {len(calibration)} images"
            + (f" (in batches of {batch})" if batch > 1 else ""))
    if seven_bit:
        note += f", 7-bit weights in {len(seven_bit)} layer(s)"
    if channels:
        note += (f", 7-bit weights in {sum(map(len, channels.values()))} output channels of {len(channels)} layers "
                 "(int16 pair saturation on AVX2 without VNNI)")
    for p in passes:
        note += f", {p}"
    return describe(dest, stage="int8", precision="int8", parent=src.stage, notes=note)


def _reduce_range_overrides(model_path: str, nodes: list[str], *, per_channel: bool) -> dict:
    """ORT TensorQuantOverrides giving the weights of ``nodes`` (Conv/Gemm) 7-bit range, axis kept."""
    if not nodes:
        return {}
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    missing = [n for n in nodes if n not in by_name]
    if missing:
        raise ConfigError(f"reduce_range_nodes not in the model: {', '.join(missing[:5])}")
    out = {}
    for name in nodes:
        node = by_name[name]
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
            raise ConfigError(f"7-bit weights need a Conv/Gemm with constant weights; '{name}' is {node.op_type}")
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Conv" or trans_b else 1  # ORT's per-channel axis for these ops
        out[node.input[1]] = [{"axis": axis, "reduce_range": True} if per_channel else {"reduce_range": True}]
    return out


def model_batch(model_path: str | Path) -> int:
    """The fixed batch of the model's input (1 when its batch axis is dynamic)."""
    import onnx

    dims = onnx.load(str(model_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return static_batch([d.dim_value or None for d in dims])


def float_outputs(model) -> int:
    """Take the QuantizeLinear -> DequantizeLinear pair off every graph output of ``model`` (in place), so
    the last layer writes the output in float; returns how many outputs were changed.

    ONNX Runtime quantizes a graph output as ``last -> t -> Q -> DQ -> output``; this rewires ``last`` to
    write ``output`` itself. A pair whose tensors anything else reads is left alone."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = consumers(model)
    outputs = {o.name for o in graph.output}
    dropped = []
    for name in outputs:
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or len(readers.get(q.output[0], [])) != 1:
            continue
        t = q.input[0]
        last = producer.get(t)
        if last is None or len(readers.get(t, [])) != 1 or t in outputs:
            continue
        last.output[list(last.output).index(t)] = name
        dropped += [q, dq]
    for node in dropped:
        graph.node.remove(node)
    gone = {t for node in dropped for t in [*node.input, *node.output]}
    used = {i for n in graph.node for i in n.input} | outputs
    for items in (graph.initializer, graph.value_info):  # the pairs' scales, zero points and tensors
        for item in [i for i in items if i.name in gone and i.name not in used]:
            items.remove(item)
    return len(dropped) // 2


def _finite_weights(path: Path) -> None:
    """int8 scales come from the weights: a NaN or infinite one is named here (not an assertion deep in
    ONNX Runtime's quantizer that blames the conversion)."""
    import onnx
    from onnx import numpy_helper

    for init in onnx.load(str(path), load_external_data=False).graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE) \
                and init.data_location != onnx.TensorProto.EXTERNAL:
            if not np.isfinite(numpy_helper.to_array(init)).all():
                raise ExportError(f"the model's weight '{init.name}' holds NaN or infinite values: int8 needs "
                                  "finite weights (check the checkpoint the model was loaded from)")
