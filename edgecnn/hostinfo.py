"""What machine this is: CPU model, cores, the int8-relevant ISA features, library versions.

Recorded in every manifest and benchmark result, because int8 speed and even int8 accuracy
depend on it (AVX2 without VNNI saturates in ONNX Runtime's U8S8 kernels; VNNI, AMX and ARM
dot-product do not).

Two views of the ISA, both recorded. ``/proc/cpuinfo`` is what the kernel says about the CPU; the
*process* view is what an instruction-set dispatcher in this process sees, which is what ONNX
Runtime's and OpenVINO's kernels pick their code path from: numpy's runtime CPU-feature table
(CPUID + XGETBV on x86, HWCAP on Linux ARM) and, for what numpy does not name (AVX-VNNI, AMX), CPUID
leaf 7 read here directly. They differ under emulation (``qemu-x86_64 -cpu Haswell`` reports a
Haswell to the process while /proc/cpuinfo lists the host's VNNI and AMX), in some VMs and
containers, and on kernels too old to name a flag. Decisions (the int8 preset) use the process view.
No heavy import here: this module runs under QEMU in CI (numpy only, imported when needed).
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
    "bf16": "arm_bf16", "sve2": "sve2", "sme": "sme",
}
# numpy's __cpu_features__ key -> our name (numpy names neither AVX-VNNI nor AMX nor I8MM).
NUMPY_FEATURES = {
    "AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512", "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16",
    "ASIMD": "neon", "ASIMDDP": "arm_dotprod", "SVE": "sve", "FPHP": "arm_fp16",
}
CPUID_FEATURES = ("avx_vnni", "amx", "amx_int8", "amx_bf16")  # read by _cpuid_features on x86-64
# Linux arm64 HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h) -> our name: (AT_HWCAP or AT_HWCAP2, bit).
AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP_FEATURES = {"neon": (AT_HWCAP, 1), "arm_fp16": (AT_HWCAP, 9), "arm_dotprod": (AT_HWCAP, 20),
                  "sve": (AT_HWCAP, 22), "sve2": (AT_HWCAP2, 1), "arm_i8mm": (AT_HWCAP2, 13),
                  "arm_bf16": (AT_HWCAP2, 14), "sme": (AT_HWCAP2, 23)}
PACKAGES = ("edgecnn", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "openvino", "nncf", "tensorrt", "numpy")


def _read_cpuinfo() -> tuple[str | None, set[str] | None]:
    """(model name, flags) from /proc/cpuinfo; flags None where there is no /proc (macOS, Windows)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip() and model is None:
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        return None, None
    return model, flags


def _numpy_features() -> dict[str, bool] | None:
    """numpy's runtime CPU-feature table (detected at import by CPUID/XGETBV or HWCAP), or None."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:  # numpy < 2
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return None
    return dict(__cpu_features__)


# x86-64 System V machine code. cpuid(leaf=edi, subleaf=esi, out=rdx): out[0..3] = eax, ebx, ecx, edx.
_CPUID_CODE = bytes([
    0x53,                    # push rbx (callee-saved; cpuid writes it)
    0x89, 0xF8,              # mov eax, edi
    0x89, 0xF1,              # mov ecx, esi
    0x49, 0x89, 0xD0,        # mov r8, rdx
    0x0F, 0xA2,              # cpuid
    0x41, 0x89, 0x00,        # mov [r8], eax
    0x41, 0x89, 0x58, 0x04,  # mov [r8+4], ebx
    0x41, 0x89, 0x48, 0x08,  # mov [r8+8], ecx
    0x41, 0x89, 0x50, 0x0C,  # mov [r8+12], edx
    0x5B,                    # pop rbx
    0xC3,                    # ret
])
# xgetbv(xcr=edi) -> edx:eax in rax. Only called when CPUID says the OS enabled XSAVE (else #UD).
_XGETBV_CODE = bytes([0x89, 0xF9, 0x0F, 0x01, 0xD0, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])


def _cpuid_registers(leaves: list[tuple[int, int]]) -> tuple[dict[tuple[int, int], tuple[int, int, int, int]], int]:
    """CPUID (eax, ebx, ecx, edx) for each (leaf, subleaf), and XCR0 (0 without OSXSAVE), as this process sees them.

    Runs a few bytes of machine code from an executable anonymous mapping; raises OSError where the
    system forbids that (W^X policies) and RuntimeError off x86-64 System V."""
    import ctypes
    import mmap

    if platform.machine().lower() not in ("x86_64", "amd64") or os.name != "posix":
        raise RuntimeError("CPUID is read only on x86-64 with the System V calling convention")
    code = _CPUID_CODE + b"\x90" * (32 - len(_CPUID_CODE)) + _XGETBV_CODE
    mem = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        mem.write(code)
        buf = ctypes.c_char.from_buffer(mem)
        base = ctypes.addressof(buf)
        regs = (ctypes.c_uint32 * 4)()
        cpuid = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)(base)
        xgetbv = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(base + 32)
        cpuid(0, 0, ctypes.addressof(regs))
        max_leaf = regs[0]
        out = {}
        for leaf, sub in [(1, 0), *leaves]:
            if leaf <= max_leaf:
                cpuid(leaf, sub, ctypes.addressof(regs))
                out[(leaf, sub)] = tuple(regs)
            else:
                out[(leaf, sub)] = (0, 0, 0, 0)
        xcr0 = int(xgetbv(0)) if out[(1, 0)][2] >> 27 & 1 else 0  # CPUID.1:ECX.OSXSAVE
        del cpuid, xgetbv, buf
    finally:
        mem.close()
    return out, xcr0


def _cpuid_features() -> dict[str, bool] | None:
    """AVX-VNNI and AMX as the process sees them (CPUID leaf 7 and the OS-enabled state in XCR0), or None."""
    try:
        regs, xcr0 = _cpuid_registers([(7, 0), (7, 1)])
    except (OSError, RuntimeError, ValueError, AttributeError):
        return None
    ymm = xcr0 & 0b110 == 0b110  # SSE + AVX state saved by the OS
    tiles = xcr0 >> 17 & 0b11 == 0b11  # XTILECFG + XTILEDATA
    _, _, _, edx7 = regs[(7, 0)]
    eax71 = regs[(7, 1)][0]
    amx = tiles and bool(edx7 >> 24 & 1)
    return {"avx_vnni": ymm and bool(eax71 >> 4 & 1), "amx": amx,
            "amx_int8": amx and bool(edx7 >> 25 & 1), "amx_bf16": amx and bool(edx7 >> 22 & 1)}


def _hwcap_features() -> dict[str, bool] | None:
    """The ARM features the kernel (or QEMU) handed this process in its auxiliary vector (getauxval
    AT_HWCAP / AT_HWCAP2): what ONNX Runtime's and OpenVINO's ARM kernels dispatch on. None off Linux arm64."""
    if platform.machine().lower() not in ("aarch64", "arm64") or platform.system() != "Linux":
        return None
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        words = {AT_HWCAP: int(getauxval(AT_HWCAP)), AT_HWCAP2: int(getauxval(AT_HWCAP2))}
    except (OSError, AttributeError):
        return None
    return {name: bool(words[at] >> bit & 1) for name, (at, bit) in HWCAP_FEATURES.items()}


def _process_isa() -> tuple[set[str], set[str]] | None:
    """(features present, features determined) as this process sees them, or None if nothing could be read."""
    present, known = set(), set()
    table = _numpy_features()
    if table is not None:
        for key, ours in NUMPY_FEATURES.items():
            if key in table:
                known.add(ours)
                if table[key]:
                    present.add(ours)
    for extra in (_cpuid_features(), _hwcap_features()):  # x86 CPUID, ARM HWCAP: the dispatchers' own sources
        if extra is not None:
            known.update(extra)
            present.difference_update(k for k, v in extra.items() if not v)
            present.update(k for k, v in extra.items() if v)
    return (present, known) if known else None


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """CPU model, cores and the int8-relevant ISA.

    ``isa``: what decisions use: the process view for every feature it determines, /proc/cpuinfo's
    word for the rest (``isa_source`` says which); ``isa_process`` and ``isa_cpuinfo``: the two views
    (None where unavailable); ``disagree``: present only when they differ on a feature both determine."""
    model, flags = _read_cpuinfo()
    cpuinfo = None if flags is None else sorted({ours for flag, ours in ISA_FLAGS.items() if flag in flags})
    process = _process_isa()
    info = {"model": model or platform.processor() or platform.machine(), "arch": platform.machine(),
            "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    if process is None:
        return {**info, "isa": cpuinfo or [], "isa_process": None, "isa_cpuinfo": cpuinfo,
                "isa_source": "/proc/cpuinfo (no process view: numpy's CPU-feature table and CPUID unavailable)"}
    present, known = process
    fallback = sorted(f for f in cpuinfo or () if f not in known)  # what the process view cannot tell
    info.update(isa=sorted(present.union(fallback)), isa_process=sorted(present), isa_cpuinfo=cpuinfo,
                isa_source="process (numpy CPU features" + (", CPUID" if known & set(CPUID_FEATURES) else "")
                + (", HWCAP" if known & {"arm_i8mm", "arm_bf16"} else "") + ")"
                + (f"; {', '.join(fallback)} from /proc/cpuinfo" if fallback else ""))
    if cpuinfo is not None:
        lacks, extra = sorted((set(cpuinfo) & known) - present), sorted(present - set(cpuinfo))
        if lacks or extra:
            info["disagree"] = ("; ".join(part for part in (
                f"the process lacks {', '.join(lacks)} that /proc/cpuinfo lists" if lacks else "",
                f"the process has {', '.join(extra)} that /proc/cpuinfo does not list" if extra else "") if part)
                + " (an emulator, VM or container?): the process view is used")
    return info


def has_vnni(isa: list[str] | None = None) -> bool:
    isa = cpu_info()["isa"] if isa is None else isa
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa))


def saturates_u8s8(isa: list[str] | None = None) -> bool:
    """Whether int8 kernels here add u8 x s8 pairs into a saturating int16 (``VPMADDUBSW``): x86 with AVX2
    (or AVX-512) but no VNNI. ONNX Runtime's MLAS and OpenVINO's oneDNN kernels both do."""
    isa = cpu_info()["isa"] if isa is None else isa
    return "avx2" in isa and not has_vnni(isa)


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
