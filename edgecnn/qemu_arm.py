"""ONNX Runtime and OpenVINO on emulated ARM CPUs: their real aarch64 int8/fp32 kernels on an x86-64 host.

``qemu-aarch64 -cpu CPU`` (Debian package ``qemu-user``) runs the aarch64 wheels of onnxruntime, numpy and
openvino from PyPI (the host's versions) with an aarch64 CPython 3.11 from Debian's arm64 packages; nothing
is built from source and torch is not needed inside. The kernels dispatch on the HWCAPs QEMU derives from
``-cpu``: ``cortex-a72`` (Raspberry Pi 4: NEON, no dot product), ``cortex-a76`` / ``neoverse-n1`` (dot
product + fp16, the Jetson Orin's A78AE class), ``max,sve=off`` (dot product + i8mm + bf16, Apple-silicon
like), ``max`` (SVE/SME). QEMU timings mean nothing; the arithmetic is the real kernels'.

The sysroot (about 35 arm64 .debs unpacked with ``dpkg -x``, and the three wheels) is built once under
``edgecnn.ledger.cache_dir()/qemu-aarch64/<versions>``: downloaded into a registered work folder, each
.deb/.whl's sha256 recorded in ``BUILD.json``, then moved into place in one rename, and used only while the
local ledger proves this machine wrote that ``BUILD.json`` (a partial or foreign build is never used).
Every run gets its own root (``qemu-aarch64 -L ROOT``): links to the sysroot plus an ARM ``proc/cpuinfo``
(implementer 0x41 and the part number of the CPU), since QEMU 7.2 shows the guest the host's x86
``/proc/cpuinfo`` and onnxruntime's CPU detection (pytorch/cpuinfo) then crashes on import.

    outputs, seen = qemu_arm.ort_outputs(["model.int8.onnx"], x, cpu="cortex-a76")
    seen["cpu"]["isa_process"]          # ['arm_dotprod', 'arm_fp16', 'neon']: the HWCAPs the process saw
    outputs, seen = qemu_arm.ov_outputs(["model.int8.onnx"], x, cpu="cortex-a72", hint="f32")
    seen["runs"][0]["inference_precision"], seen["runs"][0]["exec"]   # what OpenVINO's plugin reported
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from . import fileio, ledger
from .errors import EdgecnnError
from .qemu import run_worker

PYTHON = "python3.11"
# -cpu model (before any ",option") -> the MIDR part number pytorch/cpuinfo reads from /proc/cpuinfo.
PARTS = {"cortex-a53": "0xd03", "cortex-a57": "0xd07", "cortex-a72": "0xd08", "cortex-a76": "0xd0b",
         "neoverse-n1": "0xd0c", "a64fx": "0x001", "max": "0xd40"}
CPUS = ("cortex-a72", "cortex-a76", "max,sve=off")  # what CI runs: Pi 4, Jetson-class, Apple-like
DEBS = ("python3.11", "libgomp1", "libstdc++6", "libgcc-s1", "libc6", "zlib1g", "libexpat1", "libffi8", "libssl3")
NOT_NEEDED = ("dpkg", "tar", "install-info")  # pre-dependencies of the packaging, not of the interpreter
WHEELS = ("onnxruntime", "numpy", "openvino")  # the host's versions; openvino only where the host has it
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_35_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")
BUILD = "BUILD.json"


class QemuUnavailable(EdgecnnError):
    """No aarch64 emulation here (no qemu-aarch64, no arm64 packages, no network for the first build)."""


def unavailable() -> str | None:
    """Why the aarch64 worker cannot run here, or None when it can (a sysroot may still have to be built)."""
    if not shutil.which("qemu-aarch64"):
        return "qemu-aarch64 not found (Debian: apt-get install qemu-user)"
    if sys.platform != "linux":
        return f"QEMU user mode needs Linux, not {sys.platform}"
    if _built() is not None:
        return None
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if not shutil.which(tool):
            return f"no {tool} to fetch the arm64 Debian packages of the aarch64 sysroot"
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True, check=False).stdout
    if "arm64" not in foreign.split():
        return "the arm64 packages cannot be had: run (as root) dpkg --add-architecture arm64 && apt-get update"
    return None


def wheel_versions() -> dict[str, str]:
    """The aarch64 wheels to install: the host's own versions, so both sides run the same library."""
    found = {}
    for name in WHEELS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name != "openvino":
                raise QemuUnavailable(f"{name} is not installed here: no version to fetch for aarch64") from None
    return found


def _key(versions: dict[str, str]) -> str:
    return "py311-" + "-".join(f"{name}{versions[name]}" for name in sorted(versions))


def _base() -> Path:
    return ledger.cache_dir() / "qemu-aarch64"


def _built(versions: dict[str, str] | None = None) -> Path | None:
    """The sysroot for these versions when this machine's ledger proves it built it; else None."""
    try:
        final = _base() / _key(versions or wheel_versions())
    except QemuUnavailable:
        return None
    if not (final / BUILD).is_file() or not ledger.proves(final, final / BUILD):
        return None
    if not (final / "usr" / "bin" / PYTHON).is_file() or not (final / "site" / "onnxruntime").is_dir():
        return None
    return final


def _run(cmd: list[str], *, cwd: Path | None = None, what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise QemuUnavailable(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def deb_closure(roots: tuple[str, ...] = DEBS) -> list[str]:
    """The arm64 packages ``roots`` need (Depends and Pre-Depends, recursively), from apt's index."""
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *(f"{r}:arm64" for r in roots)], what="apt-cache depends")
    names = {line.strip() for line in out.splitlines() if line.endswith(":arm64") and not line.startswith((" ", "<"))}
    return sorted(n for n in names if n.split(":")[0] not in NOT_NEEDED)


def _hashes(folder: Path) -> dict[str, dict]:
    return {p.name: {"sha256": fileio.sha256_file(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir())}


def sysroot(*, log=None) -> Path:
    """The verified aarch64 sysroot for the host's wheel versions, built first if needed (about 15 s and
    85 MB of downloads; 275 MB on disk). :class:`QemuUnavailable` with the reason where it cannot be had."""
    reason = unavailable()
    if reason:
        raise QemuUnavailable(reason)
    versions = wheel_versions()
    base, final = _base(), _base() / _key(versions)
    base.mkdir(parents=True, exist_ok=True)
    with fileio.locked(base):
        if _built(versions) is not None:
            return final
        if final.exists():
            raise QemuUnavailable(f"{final} exists but this machine has no record of building it; remove it "
                                  "to have it rebuilt")
        for left in ledger.stale(base):  # a killed build's work folder, registered by this host
            shutil.rmtree(left, ignore_errors=True)
            ledger.forget(base, left)
        (log or (lambda m: print(m, file=sys.stderr)))(f"building the aarch64 sysroot in {final} (once)...")
        with fileio.temp_dir(base, "aarch64-sysroot") as work:
            _build(work, versions)
            (work / "root").rename(final)
        ledger.record(final, final / BUILD)
    return final


def _build(work: Path, versions: dict[str, str]) -> None:
    debs, wheels, root = work / "debs", work / "wheels", work / "root"
    for d in (debs, wheels, root):
        d.mkdir()
    names = deb_closure()
    _run(["apt-get", "download", "-q", *names], cwd=debs, what="apt-get download of the arm64 packages")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    platform = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                *(f"--platform={p}" for p in PLATFORMS)]
    _run([*pip, "download", "--no-deps", *platform, "-d", str(wheels), *(f"{n}=={v}" for n, v in versions.items())],
         what="pip download of the aarch64 wheels")
    record = {"debs": _hashes(debs), "wheels": _hashes(wheels), "versions": versions, "packages": names}
    for deb in sorted(debs.iterdir()):
        _run(["dpkg", "-x", str(deb), str(root)], what=f"dpkg -x {deb.name}")
    _run([*pip, "install", "--no-deps", "--no-index", "--no-compile", *platform, "--target", str(root / "site"),
          *map(str, sorted(wheels.iterdir()))], what="pip install --target of the aarch64 wheels")
    if not (root / "usr" / "bin" / PYTHON).is_file():
        raise QemuUnavailable(f"the arm64 packages gave no /usr/bin/{PYTHON}")
    (root / BUILD).write_text(json.dumps(record, indent=1))


def cpu_root(sysroot_dir: Path, cpu: str, dest: Path) -> Path:
    """A root for one emulated process at ``dest``: the sysroot's top folders linked, and an ARM
    ``proc/cpuinfo`` naming the CPU's implementer and part, one entry per core this process may use (the CPU
    features come from HWCAP, as the kernels read them; no Features line is invented here)."""
    model = cpu.split(",")[0]
    if model not in PARTS:
        raise QemuUnavailable(f"unknown ARM CPU model '{model}' for the emulated /proc/cpuinfo; known: "
                              f"{', '.join(PARTS)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    (dest / "proc").mkdir(parents=True)
    for top in ("usr", "lib", "etc"):
        if (sysroot_dir / top).exists():
            (dest / top).symlink_to(sysroot_dir / top)
    (dest / "proc" / "cpuinfo").write_text(
        "".join(f"processor\t: {i}\nmodel name\t: QEMU -cpu {cpu} (edgecnn's emulated /proc/cpuinfo)\n"
                f"CPU implementer\t: {'0x46' if model == 'a64fx' else '0x41'}\nCPU architecture: 8\n"
                f"CPU variant\t: 0x0\nCPU part\t: {PARTS[model]}\nCPU revision\t: 0\n\n" for i in range(cores)))
    return dest


def python(args: list[str], *, cpu: str, work: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The sysroot's aarch64 Python with ``args`` under ``qemu-aarch64 -cpu cpu``, with ``edgecnn`` (this
    checkout's, pure Python) importable; ``work``: a scratch folder for this run's root. RuntimeError with
    the process's stderr on failure."""
    root = sysroot()
    guest = cpu_root(root, cpu, Path(tempfile.mkdtemp(prefix="root-", dir=work)))
    code = Path(tempfile.mkdtemp(prefix="code-", dir=work))
    (code / "edgecnn").symlink_to(Path(__file__).resolve().parent)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": f"{root / 'site'}:{code}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run([shutil.which("qemu-aarch64"), "-cpu", cpu, "-L", str(guest),
                           str(root / "usr" / "bin" / PYTHON), "-S", *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"under qemu-aarch64 -cpu {cpu}, python {' '.join(args)[:200]}: exit {proc.returncode}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def _launcher(cpu: str, timeout: float):
    def launch(args: list[str], work: Path) -> None:
        python(["-m", "edgecnn.qemu", *args], cpu=cpu, work=work, timeout=timeout)
    return launch


def _seen(seen: dict, cpu: str) -> dict:
    version = subprocess.run([shutil.which("qemu-aarch64"), "--version"], capture_output=True, text=True, check=False).stdout
    return {**seen, "qemu_cpu": cpu, "qemu": (version.splitlines() or ["?"])[0]}


def ort_outputs(models: list[str | Path], x, *, cpu: str, threads: int = 1, optimize: bool = True,
                timeout: float = 900) -> tuple[list, dict]:
    """The first output of each ONNX model for every input of ``x`` (batch 1, concatenated), computed by
    ONNX Runtime's aarch64 CPU kernels under ``qemu-aarch64 -cpu cpu`` with edgecnn's session options;
    and what that process saw (``cpu``: hostinfo.cpu_info() inside, HWCAPs included; versions).
    ``x``: one array for every model, or one per model. One emulated process runs them all."""
    outs, seen = run_worker(_launcher(cpu, timeout), models, x, options=["--threads", str(threads)]
                            + ([] if optimize else ["--no-optimize"]))
    return outs, _seen(seen, cpu)


def ov_outputs(models: list[str | Path], x, *, cpu: str, hint: str | None = "f32", threads: int = 1,
               precisions: list[str] | None = None, timeout: float = 900) -> tuple[list, dict]:
    """As :func:`ort_outputs`, with OpenVINO's CPU plugin (aarch64: ACL / KleidiAI / reference kernels).
    ``hint``: INFERENCE_PRECISION_HINT (f32, f16, bf16); None leaves the plugin its default (f16 on
    fp16-capable ARM cores). ``precisions``: each model's artifact precision, compiled with the hint edgecnn's
    runtime would set on that CPU (instead of ``hint``). ``seen["runs"][i]``: per model, the inference
    precision the compiled model reports, and ``exec``: its runtime graph's layers counted by layer type, then by
    "primitive type / runtime precision" (e.g. ``{"Convolution": {"ref_any_f16/f16": 3, ...}}``).
    A model that fails to compile is recorded there (``error``) and gives ``None`` as its output."""
    options = ["--engine", "openvino", "--threads", str(threads)] + (["--hint", hint] if hint else []) \
        + (["--precisions", ",".join(precisions)] if precisions else [])
    outs, seen = run_worker(_launcher(cpu, timeout), models, x, options=options)
    return outs, _seen(seen, cpu)
