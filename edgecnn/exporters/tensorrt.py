"""ONNX -> TensorRT engine, built as a strongly typed network.

Why strongly typed: TensorRT 11 removed the FP16/INT8 builder flags and implicit int8
calibration, so precision must live in the ONNX graph itself (an fp16 ONNX gives an fp16 engine,
a QDQ ONNX with zero-point-0 Q/DQ gives int8). TensorRT 10 supports the same mode, so one code
path serves both and the engine computes exactly what the parity-checked ONNX computes. TF32 is
switched off for the same reason: an fp32 artifact promises fp32 math.

An engine only runs on the TensorRT version and GPU architecture that built it, so a sidecar
``model.<precision>.engine.json`` records both; the runtime refuses a mismatch with a clear
message instead of TensorRT's deserialization error (:mod:`edgecnn.backends.tensorrt` holds what the
builder and the runtime share).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..artifact import Artifact, describe
from ..backends.tensorrt import gpu_info, major_version, make_logger, require, sidecar_path
from ..errors import ArtifactError, ConfigError, ExportError
from ..fileio import atomic_path
from ..guard import read_nofollow

log = logging.getLogger("edgecnn.tensorrt")


# --- building -------------------------------------------------------------------------------
def build_engine(onnx: Artifact, out_dir: Path, *, input_shape: tuple[int, int, int, int],
                 dynamic_batch: int | None = None, workspace_mib: int = 1024,
                 timing_cache: Path | None = None, device: int = 0) -> Artifact:
    """Build ``out_dir/model.<precision>.engine`` from an ONNX artifact; returns its Artifact.

    ``dynamic_batch=N`` builds one profile for batch 1..N (optimised for ``input_shape[0]``);
    the ONNX must then have a dynamic batch axis. ``timing_cache`` is read if it exists and
    written back after the build, so rebuilding on the same GPU skips most kernel timing.
    """
    trt = require()

    profile = _profile_shapes(input_shape, dynamic_batch)
    if onnx.format != "onnx":
        raise ConfigError(f"TensorRT builds from an ONNX artifact, got format '{onnx.format}'")
    if not Path(onnx.path).is_file():
        raise ArtifactError(f"ONNX file not found: {onnx.path}")
    if workspace_mib < 1:
        raise ConfigError(f"workspace_mib must be >= 1, got {workspace_mib}")
    dest = Path(out_dir) / f"model.{onnx.precision}.engine"
    with torch.cuda.device(device):  # TensorRT builds for the current CUDA device
        logger = make_logger(trt)
        builder = trt.Builder(logger)
        network, _parser, strongly_typed = _parse(trt, builder, logger, Path(onnx.path))
        io = _check_io(network, profile)
        config, tf32 = _builder_config(trt, builder, network, profile, workspace_mib)
        cache, cache_read = _attach_timing_cache(config, timing_cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            detail = logger.errors[-1] if logger.errors else "see the TensorRT log"
            raise ExportError(f"TensorRT could not build {Path(onnx.path).name}: {detail}")
        with atomic_path(dest) as tmp:
            tmp.write_bytes(memoryview(serialized))
        if cache is not None:
            with atomic_path(timing_cache) as tmp:
                tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
        built = {"strongly_typed": strongly_typed, "tf32": tf32, "timing_cache": cache_read}
        _write_sidecar(dest, onnx, io, profile, gpu_info(device), built)
    return describe(dest, stage="tensorrt", precision=onnx.precision, parent=onnx.stage,
                    fmt="tensorrt", runtime="tensorrt", notes=_notes(built))


def _profile_shapes(shape: tuple[int, ...], dynamic_batch: int | None) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes: all ``shape``, or batch 1..``dynamic_batch``."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 4 or any(d < 1 for d in shape):
        raise ConfigError(f"input_shape must be 4 positive ints (N, C, H, W), got {shape}")
    if dynamic_batch is None:
        return shape, shape, shape
    if dynamic_batch < shape[0]:
        raise ConfigError(f"dynamic_batch ({dynamic_batch}) must be >= the batch of input_shape ({shape[0]})")
    return (1, *shape[1:]), shape, (int(dynamic_batch), *shape[1:])


def _parse(trt: Any, builder: Any, logger: Any, path: Path) -> tuple[Any, Any, bool]:
    """A strongly typed network from the ONNX file, and whether it is one; parser errors -> ExportError."""
    # TensorRT 11 always builds strongly typed (it keeps the flag, ignored); TensorRT 10 needs it set.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    always = (major_version(trt.__version__) or 0) >= 11
    strongly_typed = always or (flag is not None and bool(network.get_flag(flag)))
    parser = trt.OnnxParser(network, logger)
    # ``path`` lets the parser find weights stored beside the model (ONNX external data).
    if not parser.parse(path.read_bytes(), str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0] if errors else (logger.errors[-1] if logger.errors else "unknown parser error")
        raise ExportError(f"TensorRT could not parse {path.name} ({len(errors)} error(s)); first: {first}")
    # the parser owns weights the network points at: keep it until the build
    return network, parser, strongly_typed


def _check_io(network: Any, profile: tuple[tuple[int, ...], ...]) -> dict[str, str]:
    """One input and one output; the input's fixed dimensions must agree with the profile."""
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise ExportError(f"expected one input and one output, the ONNX has {network.num_inputs} and "
                          f"{network.num_outputs}")
    inp = network.get_input(0)
    dims = tuple(inp.shape)
    lo, _, hi = profile
    for axis, d in enumerate(dims):
        if d != -1 and not lo[axis] == hi[axis] == d:
            want = "a dynamic batch axis (export with dynamic_batch)" if axis == 0 else f"{lo[axis]} on axis {axis}"
            raise ConfigError(f"the ONNX input '{inp.name}' has shape {dims}; the engine needs {want}")
    return {"input": inp.name, "output": network.get_output(0).name}


def _builder_config(trt: Any, builder: Any, network: Any, profile: tuple[tuple[int, ...], ...],
                    workspace_mib: int) -> tuple[Any, bool | None]:
    """Workspace limit, TF32 off and, for a dynamic input, the one optimisation profile; with the TF32
    flag as the config holds it after that (``None``: this TensorRT has no TF32 flag)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    tf32_flag = getattr(trt.BuilderFlag, "TF32", None)
    if tf32_flag is not None:
        config.clear_flag(tf32_flag)  # keep fp32 layers in full fp32: the precision is the ONNX's
    # Every layer's formats and precisions in the engine inspector (runtimes/executed.py reads them back);
    # a TensorRT without the setting (before 8.2) lists layer names only, and the record says so.
    detailed = getattr(getattr(trt, "ProfilingVerbosity", None), "DETAILED", None)
    if detailed is not None:
        config.profiling_verbosity = detailed
    inp = network.get_input(0)
    if any(d == -1 for d in inp.shape):  # a static input needs (and gets) no profile
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, *profile)
        config.add_optimization_profile(opt_profile)
    return config, None if tf32_flag is None else bool(config.get_flag(tf32_flag))


def _attach_timing_cache(config: Any, path: Path | None) -> tuple[Any, dict | None]:
    """Load the persistent timing cache (or start an empty one) and attach it to ``config``; with what
    was read: {"file", "read_bytes" (0: a new cache), "accepted"}."""
    if path is None:
        return None, None
    blob = read_nofollow(path, "timing cache") or b""  # no symlink followed, size bounded
    cache = config.create_timing_cache(blob)
    accepted = cache is not None and bool(config.set_timing_cache(cache, False))
    if not accepted:
        log.warning("timing cache %s is unusable here (other TensorRT or GPU?); starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache, {"file": Path(path).name, "read_bytes": len(blob), "accepted": accepted}


def _notes(built: dict) -> str:
    """What the build actually set, for the artifact's notes."""
    tf32 = {False: "TF32 off", True: "TF32 ON", None: "no TF32 flag"}[built["tf32"]]
    cache = built["timing_cache"]
    reused = cache and cache["accepted"] and cache["read_bytes"]
    reused = f"; timing cache reused ({cache['read_bytes']} bytes)" if reused else ""
    return f"{'strongly typed' if built['strongly_typed'] else 'NOT strongly typed'}; {tf32}{reused}"


def _write_sidecar(engine: Path, onnx: Artifact, io: dict[str, str], profile: tuple[tuple[int, ...], ...],
                   host: dict[str, str], built: dict) -> None:
    """The build record: the TensorRT version and GPU it was built for, and what the build actually set."""
    meta = {**host, "precision": onnx.precision, "onnx": Path(onnx.path).name, "onnx_sha256": onnx.sha256,
            "input": io["input"], "output": io["output"],
            "profile": {"min": list(profile[0]), "opt": list(profile[1]), "max": list(profile[2])}, **built}
    with atomic_path(sidecar_path(engine)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
