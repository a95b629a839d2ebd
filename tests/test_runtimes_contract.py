"""One contract, every backend: the same checks run against each registered runtime."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecnn import runtimes
from edgecnn.errors import ArtifactError, ConfigError, UnknownNameError
from edgecnn.exporters.torch_onnx import export_onnx

SHAPE = (2, 3, 32, 32)


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5)).eval()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    model = _tiny()
    onnx_art = export_onnx(model, d / "m.onnx", input_shape=SHAPE)
    out = {"torch": model, "onnxruntime": onnx_art}
    if runtimes.RUNTIMES.get("openvino").available() is None:
        from edgecnn.exporters.openvino import convert_ir

        out["openvino"] = convert_ir(onnx_art, d / "m.xml", precision="fp32")
    return out


@pytest.mark.parametrize("name", runtimes.RUNTIMES.names())
def test_contract(name, artifacts):
    why = runtimes.availability()[name]
    if why:
        pytest.skip(f"{name} unavailable here: {why}")
    if name not in artifacts:
        pytest.skip(f"no {name} artifact can be built on this machine")
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        expected = artifacts["torch"](torch.from_numpy(x)).numpy()
    rt = runtimes.load(artifacts[name], runtime=name, threads=1)
    y = rt.run(x)
    assert y.dtype == np.float32 and y.shape == (2, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert rt.last_latency_ms is not None and rt.last_latency_ms > 0
    info = rt.info()
    assert info.runtime == name and info.device == "cpu" and info.versions
    with pytest.raises(ConfigError, match="float32"):
        rt.run(x.astype(np.float64))
    with pytest.raises(ConfigError, match="NCHW"):
        rt.run(x[0])
    rt.close()
    with pytest.raises(ConfigError, match="closed"):
        rt.run(x)
    with runtimes.load(artifacts[name], runtime=name, threads=2, mode="throughput") as busy:
        t = busy.throughput(x, duration_s=0.2)
        np.testing.assert_allclose(busy.run(x), expected, rtol=1e-4, atol=1e-4)  # same answers under load
    assert t.streams >= 1 and t.requests >= t.streams and t.latency.n == t.requests
    assert t.images_per_s == pytest.approx(t.requests * SHAPE[0] / t.duration_s)


def test_torch_baselines_compute_what_eager_computes():
    from edgecnn.runtimes.torch import baseline

    model, x = _tiny(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
        np.testing.assert_allclose(baseline(model, "channels-last")(x), want, rtol=1e-5, atol=1e-6)
    assert next(model.parameters()).is_contiguous()  # the original is left as it was
    with pytest.raises(ConfigError, match="unknown PyTorch baseline"):
        baseline(model, "jit")


@pytest.mark.slow
def test_torch_compile_baseline():
    """Inductor on CPU (needs the C++ compiler): 15-60 s to compile even a tiny model, so in the slow run."""
    from edgecnn.runtimes.torch import baseline

    model, x = _tiny(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(baseline(model, "compile")(x), model(x), rtol=1e-4, atol=1e-5)


def test_unknown_runtime_and_device(artifacts):
    with pytest.raises(UnknownNameError, match="did you mean: onnxruntime"):
        runtimes.load(artifacts["onnxruntime"], runtime="onnxruntim")
    with pytest.raises(ConfigError, match="cannot run on 'npu'"):
        runtimes.load(artifacts["onnxruntime"], device="npu")
    with pytest.raises(ConfigError, match="CUDAExecutionProvider|no CUDA"):
        runtimes.load(artifacts["onnxruntime"], device="cuda")


def test_corrupt_and_missing_artifacts(tmp_path, artifacts):
    bad = tmp_path / "bad.onnx"
    good = artifacts["onnxruntime"].path.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ArtifactError, match="could not load"):
        runtimes.load(bad)
    with pytest.raises(ArtifactError, match="not found"):
        runtimes.load(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="cannot tell which runtime"):
        runtimes.load(tmp_path / "model.pb")


def test_availability_reports_reasons():
    """Usable exactly when the backend can run here; otherwise the reason and the pip extra that fixes it."""
    import importlib.util

    avail = runtimes.availability()
    assert set(avail) == set(runtimes.RUNTIMES.names())
    assert avail["torch"] is None and avail["onnxruntime"] is None  # core dependencies
    has_openvino = importlib.util.find_spec("openvino") is not None
    assert (avail["openvino"] is None) == has_openvino
    if not has_openvino:
        assert avail["openvino"] == ("openvino is not available (the openvino package is not installed); "
                                     "install it with: pip install 'edgecnn[openvino]'")
    has_tensorrt = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
    assert (avail["tensorrt"] is None) == has_tensorrt
    if not has_tensorrt:
        # the reason, then what fixes it on this machine (the pip extra, a CUDA torch first, JetPack...)
        assert re.fullmatch(r"tensorrt is not available \(.+\); \S.*", avail["tensorrt"]), avail["tensorrt"]
