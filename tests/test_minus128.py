"""int8 weights of -128 (edgecnn.exporters.int8_range): flagged for ARM and AVX2 wherever a model carries them
(an imported pre-quantized ONNX, a received folder), and never in edgecnn's own int8 exports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgecnn import runtimes
from edgecnn.artifact import describe
from edgecnn.exporters.int8 import PRESETS, quantize_int8, tensorrt_recipe
from edgecnn.exporters.int8_range import TARGETS, minus128_in, scan_minus128

SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """A small CNN with a full conv, a depthwise conv and a Linear head, as fp32 ONNX, and calibration inputs."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    path = tmp_path_factory.mktemp("m128") / "f.onnx"
    torch.onnx.export(model, (torch.randn(*SHAPE),), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    calib = np.random.default_rng(0).standard_normal((16, *SHAPE[1:])).astype(np.float32)
    return describe(path, stage="simplify", precision="fp32", parent=None), calib


def _int8_weights(model) -> list[np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    names = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return [numpy_helper.to_array(inits[n]) for n in names if inits[n].data_type == onnx.TensorProto.INT8]


RECIPES = [(name, replace(recipe, per_channel=pc)) for name, recipe in PRESETS.items() for pc in (True, False)]
RECIPES += [("tensorrt", replace(tensorrt_recipe(PRESETS["u8s8"]), per_channel=pc)) for pc in (True, False)]


@pytest.mark.parametrize("name,recipe", RECIPES, ids=[f"{n}-{'pc' if r.per_channel else 'pt'}" for n, r in RECIPES])
def test_edgecnns_own_int8_exports_never_hold_minus128(fp32, tmp_path, name, recipe):
    """Every preset, per-channel and per-tensor: ONNX Runtime's quantizer is driven with symmetric weights
    (WeightSymmetric: [-127, 127]); the weights reach the edge of that range (so -128 was not missed by luck),
    never beyond."""
    src, calib = fp32
    assert recipe.weight_type == "int8"
    art = quantize_int8(src, tmp_path / "q.onnx", calib, recipe=recipe, opset=17, progress=False)
    model = onnx.load(str(art.path))
    weights = _int8_weights(model)
    assert len(weights) >= 4, name  # three convs and the Linear: all quantized
    low = min(int(w.min()) for w in weights)
    assert low >= -127 and max(int(np.abs(w).max()) for w in weights) >= 63, (name, low)  # 7-bit presets: 63
    assert scan_minus128(art.path) is None
    # the same file with one weight set to -128 is flagged: the scan reads what the file holds
    dq = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    t = next(t for t in model.graph.initializer if t.name in dq and len(t.dims) == 4)  # a conv's int8 weights
    a = numpy_helper.to_array(t).copy()
    a.flat[0] = -128
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    found = minus128_in(model)
    assert found is not None and found["values"] == 1 and found["names"] == [t.name]


@pytest.mark.skipif(runtimes.availability()["openvino"] is not None, reason="OpenVINO is not installed")
def test_nncf_route_never_holds_minus128(fp32, tmp_path):
    """The OpenVINO route NNCF quantizes (narrow-range symmetric weights): its IR's int8 constants, read back."""
    import openvino as ov

    from edgecnn.exporters.openvino import convert_ir, quantize_nncf

    src, calib = fp32
    ir = convert_ir(src, tmp_path / "f.xml", precision="fp32")
    for fix in ("disable", "enable"):
        q = quantize_nncf(ir, tmp_path / f"n-{fix}.xml", calib, overflow_fix=fix, progress=False)
        consts = [op.get_vector() for op in ov.Core().read_model(str(q.path)).get_ops()
                  if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
        assert len(consts) >= 4 and min(int(c.min()) for c in consts) >= -127, fix


def _cli(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def _observer_style(model) -> None:
    """Re-quantize ``model``'s int8 weights (in place) as PyTorch's symmetric observers do: range [-128, 127],
    scale max|w| / 127.5, so a channel whose largest magnitude is negative gets -128."""
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q, scale = inits[node.input[0]], inits[node.input[1]]
        if q.data_type != onnx.TensorProto.INT8:
            continue
        w, s = numpy_helper.to_array(q).astype(np.float32), numpy_helper.to_array(scale)
        shape = (-1,) + (1,) * (w.ndim - 1) if s.ndim else ()
        w = w * s.reshape(shape)
        s2 = (np.abs(w).max(axis=tuple(range(1, w.ndim)) if s.ndim else None) / 127.5).astype(np.float32)
        q2 = np.clip(np.round(w / s2.reshape(shape)), -128, 127).astype(np.int8)
        q.CopyFrom(numpy_helper.from_array(q2, q.name))
        scale.CopyFrom(numpy_helper.from_array(s2, scale.name))


def test_a_prequantized_onnx_with_minus128_is_flagged_by_export_and_check(fp32, tmp_path):
    """An ONNX quantized elsewhere, as PyTorch's observers quantize weights (-128 included), given to
    ``edgecnn export`` as MODEL; then ``edgecnn check`` on the folder: both say it, and the JSON carries it
    for ARM and AVX2."""
    src, calib = fp32
    art = quantize_int8(src, tmp_path / "ort.onnx", calib, recipe=PRESETS["u8s8"], opset=17, progress=False)
    model = onnx.load(str(art.path))
    _observer_style(model)
    pq = tmp_path / "prequantized.onnx"
    onnx.save(model, str(pq))
    assert scan_minus128(pq) is not None
    out = tmp_path / "out"
    r = _cli("export", str(pq), "--targets", "onnxruntime", "--out", str(out), "--mean", "0.5,0.5,0.5",
             "--std", "0.25,0.25,0.25")
    assert "export: warning: flagged for ARM and AVX2 targets" in r.stdout and "-128" in r.stdout, r.stdout
    assert "wrap" in r.stdout and "VPMADDUBSW" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["results"]["export"]["minus128"]["targets"] == list(TARGETS)
    r = _cli("check", str(out), "--runtimes", "onnxruntime", "--json", str(tmp_path / "c.json"))
    assert "export: flagged for ARM and AVX2 targets" in r.stdout and "int8 weights hold -128" in r.stdout
    rows = json.loads((tmp_path / "c.json").read_text())["results"]
    assert {row["artifact"] for row in rows if row["minus128"]} >= {"export"}
    assert all(row["minus128"]["reason"].startswith("int8 weights hold -128") for row in rows if row["minus128"])


def test_a_model_without_int8_weights_is_not_flagged(fp32):
    src, _ = fp32
    assert scan_minus128(src.path) is None
    assert scan_minus128(src.path.parent / "missing.onnx") is None  # unreadable: the runtime says why
