"""The ISA as the process sees it (numpy's CPU-feature table + CPUID) against /proc/cpuinfo.

The int8 preset must follow what the kernels dispatch on. Faked tables check both directions of a
disagreement; under QEMU (where installed) a real process sees another CPU than /proc/cpuinfo lists.
"""
import json
import subprocess
import sys

import pytest

from edgecnn import hostinfo, qemu
from edgecnn.exporters.int8 import default_preset

VNNI_HOST = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
NUMPY_HASWELL = {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False, "AVX512BF16": False,
                 "ASIMD": False, "ASIMDDP": False, "SVE": False, "FPHP": False}
NO_AMX = {"avx_vnni": False, "amx": False, "amx_int8": False, "amx_bf16": False}


@pytest.fixture
def fake(monkeypatch):
    """fake(cpuinfo_flags, numpy_table, cpuid) -> hostinfo.cpu_info() computed from them."""
    def make(flags, table, cpuid):
        monkeypatch.setattr(hostinfo, "_read_cpuinfo", lambda: ("Fake CPU", flags))
        monkeypatch.setattr(hostinfo, "_numpy_features", lambda: table)
        monkeypatch.setattr(hostinfo, "_cpuid_features", lambda: cpuid)
        hostinfo.cpu_info.cache_clear()
        return hostinfo.cpu_info()
    yield make
    hostinfo.cpu_info.cache_clear()


def test_emulated_haswell_on_a_vnni_host_gets_the_avx2_preset(fake):
    """/proc/cpuinfo lists VNNI and AMX (the host), the process sees a Haswell (QEMU): the kernels saturate."""
    info = fake(VNNI_HOST, NUMPY_HASWELL, NO_AMX)
    assert info["isa"] == ["avx2", "fma"] and info["isa_process"] == ["avx2", "fma"]
    assert {"avx512_vnni", "amx_int8"} <= set(info["isa_cpuinfo"])
    assert "lacks amx, amx_bf16, amx_int8, avx512, avx512_bf16, avx512_vnni" in info["disagree"]
    assert not hostinfo.has_vnni() and not hostinfo.has_amx()
    assert default_preset() == "u8s8-saturation-aware"


def test_process_seeing_more_than_proc_cpuinfo_gets_the_vnni_preset(fake):
    """An old kernel (or a VM) that does not list the flags, on a CPU whose process sees AVX-512 VNNI."""
    table = {**NUMPY_HASWELL, "AVX512F": True, "AVX512VNNI": True}
    info = fake({"avx2", "fma"}, table, {**NO_AMX, "avx_vnni": True})
    assert {"avx512", "avx512_vnni", "avx_vnni"} <= set(info["isa"])
    assert "has avx512, avx512_vnni, avx_vnni that /proc/cpuinfo does not list" in info["disagree"]
    assert hostinfo.has_vnni() and default_preset() == "u8s8"


def test_agreeing_views_leave_no_note(fake):
    info = fake({"avx2", "fma", "sse4_2"}, NUMPY_HASWELL, NO_AMX)
    assert "disagree" not in info and info["isa"] == info["isa_cpuinfo"] == ["avx2", "fma"]
    assert info["isa_source"] == "process (numpy CPU features, CPUID)"


def test_what_the_process_cannot_read_comes_from_proc_cpuinfo(fake):
    """No CPUID (W^X policy, not x86-64): AMX and AVX-VNNI fall back to /proc/cpuinfo, and say so."""
    info = fake(VNNI_HOST, {**NUMPY_HASWELL, "AVX512F": True, "AVX512VNNI": True, "AVX512BF16": True}, None)
    assert "disagree" not in info and hostinfo.has_amx()
    assert info["isa_source"] == "process (numpy CPU features); amx, amx_bf16, amx_int8 from /proc/cpuinfo"
    info = fake({"avx2"}, None, None)
    assert info["isa"] == ["avx2"] and info["isa_process"] is None and "no process view" in info["isa_source"]


def test_arm_dot_product_from_numpy(fake):
    info = fake(None, {**NUMPY_HASWELL, "AVX2": False, "FMA3": False, "ASIMD": True, "ASIMDDP": True}, None)
    assert info["isa"] == ["arm_dotprod", "neon"] and info["isa_cpuinfo"] is None and "disagree" not in info
    assert default_preset() == "u8s8"


def test_cpuid_reader_agrees_with_numpy():
    """The CPUID bytes read here give the same AVX2 / AVX-512F / AVX-512 VNNI bits as numpy's own detection."""
    try:
        regs, xcr0 = hostinfo._cpuid_registers([(7, 0)])
    except (OSError, RuntimeError) as e:
        pytest.skip(f"CPUID not readable here: {e}")
    table = hostinfo._numpy_features()
    _, ebx, ecx, _ = regs[(7, 0)]
    ymm, zmm = xcr0 & 0b110 == 0b110, xcr0 & 0b11100110 == 0b11100110
    assert (bool(ebx >> 5 & 1) and ymm) == table["AVX2"]
    assert (bool(ebx >> 16 & 1) and zmm) == table["AVX512F"]
    assert (bool(ecx >> 11 & 1) and zmm) == table["AVX512VNNI"]
    assert set(hostinfo._cpuid_features()) == set(hostinfo.CPUID_FEATURES)


def test_hostinfo_imports_nothing_heavy():
    """It runs under QEMU (200x slower): numpy at most, never torch or the runtimes."""
    code = ("import sys, edgecnn.hostinfo as h; h.cpu_info(); "
            "print([m for m in ('torch', 'onnx', 'onnxruntime', 'openvino') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PROBE = "import json, edgecnn.hostinfo as h; print(json.dumps(h.cpu_info()))"


@pytest.mark.skipif(qemu.unavailable() is not None, reason=qemu.unavailable() or "")
def test_under_qemu_the_process_view_is_the_emulated_cpu():
    """-cpu Haswell: AVX2 and no VNNI / AVX-512 / AMX for the process, whatever /proc/cpuinfo lists.
    -cpu Nehalem (no AVX): the process lacks AVX2 where /proc/cpuinfo (an AVX2 host) lists it."""
    haswell = json.loads(qemu.python(["-c", PROBE], cpu="Haswell").stdout)
    assert "avx2" in haswell["isa"] and not hostinfo.has_vnni(haswell["isa"]), haswell
    assert not {"avx512", "amx", "amx_int8"} & set(haswell["isa"]), haswell
    if hostinfo.has_vnni(haswell["isa_cpuinfo"]):
        assert "disagree" in haswell, haswell
    nehalem = json.loads(qemu.python(["-c", PROBE], cpu="Nehalem").stdout)
    assert "avx2" not in nehalem["isa_process"] and "avx2" not in nehalem["isa"], nehalem
    if "avx2" in (nehalem["isa_cpuinfo"] or []):
        assert "the process lacks avx2" in nehalem["disagree"], nehalem
