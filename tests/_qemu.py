"""Run a Python script under QEMU user-mode emulation of an older x86 CPU (Debian package qemu-user).

``qemu-x86_64 -cpu Haswell`` makes the emulated process see a Haswell through CPUID (AVX2, no VNNI,
no AVX-512, no AMX) whatever the host is, so ONNX Runtime dispatches its AVX2 kernels for real.
About 200x slower than native: onnxruntime + numpy only in such a script (no torch), tiny inputs.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest

QEMU = shutil.which("qemu-x86_64")
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
REASON = ("qemu-x86_64 not found (Debian: apt-get install qemu-user; .ci/run installs it where apt is available)"
          if not QEMU else "QEMU user-mode emulation of x86-64 needs an x86-64 Python here")
requires_qemu = pytest.mark.skipif(not (QEMU and X86_64), reason=REASON)


def run(cpu: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python args...`` (this interpreter) under ``qemu-x86_64 -cpu cpu``; fails the test on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([QEMU, "-cpu", cpu, sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    stderr = "\n".join(line for line in proc.stderr.splitlines() if "TCG doesn't support" not in line)
    assert proc.returncode == 0, f"under qemu-x86_64 -cpu {cpu}: exit {proc.returncode}\n{stderr[-3000:]}"
    return proc
