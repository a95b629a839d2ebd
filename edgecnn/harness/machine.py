"""The machine's state while a row was measured (issue 23.3): CPU clocks, governor, temperatures, and on a Jetson
its power mode and GPU/EMC clocks, read from sysfs before, between the windows of, and after every row.

Every path is read under ``root`` (``/`` on a real machine; a fake tree in the tests). Nothing is required: what is
not readable is left out, and where nothing is (a container, a VM) :func:`read_state` returns None and bench says
so once. A row is ``throttled`` when a clock fell more than :data:`THROTTLE_SHARE` below its reading before the row
(the mean current CPU frequency over the cores; the GPU's on a Jetson).
"""
from __future__ import annotations

from pathlib import Path

THROTTLE_SHARE = 0.10  # a clock more than 10% below its reading before the row: throttled
# Jetson (L4T): nvpmodel's current mode, the GPU's devfreq node, and the EMC (memory) clock, where readable
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
EMC_RATES = ("sys/kernel/debug/bpmp/debug/clk/emc/rate", "sys/kernel/debug/clk/emc/clk_rate")
GPU_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b")


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:  # sysfs values are a line; a fake or odd tree gets no more than 4 KiB read
            return f.read(4096).decode("ascii", "replace").strip() or None
    except (OSError, ValueError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_state(root: str | Path = "/") -> dict | None:
    """What this machine exposes now: ``cpus`` {cpuN: {cur_khz, max_khz, governor}}, ``thermal`` {zone type: °C},
    ``jetson`` {power_mode, gpu_hz, gpu_max_hz, emc_hz}; None where none of it is readable."""
    root = Path(root)
    state: dict = {}
    cpus = {}
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"), key=lambda p: int(p.parent.name[3:])):
        cur = _int(d / "scaling_cur_freq") or _int(d / "cpuinfo_cur_freq")
        entry = {k: v for k, v in {"cur_khz": cur, "max_khz": _int(d / "cpuinfo_max_freq") or _int(d / "scaling_max_freq"),
                                   "governor": _read(d / "scaling_governor")}.items() if v is not None}
        if entry:
            cpus[d.parent.name] = entry
    if cpus:
        state["cpus"] = cpus
    thermal = {}
    for z in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        milli = _int(z / "temp")
        if milli is not None:
            thermal[f"{_read(z / 'type') or z.name}"[:40]] = round(milli / 1000, 1)
    if thermal:
        state["thermal_c"] = thermal
    jetson = {}
    if (mode := _read(root / NVPMODEL_STATUS)) is not None:
        jetson["power_mode"] = mode[:60]
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        if any(g in dev.name.lower() for g in GPU_NAMES) and (hz := _int(dev / "cur_freq")) is not None:
            jetson["gpu_hz"] = hz
            if (top := _int(dev / "max_freq")) is not None:
                jetson["gpu_max_hz"] = top
            break
    for rel in EMC_RATES:
        if (hz := _int(root / rel)) is not None:
            jetson["emc_hz"] = hz
            break
    if jetson:
        state["jetson"] = jetson
    return state or None


def cpu_khz(state: dict | None) -> float | None:
    """The mean current frequency over the cores (kHz), where readable."""
    cur = [c["cur_khz"] for c in (state or {}).get("cpus", {}).values() if "cur_khz" in c]
    return sum(cur) / len(cur) if cur else None


def summary(states: list[dict | None], *, share: float = THROTTLE_SHARE) -> dict | None:
    """``states``: read before the row, between its windows, after it. The first and last, the lowest clocks seen
    against the first reading, and ``throttled`` with the reason when a clock fell more than ``share``."""
    if not states or states[0] is None:
        return None
    before, after = states[0], states[-1]
    out: dict = {"before": before, "after": after, "throttled": False, "share": share}
    falls = []
    for name, read in (("CPU clock", cpu_khz), ("GPU clock", lambda s: (s or {}).get("jetson", {}).get("gpu_hz"))):
        first = read(before)
        seen = [v for v in (read(s) for s in states) if v is not None]
        if first and seen:
            low = min(seen)
            out[f"{name.split()[0].lower()}_low_share"] = round(low / first, 4)
            if low < (1 - share) * first:
                falls.append(f"{name} fell to {low / first:.0%} of its reading before the row")
    ratios = [c["cur_khz"] / c["max_khz"] for c in before.get("cpus", {}).values() if c.get("max_khz") and "cur_khz" in c]
    if ratios:
        out["cpu_cur_over_max"] = round(sum(ratios) / len(ratios), 4)
    if falls:
        out.update(throttled=True, why="; ".join(falls))
    return out


NOTHING_READABLE = ("machine state: no cpufreq, thermal zone or Jetson clock is readable here (a container or a VM?): "
                    "rows carry no throttle flag")
