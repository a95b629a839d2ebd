"""ONNX Runtime: session options, providers per device, and the runtime's own checks (tiny models, no export)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

from edgecnn.backends.onnxruntime import PROVIDERS, session, session_options
from edgecnn.errors import ArtifactError, ConfigError
from edgecnn.runtimes.onnxruntime import OnnxRuntime

import tiny_onnx


def test_session_options():
    opts = session_options(None)
    assert opts.log_severity_level == 4  # fatal only: errors reach the caller as exceptions (one line)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (0, 0)  # ONNX Runtime's own defaults
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts = session_options(4, optimize=False)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (4, 1)
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def test_providers_per_device_cpu_last():
    assert PROVIDERS == {
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    }
    assert OnnxRuntime.devices == ("cpu", "cuda", "tensorrt")


def test_session_from_a_model_or_a_file(tmp_path):
    model = tiny_onnx.conv_gemm_model()
    x = tiny_onnx.inputs(1)
    from_proto = session(model, 1, optimize=False)
    assert from_proto.get_providers() == ["CPUExecutionProvider"]
    assert from_proto.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert from_proto.get_session_options().intra_op_num_threads == 1
    path = tmp_path / "m.onnx"
    tiny_onnx.save(model, path)
    from_file = session(path)
    assert from_file.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    np.testing.assert_allclose(from_file.run(None, {"input": x})[0], from_proto.run(None, {"input": x})[0], rtol=1e-5)


def test_runtime_reads_the_input_and_runs(tmp_path):
    art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    rt = OnnxRuntime(art.path, threads=1)
    assert (rt.input_name, rt.input_dtype, rt.input_shape) == ("input", np.float32, tiny_onnx.SHAPE)
    x = tiny_onnx.inputs(1)
    y = rt.run(x)
    assert y.shape == (1, tiny_onnx.CLASSES) and y.dtype == np.float32
    np.testing.assert_allclose(y, session(art.path).run(None, {"input": x})[0], rtol=1e-6)
    assert rt.versions() == {"onnxruntime": ort.__version__} and rt.provider() == "CPUExecutionProvider"
    rt.close()
    assert not hasattr(rt, "session")


def test_fp16_and_dynamic_batch_models(tmp_path):
    half = tiny_onnx.save(tiny_onnx.conv_gemm_model(dtype=TensorProto.FLOAT16), tmp_path / "h.onnx")
    with OnnxRuntime(half.path) as rt:
        assert rt.input_dtype == np.float16
        y = rt.run(tiny_onnx.inputs(1))  # float32 in, cast for the model, float32 out
        assert y.dtype == np.float32 and np.isfinite(y).all()
    dyn = tiny_onnx.save(tiny_onnx.conv_gemm_model(batch="N"), tmp_path / "d.onnx")
    with OnnxRuntime(dyn.path) as rt:
        assert rt.input_shape is None and rt.run(tiny_onnx.inputs(3)).shape == (3, tiny_onnx.CLASSES)
    with OnnxRuntime(dyn.path, input_shape=(2, 2, 4, 4)) as rt:  # given: kept
        assert rt.input_shape == (2, 2, 4, 4)


def test_a_device_without_its_provider_is_explained(tmp_path, monkeypatch):
    art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    with pytest.raises(ConfigError) as e:
        OnnxRuntime(art.path, device="npu")
    assert str(e.value) == "onnxruntime device must be one of cpu, cuda, tensorrt, got 'npu'"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ConfigError) as e:
        OnnxRuntime(art.path, device="cuda")
    assert str(e.value) == ("onnxruntime has no CUDAExecutionProvider here (available: AzureExecutionProvider, "
                            "CPUExecutionProvider); install onnxruntime-gpu on a machine with CUDA")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="onnxruntime could not load"):
        OnnxRuntime(tmp_path / "bad.onnx")


def test_runtime_metadata_is_the_models_own(tmp_path):
    import onnx

    model = tiny_onnx.conv_gemm_model()
    onnx.helper.set_model_props(model, {"edgecnn/labels": '["a", "b", "c", "d"]', "other": "x"})
    rt = OnnxRuntime(tiny_onnx.save(model, tmp_path / "m.onnx").path)
    try:
        assert rt.metadata() == {"edgecnn/labels": '["a", "b", "c", "d"]', "other": "x"}
    finally:
        rt.close()


def test_throughput_mode_runs_each_request_on_one_thread(tmp_path):
    art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    for mode, threads in (("throughput", 1), ("latency", 3)):
        rt = OnnxRuntime(art.path, threads=3, mode=mode)
        try:
            assert rt.session.get_session_options().intra_op_num_threads == threads, mode
        finally:
            rt.close()
