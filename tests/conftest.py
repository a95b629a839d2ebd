"""Test-wide setup: no telemetry from the toolchain, shared fixtures."""
import os

# NNCF replaces its telemetry with a stub when NNCF_CI is set (nncf/telemetry/wrapper.py).
os.environ.setdefault("NNCF_CI", "1")
# openvino-telemetry declines in CI when CI=true and sends nothing without a consent file;
# .ci/run also runs `opt_in_out --opt_out`.
os.environ.setdefault("CI", "true")

import onnxruntime  # noqa: E402

onnxruntime.disable_telemetry_events()  # ETW events on Windows builds; a no-op elsewhere
