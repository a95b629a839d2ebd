"""Reproducer: one grouped int8 convolution, as ONNX Runtime's QDQ quantizer writes it, on OpenVINO's CPU plugin.

On a 2-core Intel Xeon with AMX (amx_int8), OpenVINO 2026.4 could not compile the int8 QDQ ShuffleNet v1
g2, g3 x1.5 and g4 ("No reorder available for the following tensor descriptors: abcde and
aBDec16c64b4c"): oneDNN's AMX kernels want the grouped weights in a blocked layout that it has no reorder
for. ShuffleNet v1 g1, g3 and g8 compiled. The grouped 1x1 convolutions below carry the per-group
channel counts of the three that failed (g2: 25 in / 100 out, g3 x1.5: 30 / 120, g4: 17 / 68) and of one
that compiled (g3: 20 / 80), with asymmetric uint8 activations as ONNX Runtime's u8s8 preset writes them.

Off AMX every one must compile and agree with ONNX Runtime. On AMX each must compile, or fail with the
one-line error that names the limit and the fallback (OpenVINO's NNCF route, which edgecnn builds and
then selects: tests/test_failed_artifacts.py injects that failure on every CPU).
"""
from __future__ import annotations

import numpy as np
import pytest

from edgecnn import hostinfo, runtimes
from edgecnn.errors import ArtifactError
from edgecnn.exporters import saturation
from edgecnn.backends.openvino import AMX_HINT

onnx = pytest.importorskip("onnx")
if runtimes.availability()["openvino"] is not None:
    pytest.skip("openvino is not installed", allow_module_level=True)

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# (input channels per group, output channels per group, groups)
SHAPES = {"shufflenet_v1_g2": (25, 100, 2), "shufflenet_v1_g3_x1_5": (30, 120, 3), "shufflenet_v1_g4": (17, 68, 4),
          "shufflenet_v1_g3 (compiled on AMX)": (20, 80, 3)}


def grouped_int8_conv(cin_g: int, cout_g: int, groups: int, hw: int = 8) -> onnx.ModelProto:
    """x -> Q/DQ (uint8, zero point 113) -> Conv(group) with per-channel int8 weights -> y."""
    rng = np.random.default_rng(cin_g * 1000 + groups)
    cin, cout = cin_g * groups, cout_g * groups
    w_q = rng.integers(-127, 128, size=(cout, cin_g, 1, 1)).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "a_s"),
             numpy_helper.from_array(np.array(113, np.uint8), "a_z"),
             numpy_helper.from_array(w_q, "w_q"),
             numpy_helper.from_array(rng.uniform(0.001, 0.01, cout).astype(np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "w_z"),
             numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "a_s", "a_z"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
             helper.make_node("Conv", ["x_dq", "w", "b"], ["y"], group=groups)]
    graph = helper.make_graph(nodes, "grouped_int8_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, hw, hw])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("name", SHAPES)
def test_grouped_int8_conv_compiles_or_names_the_amx_limit(name, tmp_path):
    cin_g, cout_g, groups = SHAPES[name]
    path = tmp_path / "conv.onnx"
    onnx.save(grouped_int8_conv(cin_g, cout_g, groups), str(path))
    x = np.random.default_rng(0).uniform(-2, 3, (1, cin_g * groups, 8, 8)).astype(np.float32)
    try:
        with runtimes.load(path, runtime="openvino", threads=1) as ov:
            got = ov.run(x)
    except ArtifactError as e:
        if not hostinfo.has_amx():
            raise  # only AMX kernels have this limit
        assert AMX_HINT in str(e), str(e)
        return
    # What int8 kernels compute: the Q/DQ arithmetic in float, exact, where the CPU accumulates u8 x s8 in
    # int32 (VNNI, AMX, ARM); on AVX2 without VNNI, OpenVINO's kernels add u8 x s8 pairs into a saturating
    # int16 exactly as edgecnn's emulator predicts (measured on AMD EPYC Zen 3: max error 7.2 against the exact
    # result, 0 against the emulation; with 7-bit weights both are exact).
    want = saturation.emulated_logits(path, x, saturate=hostinfo.saturates_u8s8())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
