"""The execution record (edgecnn/runtimes/executed.py): which precision each multiply-add ran in, read back from
what ONNX Runtime and OpenVINO compiled on this CPU, and from TensorRT's engine inspector JSON (synthetic here)."""
from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import tiny_onnx
import torch

from edgecnn import accounting, hostinfo, runtimes
from edgecnn.artifact import describe
from edgecnn.exporters.int8 import PRESETS, quantize_int8
from edgecnn.results import MIN_INT8_SHARE, ArtifactResult
from edgecnn.runtimes import executed

CONV_MACS = 1 * 3 * 4 * 4 * 2  # tiny conv: output elements x C_in x 1x1 kernel (accounting's rule)
FC_MACS = tiny_onnx.CLASSES * 3  # tiny Gemm: output elements x in_features


def _qdq_with_float_fc(tmp_path: Path):
    """The tiny conv -> Gemm model in QDQ int8 with its Gemm ('fc') deliberately left in float."""
    src = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "model.onnx")
    recipe = replace(PRESETS["u8s8"], exclude_nodes=("fc",))
    return quantize_int8(src, tmp_path / "model.int8.onnx", tiny_onnx.inputs(8), recipe=recipe, opset=17,
                         progress=False)


def test_onnx_macs_follow_accounting(one_thread):
    """MACs counted on the exported graph are the project's accounting (torch hooks) of the same model."""
    from edgecnn.models import create_model

    model = create_model("mobilenet_v2", weights=None).eval()
    x = torch.zeros(1, 3, 64, 64)

    import io

    buf = io.BytesIO()
    torch.onnx.export(model, x, buf, opset_version=17, dynamo=False)
    table = executed.onnx_macs(onnx.load_model_from_string(buf.getvalue()))
    assert sum(r["macs"] for r in table.values()) == accounting.profile(model, 64).macs
    assert tiny_onnx.conv_gemm_model() and {r["macs"] for r in executed.onnx_macs(tiny_onnx.conv_gemm_model()).values()} \
        == {CONV_MACS, FC_MACS}


def test_qdq_float_layer_onnxruntime(tmp_path):
    art = _qdq_with_float_fc(tmp_path)
    with runtimes.load(art, runtime="onnxruntime", threads=1) as rt:
        rec = rt.executed()
    assert "onnxruntime" in rec["source"] and rec["total_macs"] == CONV_MACS + FC_MACS
    assert rec["macs"]["int8"] == pytest.approx(CONV_MACS / (CONV_MACS + FC_MACS), abs=1e-4)
    assert rec["macs"]["fp32"] == pytest.approx(FC_MACS / (CONV_MACS + FC_MACS), abs=1e-4)
    off = [o for o in rec["off_precision"] if o["macs"]]
    assert [(o["layer"], o["ran"], o["macs"]) for o in off] == [("fc", "fp32", FC_MACS)]
    result = ArtifactResult("int8", "int8", runtime="onnxruntime", executed=rec)
    assert result.int8_share < MIN_INT8_SHARE and "fc" in result.low_int8 and "89%" in result.low_int8
    assert result.ok and result.to_dict()["low_int8"] == result.low_int8  # a flag, not the pass rule


def test_qdq_float_layer_openvino(tmp_path):
    pytest.importorskip("openvino")
    art = _qdq_with_float_fc(tmp_path)
    with runtimes.load(art, runtime="openvino", threads=1) as rt:
        rec = rt.executed()
    assert rec["total_macs"] == CONV_MACS + FC_MACS and "openvino" in rec["source"]
    assert rec["macs"]["int8"] == pytest.approx(CONV_MACS / (CONV_MACS + FC_MACS), abs=1e-4)
    assert [(o["layer"], o["ran"]) for o in rec["off_precision"] if o["macs"]] == [("fc", "fp32")]


@pytest.fixture(scope="module")
def mobilenet_s8s8(tmp_path_factory, one_thread):
    """MobileNetV2 (random init, 64 px: the fusions do not depend on the resolution) in QDQ s8s8, its torch module."""
    from edgecnn.models import create_model

    model = create_model("mobilenet_v2", weights=None).eval()
    folder = tmp_path_factory.mktemp("s8s8")
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(folder / "model.onnx"), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"])
    src = describe(folder / "model.onnx", stage="export", precision="fp32", parent=None)
    calib = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    art = quantize_int8(src, folder / "model.int8.onnx", calib, recipe=PRESETS["s8s8"], opset=17, progress=False)
    return art, model


def _module(node: str) -> str:
    """The torch module behind a node torch.onnx named: '/features/features.3/conv/conv.0/conv.0.0/Conv' ->
    'features.3.conv.0.0'."""
    parts: list[str] = []
    for seg in node.strip("/").split("/")[:-1]:
        if parts and seg.startswith(parts[-1] + "."):
            parts[-1] = seg
        else:
            parts.append(seg)
    return ".".join(parts)


def test_s8s8_onnxruntime_this_cpu(mobilenet_s8s8):
    """What ONNX Runtime left in float on this CPU, checked against its optimized graph counted independently,
    and the MAC share against the torch accounting of the same convolutions (by module name)."""
    import onnxruntime as ort

    from edgecnn.backends.onnxruntime import session_options

    art, model = mobilenet_s8s8
    with runtimes.load(art, runtime="onnxruntime", threads=1) as rt:
        rec = rt.executed()
    opts = session_options(1)
    opts.optimized_model_filepath = str(art.path.with_name("opt.onnx"))
    ort.InferenceSession(str(art.path), opts, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
    float_convs = [o for o in rec["off_precision"] if o["op"].startswith("Conv ->")]
    assert len(float_convs) == ops["Conv"]  # standard-domain Conv in the optimized graph: float
    assert sum(1 for o in rec["off_precision"] if o["op"] == "QLinearConv") == 0
    convs_in_artifact = sum(1 for n in onnx.load(str(art.path)).graph.node if n.op_type == "Conv")
    assert rec["layers"] == convs_in_artifact + 1  # every conv and the classifier found again
    stats = {layer.name: layer.macs for layer in accounting.profile(model, 64).layers}
    float_macs = sum(stats[_module(o["layer"])] for o in float_convs)
    total = accounting.profile(model, 64).macs
    assert rec["macs"]["fp32"] == pytest.approx(float_macs / total, abs=1e-3)
    adds = [n.name for n in onnx.load(str(art.path)).graph.node if n.op_type == "Add"]
    listed = sorted(o["layer"] for o in rec["off_precision"] if o["op"] == "Add")
    assert listed == (sorted(adds) if ops["Add"] else [])  # float Adds left by ORT are the residual ones
    if platform.machine().lower() in ("x86_64", "amd64"):  # measured: x86 ORT leaves s8s8 convs in float
        assert float_convs and ops["QLinearConv"] and listed
        assert ArtifactResult("int8", "int8", executed=rec).low_int8 is not None
    print(f"s8s8 on {platform.machine()} ({hostinfo.cpu_info().get('model')}): {len(float_convs)} of "
          f"{convs_in_artifact} convs and {len(listed)} Adds in float, int8 share {rec['macs']['int8']:.1%}")


def test_fp32_onnxruntime_every_layer_found(mobilenet_s8s8):
    """The fp32 MobileNetV2 on ONNX Runtime: its transformers rename every conv (NCHWc, a conv fused with its
    residual Add: '<output>_nchwc'); each is found again, all MACs in fp32, nothing unmapped."""
    art, model = mobilenet_s8s8
    src = describe(art.path.with_name("model.onnx"), stage="export", precision="fp32", parent=None)
    with runtimes.load(src, runtime="onnxruntime", threads=1) as rt:
        rec = rt.executed()
    assert rec["total_macs"] == accounting.profile(model, 64).macs and "unmapped_macs" not in rec
    assert rec["macs"]["fp32"] == 1.0 and rec["off_precision"] == []


def test_openvino_fp32_with_and_without_the_f32_hint(tmp_path):
    """edgecnn's OpenVINO runtime asks for f32: all fp32. Without the hint the CPU plugin picks its own precision
    (bf16 with AVX-512 BF16 / AMX, f16 on ARM with fp16): the record follows what the compiled model says."""
    ov = pytest.importorskip("openvino")
    from edgecnn.runtimes.openvino import _type_name

    model = tiny_onnx.conv_gemm_model()
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with runtimes.load(path, runtime="openvino", threads=1) as rt:
        rec = rt.executed()
    assert rec["macs"]["fp32"] == 1.0 and not rec["off_precision"] and "f32" in rec["source"]
    core = ov.Core()
    read = core.read_model(str(path))
    compiled = core.compile_model(read, "CPU", {"INFERENCE_NUM_THREADS": 1})
    hint = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    free = executed.openvino_record(compiled.get_runtime_model(), read, precision="fp32", hint=hint)
    want = executed.OV_PRECISIONS[hint]
    assert free["total_macs"] == CONV_MACS + FC_MACS
    assert free["macs"][want] > 0.5, (hint, free)  # most MACs in the plugin's default precision
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine().lower() in ("x86_64", "amd64") and not any(f in cpu.split() for f in
                                                                     ("avx512_bf16", "amx_bf16")):
        assert want == "fp32"
    if platform.machine().lower() in ("x86_64", "amd64") and "BF16" in core.get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES") and any(f in cpu.split() for f in ("avx512_bf16", "amx_bf16")):
        assert want == "bf16"  # OpenVINO's documented default on such CPUs
    if want != "fp32":
        assert {o["ran"] for o in free["off_precision"]} == {want}
    print(f"OpenVINO without the hint on this CPU: {hint}; record {free['macs']}")


def _trt_layer(name, kind, ins, outs, fmt, weights=0):
    layer = {"Name": name, "LayerType": kind, "ParameterType": kind,
             "Inputs": [{"Name": f"{name}.in{i}", "Location": "Device", "Dimensions": d, "Format/Datatype": fmt}
                        for i, d in enumerate(ins)],
             "Outputs": [{"Name": f"{name}.out", "Location": "Device", "Dimensions": outs,
                          "Format/Datatype": fmt}], "TacticName": "synthetic"}
    if weights:
        layer["Weights"] = {"Type": "Int8", "Count": weights}
    return layer


def test_tensorrt_inspector_json():
    """SYNTHETIC engine information, written from TensorRT's documented JSON schema (IEngineInspector,
    LayerInformationFormat.JSON, ProfilingVerbosity.DETAILED) for the tiny conv -> Gemm model: not a TensorRT
    result (no TensorRT on this machine). Its MACs must be the ONNX graph's."""
    info = {"Layers": [
        _trt_layer("conv + relu", "CaskConvolution", [[1, 2, 4, 4]], [1, 3, 4, 4],
                   "Four wide channel vectorized row major Int8 format", weights=3 * 2),
        _trt_layer("pool", "CaskPooling", [[1, 3, 4, 4]], [1, 3, 1, 1], "Row major linear FP16 format"),
        _trt_layer("fc", "MatrixMultiply", [[1, 3], [4, 3]], [1, 4], "Row major linear FP16 format"),
    ], "Bindings": ["input", "logits"]}
    rec = executed.tensorrt_record(json.dumps(info), precision="int8")
    onnx_total = sum(r["macs"] for r in executed.onnx_macs(tiny_onnx.conv_gemm_model()).values())
    assert rec["total_macs"] == onnx_total == CONV_MACS + FC_MACS
    assert rec["macs"]["int8"] == pytest.approx(CONV_MACS / onnx_total, abs=1e-4)
    assert rec["macs"]["fp16"] == pytest.approx(FC_MACS / onnx_total, abs=1e-4)
    assert [(o["layer"], o["ran"]) for o in rec["off_precision"]] == [("fc", "fp16")]
    names_only = executed.tensorrt_record(json.dumps({"Layers": ["conv + relu", "fc"]}), precision="int8")
    assert "DETAILED" in names_only["error"] and "macs" not in names_only
    assert "unreadable" in executed.tensorrt_record("{", precision="int8")["error"]


def test_column_and_flag_explain_a_slow_int8():
    from rich.console import Console

    from edgecnn.harness.check import CheckReport
    from edgecnn.parity import ParityResult
    from edgecnn.report import check_table, verdict

    rec = {"macs": {"int8": 0.68, "fp16": 0.0, "bf16": 0.0, "fp32": 0.32}, "source": "test",
           "off_precision": [{"layer": "/f.3/Conv", "op": "Conv -> Conv", "macs": 10, "ran": "fp32"},
                             {"layer": "/f.3/Add", "op": "Add", "macs": 0, "ran": "fp32"}]}
    slow = ArtifactResult("int8", "int8", runtime="onnxruntime", slower_than_fp32=3.76, executed=rec)
    text = verdict(slow).reason
    assert "3.76x slower" in text and "68%" in text and "1 Conv in fp32" in text and "/f.3/Conv" in text
    fast = ArtifactResult("int8", "int8", runtime="openvino", slower_than_fp32=1.3,
                          executed={**rec, "macs": {"int8": 0.99}, "off_precision": []})
    assert fast.low_int8 is None and "99% of its MACs ran in int8" in verdict(fast).reason
    report = CheckReport("m", "/tmp/x", 1, "photos", results=[slow])
    wide, narrow = Console(width=140, record=True), Console(width=80, record=True)
    wide.print(check_table(report, con=wide))
    narrow.print(check_table(report, con=narrow))
    w, n = wide.export_text(), narrow.export_text()
    assert "int8 MACs" in w and "68%" in w
    header = next(line for line in n.splitlines() if "artifact" in line)
    assert "MACs" not in header and "verdict" in header  # at 80 columns it goes (after peak MiB); the verdict stays
    assert "80 columns: peak MiB, int8 MACs," in " ".join(n.split())
    odd = ArtifactResult("int8", "int8", executed={"macs": {"int8": 0.5}, "off_precision": [
        {"layer": "x", "macs": "many"}, "junk", {"macs": None}]})  # a received manifest's record, malformed
    assert "50%" in odd.low_int8 and "largest" not in odd.low_int8
    assert ArtifactResult("int8", "int8", executed={"macs": "all", "off_precision": 3}).low_int8 is None
    d = slow.to_dict()
    assert ArtifactResult.from_dict(d).executed == rec
