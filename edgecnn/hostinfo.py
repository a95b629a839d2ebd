"""What machine this is: CPU model, cores, the int8-relevant ISA features, library versions.

Recorded in every manifest and benchmark result, because int8 speed and even int8 accuracy
depend on it (AVX2 without VNNI saturates in ONNX Runtime's U8S8 kernels; VNNI, AMX and ARM
dot-product do not).
"""
from __future__ import annotations

import functools
import os
import platform
from importlib import metadata

# /proc/cpuinfo flag -> our name. x86 "flags", ARM "Features".
ISA_FLAGS = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16", "amx_tile": "amx", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
    "asimd": "neon", "asimddp": "arm_dotprod", "i8mm": "arm_i8mm", "sve": "sve", "fphp": "arm_fp16",
}
PACKAGES = ("edgecnn", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "openvino", "nncf", "tensorrt", "numpy")


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:  # macOS / Windows: no /proc; the ISA list stays empty rather than guessed
        pass
    isa = sorted({ours for flag, ours in ISA_FLAGS.items() if flag in flags})
    return {"model": model, "arch": platform.machine(), "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "isa": isa}


def has_vnni(isa: list[str] | None = None) -> bool:
    isa = cpu_info()["isa"] if isa is None else isa
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa))


def has_amx(isa: list[str] | None = None) -> bool:
    """Intel AMX int8 tiles (Sapphire Rapids and later): oneDNN, and so OpenVINO's CPU plugin, use them for int8."""
    isa = cpu_info()["isa"] if isa is None else isa
    return "amx_int8" in isa


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def gpu_info() -> dict | None:
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1)}
    except Exception:  # a broken CUDA install must not break the CPU path
        return None
    return None


def host() -> dict:
    return {"cpu": cpu_info(), "gpu": gpu_info(), "os": platform.platform(), "hostname": platform.node()}
