"""Resident memory of this process, measured: what the memory figures are checked against.

Linux keeps the process's peak resident set (``VmHWM`` in ``/proc/self/status``) and lets a process reset it
(``echo 5 > /proc/self/clear_refs``), so the peak of one stretch of work (loading a model, one run) can be
read on its own. Elsewhere only the process's lifetime peak is known (``getrusage``'s ``ru_maxrss``).
Standard library only: the worker that runs received artifacts imports this and never torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

MIB = 2**20


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """Resident memory now (None where ``/proc`` cannot say)."""
    return _status("VmRSS")


def peak_rss_bytes() -> int | None:
    """The peak resident memory since the process started or since :func:`reset_peak` (Linux ``VmHWM``), else
    the lifetime peak from ``getrusage`` (kilobytes on Linux, bytes on macOS); None where neither exists."""
    peak = _status("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def can_reset_peak() -> bool:
    return Path("/proc/self/clear_refs").exists()


def reset_peak() -> bool:
    """Start a new peak from the current resident memory; False where the kernel offers no way to."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
