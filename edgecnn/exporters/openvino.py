"""OpenVINO IR (.xml + .bin) for fp32, fp16 and int8.

int8 has three routes, all built and measured by the pipeline, which records the better one for this machine and
which route each CPU architecture gets (:data:`ROUTE_TARGETS`):
- ``qdq``: OpenVINO reads the QDQ ONNX directly (same scales as the ONNX Runtime model);
- ``nncf``: NNCF post-training quantization of the fp32 IR on the same calibration images;
- ``s8s8``: the IR of a QDQ ONNX with symmetric int8 activations (zero point 0), the route that compiles on ARM.

Measured (OpenVINO 2026.4's aarch64 wheel under qemu-aarch64; benchmarks/arm_fidelity.py for more models): on
``cortex-a72`` (no dot-product: Raspberry Pi 4) ``compile_model`` of the ``qdq`` IR (u8s8: asymmetric u8
activations) fails with "object is not initialized" for MobileNetV2 (224 px) and SqueezeNet 1.1 (64 px), and so
does the ``nncf`` IR of MobileNetV2 (u8 activations after ReLU; NNCF's "performance" and "mixed" presets alike;
SqueezeNet's compiles); the ``s8s8`` IR compiles for both and runs MobileNetV2's 35 non-depthwise convolutions
and its classifier in int8 (ACL), the 17 depthwise ones in f32. On ``cortex-a76`` all three compile for
MobileNetV2, and in int8 run: ``qdq`` 19 of 53 layers (17 more as f16 GEMMs under the default f16 hint),
``nncf`` 29, ``s8s8`` 36; depthwise convolutions never run in int8 there. On x86 (AMD EPYC, AVX-512 VNNI) ``s8s8`` is slower than ``qdq``
(EfficientNet-Lite0: 51 vs 39 ms median p50 in 8 alternating rounds, under load) at the same cosine to 3
decimals, so x86 keeps its measured choice and ARM gets ``s8s8``; the export's default (what a folder carried to
any CPU runs) is ``s8s8`` when it passes, the one route that compiles on every architecture.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from .. import hostinfo
from ..artifact import Artifact, describe, rt_info_path
from ..backends.openvino import ov as _ov
from ..errors import ExportError, backend_message
from ..fileio import place, temp_dir
from .graph import chunks, static_batch


def save_ir(model, dest_xml: Path, *, compress_to_fp16: bool, metadata: dict[str, str] | None = None) -> None:
    """Write the .xml/.bin pair into a temporary folder, then move both into place (.bin first).
    ``metadata`` (:func:`edgecnn.exporters.metadata.model_metadata`) goes into the IR's rt_info."""
    ov = _ov()
    for key, value in (metadata or {}).items():
        model.set_rt_info(value, rt_info_path(key))
    dest_xml = Path(dest_xml)
    dest_xml.parent.mkdir(parents=True, exist_ok=True)
    with temp_dir(dest_xml.parent, "ir") as work:
        tmp_xml = work / dest_xml.name
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        except RuntimeError as e:  # OpenVINO reports a full disk as an iostream error, without errno
            raise ExportError(f"OpenVINO could not write {dest_xml} ({backend_message(e)}); "
                              "is the disk full?") from None
        place(tmp_xml.with_suffix(".bin"), dest_xml.with_suffix(".bin"))
        place(tmp_xml, dest_xml)


def convert_ir(src: Artifact, dest_xml: str | Path, *, precision: str,
               metadata: dict[str, str] | None = None) -> Artifact:
    """ONNX (fp32 or QDQ int8) -> IR. ``precision="fp16"`` stores fp16 weights (compress_to_fp16)."""
    ov = _ov()
    try:
        model = ov.convert_model(str(src.path))
    except Exception as e:  # OpenVINO's frontends raise RuntimeError or their own OpConversionFailure
        raise ExportError(f"OpenVINO could not convert {Path(src.path).name}: {backend_message(e)}") from None
    save_ir(model, Path(dest_xml), compress_to_fp16=precision == "fp16", metadata=metadata)
    route = {"fp16": "fp16-compressed weights", "int8": "from the QDQ ONNX"}.get(precision, "")
    return describe(dest_xml, stage=f"openvino-{precision}" + ("-qdq" if precision == "int8" else ""),
                    precision=precision, parent=src.stage, fmt="openvino", runtime="openvino", notes=route)


QDQ_ROUTE, NNCF_ROUTE, ARM_ROUTE = "openvino-int8-qdq", "openvino-int8-nncf", "openvino-int8-s8s8"
# Which CPU architectures each int8 route is for (see the module docstring for the measurements): a route that
# fails to compile on the Cortex-A72 is not offered to ARM.
ROUTE_TARGETS = {QDQ_ROUTE: ("x86",), NNCF_ROUTE: ("x86",), ARM_ROUTE: ("x86", "arm")}


def target_arch(machine: str | None = None) -> str:
    """``"arm"`` or ``"x86"`` (the key of :data:`ROUTE_TARGETS`) for ``platform.machine()`` (default: this one)."""
    import platform

    m = (machine or platform.machine()).lower()
    return "arm" if m.startswith(("arm", "aarch64")) else "x86"


def arm_recipe(recipe):
    """The QDQ recipe of the ``s8s8`` route from the export's ``recipe`` (an ``Int8Recipe``): int8 activations
    with zero point 0, everything else the user chose kept. 7-bit weights everywhere where the recipe asked for
    7-bit weights anywhere (saturation-aware: x86 CPUs without VNNI run this IR too, and saturate alike)."""
    from dataclasses import replace

    return replace(recipe, preset="s8s8", activation_type="int8", weight_type="int8", saturation_aware=False,
                   reduce_range=recipe.reduce_range or recipe.saturation_aware or bool(recipe.reduce_range_nodes),
                   reduce_range_nodes=())


def quantize_s8s8(base: Artifact, dest_xml: str | Path, calibration: np.ndarray, *, recipe, opset: int,
                  metadata: dict[str, str] | None = None, progress: bool = True) -> Artifact:
    """The ``s8s8`` route: ``base`` (fp32 ONNX) quantized with :func:`arm_recipe` (ONNX Runtime's quantizer,
    bias correction included) into a temporary QDQ ONNX, then read by OpenVINO into an IR at ``dest_xml``."""
    from .int8 import quantize_int8

    sym = arm_recipe(recipe)
    dest_xml = Path(dest_xml)
    dest_xml.parent.mkdir(parents=True, exist_ok=True)
    with temp_dir(dest_xml.parent, "s8s8") as work:
        qdq = quantize_int8(base, work / "model.s8s8.onnx", calibration, recipe=sym, opset=opset, progress=progress)
        convert_ir(qdq, dest_xml, precision="int8", metadata=metadata)
    return describe(dest_xml, stage=ARM_ROUTE, precision="int8", parent=base.stage, fmt="openvino",
                    runtime="openvino", notes=f"from a symmetric-activation QDQ ONNX ({qdq.notes}); compiles on ARM "
                    "(Cortex-A72 included), where the u8-activation routes do not")


def default_overflow_fix(isa: list[str] | None = None) -> str:
    """NNCF's ``overflow_fix`` for the ISA this process sees: ``"enable"`` (7-bit weights in every
    Conv/MatMul) where int8 kernels add u8 x s8 pairs into a saturating int16 (x86 without VNNI; oneDNN's
    kernels do, as ONNX Runtime's do), NNCF's own default ``"first_layer_only"`` elsewhere.

    Measured, EfficientNet-Lite0 real weights, held-out crops, per-tensor activations, on an AVX2 CPU
    without VNNI (AMD EPYC Zen 3): cosine 0.900 with the fix off, 0.961 first layer only, 0.991
    everywhere (benchmarks/results/int8_fidelity.md)."""
    return "enable" if hostinfo.saturates_u8s8(isa) else "first_layer_only"


@contextlib.contextmanager
def _nncf_output(progress: bool):
    """NNCF's progress bars (``nncf.common.logging.track_progress.track``: rich, on rich's global console) and
    INFO log lines, shown only with ``progress``; without, that console is quiet and NNCF logs warnings only."""
    if progress:
        yield
        return
    import rich
    from nncf.common.logging.logger import nncf_logger, set_log_level

    console, level = rich.get_console(), nncf_logger.level
    quiet, console.quiet = console.quiet, True
    set_log_level(logging.WARNING)
    try:
        yield
    finally:
        console.quiet = quiet
        set_log_level(level)


def quantize_nncf(fp32_ir: Artifact, dest_xml: str | Path, calibration: np.ndarray, *,
                  fast_bias_correction: bool = True, overflow_fix: str | None = None,
                  per_tensor_activations: bool = True, metadata: dict[str, str] | None = None,
                  progress: bool = True) -> Artifact:
    """NNCF post-training quantization of the fp32 IR (``per_tensor_activations=False``: NNCF's own default).
    ``progress=False`` (``--quiet``, or not a terminal): NNCF draws no progress bar and logs warnings only.

    ``overflow_fix``: ``"enable"`` | ``"first_layer_only"`` | ``"disable"``; None: :func:`default_overflow_fix`."""
    ov = _ov()
    import nncf

    model = ov.Core().read_model(str(fp32_ir.path))
    dims = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
    items = [chunk for chunk, _ in chunks(calibration, static_batch(dims))]  # as many inputs as the IR's fixed batch
    dataset = nncf.Dataset(items)
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, OverflowFix,
                                                       QuantizationParameters)

    overflow_fix = overflow_fix or default_overflow_fix()
    # Per-tensor activation scales: NNCF's default gives depthwise-conv inputs per-channel scales, and
    # channels the calibration photos barely excite get ranges far too small that clip on new photos
    # (measured, EfficientNet-Lite0 real weights: cosine 0.879 default -> 0.9925 per-tensor).
    extra = {"overflow_fix": OverflowFix(overflow_fix)}
    if per_tensor_activations:
        extra["activations_quantization_params"] = QuantizationParameters(per_channel=False)
    advanced = AdvancedQuantizationParameters(**extra)
    with _nncf_output(progress):
        quantized = nncf.quantize(model, dataset, subset_size=len(items), fast_bias_correction=fast_bias_correction,
                                  advanced_parameters=advanced)
    save_ir(quantized, Path(dest_xml), compress_to_fp16=False, metadata=metadata)
    note = (f"NNCF PTQ on {len(calibration)} images" + (", per-tensor activations" if per_tensor_activations else "")
            + f", overflow fix {overflow_fix}" + (" (7-bit weights: AVX2 without VNNI saturates int16 pairs)"
                                                  if overflow_fix == "enable" else ""))
    return describe(dest_xml, stage="openvino-int8-nncf", precision="int8", parent=fp32_ir.stage, fmt="openvino",
                    runtime="openvino", notes=note)
