"""Test-wide setup: no telemetry from the toolchain, shared fixtures."""
import os
import tempfile

# NNCF replaces its telemetry with a stub when NNCF_CI is set (nncf/telemetry/wrapper.py).
os.environ.setdefault("NNCF_CI", "1")
# openvino-telemetry declines in CI when CI=true and sends nothing without a consent file;
# .ci/run also runs `opt_in_out --opt_out`.
os.environ.setdefault("CI", "true")

# Tests never touch the network, and never depend on what a developer's weights cache holds: an export's
# default weights (the published ImageNet ones where installed, cached or downloadable) resolve the same
# everywhere (installed packages only; else a random init). Subprocesses inherit both.
os.environ["EDGECNN_OFFLINE"] = "1"
os.environ["EDGECNN_CACHE"] = tempfile.mkdtemp(prefix="edgecnn-test-cache-")

import onnxruntime  # noqa: E402

onnxruntime.disable_telemetry_events()  # ETW events on Windows builds; a no-op elsewhere
