"""Test-wide setup: no telemetry from the toolchain, shared fixtures."""
import os

# NNCF replaces its telemetry with a stub when NNCF_CI is set (nncf/telemetry/wrapper.py).
os.environ.setdefault("NNCF_CI", "1")
# openvino-telemetry declines in CI when CI=true and sends nothing without a consent file;
# .ci/run also runs `opt_in_out --opt_out`.
os.environ.setdefault("CI", "true")

import onnxruntime  # noqa: E402

onnxruntime.disable_telemetry_events()  # ETW events on Windows builds; a no-op elsewhere


import pytest  # noqa: E402

from edgecnn import hostinfo  # noqa: E402


@pytest.fixture
def fake_isa(monkeypatch):
    """``fake_isa("avx2", ...)``: this machine's ISA, as edgecnn sees it (hostinfo.cpu_info), for one test."""
    def set_isa(*isa: str) -> None:
        info = {**hostinfo.cpu_info(), "isa": sorted(isa)}
        monkeypatch.setattr(hostinfo, "cpu_info", lambda: info)

    return set_isa


@pytest.fixture(scope="module")
def one_thread():
    """Small forwards (batch 1-2, 32-96 px): one torch thread is fastest, and immune to a busy machine's
    thread contention (OpenMP threads spinning for a core can take 50x longer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
