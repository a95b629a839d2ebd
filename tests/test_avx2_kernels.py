"""int8 on real AVX2 kernels without VNNI: ONNX Runtime's U8S8 kernels add u8 x s8 pairs into a saturating
int16 (VPMADDUBSW), and edgecnn's emulator (exporters/saturation.py) must predict what they compute.

Two ways to real AVX2 kernels, each checked where it exists and skipped with the reason elsewhere:
- ``qemu``: ONNX Runtime under ``qemu-x86_64 -cpu Haswell`` (edgecnn.qemu), on any x86-64 Linux host
  with qemu-user installed (.ci/run installs it where apt is available). ~100-200x slower than native,
  so one emulated process runs every model here on few, small inputs.
- ``native``: the host itself, when the process sees AVX2 without VNNI (AMD Zen 3, Intel before Ice Lake).
VNNI, AMX and ARM hosts accumulate in int32: there the native kernels cannot show saturation.

Probes: a MatMulInteger whose pairs all saturate (an integer result), and QDQ convolutions fused into
QLinearConv whose requantisation is exact (power-of-two scales), so real kernel and emulator must
agree to the last bit. Then EfficientNet-Lite0 (real weights, held-out crops) for ``u8s8`` and
``u8s8-saturation-aware``.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgecnn import hostinfo, qemu  # noqa: E402
from edgecnn.exporters import saturation  # noqa: E402
from edgecnn.exporters.graph import logits  # noqa: E402

CROPS = 8  # Lite0 crops per preset: ~1 s each under QEMU
PRESETS = ("u8s8", "u8s8-saturation-aware")
ISA = hostinfo.cpu_info()["isa"]


# ---- probes -----------------------------------------------------------------------------------
def matmul_integer(k: int = 64) -> onnx.ModelProto:
    """uint8 (1, k) x int8 (k, 16) -> int32: with codes 255 and weights 127 every pair is 64,770 > 32,767."""
    b = numpy_helper.from_array(np.full((k, 16), 127, np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 16])], [b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def qdq_conv(w_q: np.ndarray, *, a_zp: int, pad: int, stride: int, y_exp: int, hw: int = 6) -> onnx.ModelProto:
    """Q/DQ -> Conv -> Q/DQ, as ONNX Runtime's quantizer writes it; ORT fuses it into QLinearConv.

    Scales are powers of two, so the requantisation (acc * a_s * w_s / y_s) is exact in float32 on both
    sides, and rounding ties go to even in both: real kernel and emulator can be compared exactly."""
    cout, cin, kh, kw = w_q.shape
    a_s, w_s = 2.0 ** -4, 2.0 ** -6
    arr = lambda v, t, n: numpy_helper.from_array(np.asarray(v, t), n)  # noqa: E731
    inits = [arr(a_s, np.float32, "a_s"), arr(a_zp, np.uint8, "a_z"), arr(w_q, np.int8, "w_q"),
             arr(w_s, np.float32, "w_s"), arr(0, np.int8, "w_z"), arr(2.0 ** y_exp, np.float32, "y_s"),
             arr(128, np.uint8, "y_z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "a_s", "a_z"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"]),
             helper.make_node("Conv", ["x_dq", "w"], ["y_f"], name="conv", pads=[pad] * 4, strides=[stride] * 2),
             helper.make_node("QuantizeLinear", ["y_f", "y_s", "y_z"], ["y_q"]),
             helper.make_node("DequantizeLinear", ["y_q", "y_s", "y_z"], ["y"])]
    oh = (hw + 2 * pad - kh) // stride + 1
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, oh, oh])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# (input channels, kernel, pad, stride, activation zero point, log2 output scale)
CONVS = {"pointwise, 16 channels": (16, 1, 0, 1, 0, 3),
         "3x3 stem, 3 channels (pairs straddle taps), zero point 128 in the padding": (3, 3, 1, 2, 128, 2),
         "3x3, 8 channels, zero point 20": (8, 3, 1, 1, 20, 3)}


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """The probe models with their inputs, and what the emulator says about the convolutions."""
    work = tmp_path_factory.mktemp("avx2-probes")
    rng = np.random.default_rng(0)
    runs = {"matmul_integer": (work / "mmi.onnx", np.full((2, 64), 255, np.uint8))}
    onnx.save(matmul_integer(), str(runs["matmul_integer"][0]))
    emulated = {}
    for name, (cin, k, pad, stride, zp, y_exp) in CONVS.items():
        w_q = rng.integers(40, 128, size=(8, cin, k, k)) * rng.choice([-1, 1], size=(8, 1, 1, 1))  # same-sign rows
        path = work / f"conv{len(runs)}.onnx"
        onnx.save(qdq_conv(w_q, a_zp=zp, pad=pad, stride=stride, y_exp=y_exp), str(path))
        x = rng.uniform(-zp / 16, (255 - zp) / 16, size=(2, cin, 6, 6)).astype(np.float32)  # every uint8 code
        runs[name] = (path, x)
        emulated[name] = {s: saturation.emulated_logits(path, x, saturate=s) for s in (True, False)}
    return {"runs": runs, "emulated": emulated}


@pytest.fixture(scope="module")
def lite0_cases(lite0, lite0_int8):
    """The int8 Lite0 of each preset on the first held-out crops, emulated with and without saturation."""
    x, runs, emulated = lite0["x"][:CROPS], {}, {}
    for preset in PRESETS:
        path = lite0_int8(preset).path
        runs[preset] = (path, x)
        emulated[preset] = {s: saturation.emulated_logits(path, x, saturate=s, threads=2) for s in (True, False)}
    return {"runs": runs, "emulated": emulated, "ref": lite0["ref"][:CROPS]}


def why_not(kernels: str) -> str | None:
    """Why this host has no real AVX2 kernels of this kind (a skip reason), or None."""
    if kernels == "qemu":
        return qemu.unavailable()
    if not hostinfo.saturates_u8s8():
        return (f"the native CPU is not AVX2 without VNNI (the process sees: {', '.join(ISA) or 'nothing'}): "
                "its int8 kernels do not saturate")
    return None


def outputs(kernels: str, runs: dict) -> dict:
    """Every model's outputs from ONNX Runtime's real AVX2 kernels: the host's, or QEMU's Haswell."""
    if kernels == "qemu":
        outs, seen = qemu.ort_outputs([path for path, _ in runs.values()], [x for _, x in runs.values()])
        isa = seen["cpu"]["isa"]
        assert "avx2" in isa and not hostinfo.has_vnni(isa) and "avx512" not in isa, seen["cpu"]  # a Haswell's
        return dict(zip(runs, outs))
    return {name: logits(path, x, 1) for name, (path, x) in runs.items()}


def real(request, cases: str) -> dict:
    """``cases``' outputs on the real AVX2 kernels ``request.param`` names; skipped, with the reason, before
    ``cases`` is built where there are none."""
    reason = why_not(request.param)
    if reason:
        pytest.skip(reason)
    return outputs(request.param, request.getfixturevalue(cases)["runs"])


@pytest.fixture(scope="module", params=["native", "qemu"])
def real_probes(request):
    return real(request, "probes")


@pytest.fixture(scope="module", params=["native", "qemu"])
def real_lite0(request):
    return real(request, "lite0_cases")


def test_matmul_integer_saturates_every_pair(real_probes):
    y = real_probes["matmul_integer"]
    assert (y == 32 * 32767).all(), f"got {np.unique(y)}, exact would be {32 * 255 * 127 * 2}"


@pytest.mark.parametrize("name", CONVS)
def test_qlinearconv_equals_the_emulator_exactly(real_probes, probes, name):
    emulated = probes["emulated"][name]
    assert np.abs(emulated[True] - emulated[False]).max() > 0  # the probe saturates
    np.testing.assert_array_equal(real_probes[name], emulated[True])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("preset", PRESETS)
def test_lite0_real_kernels_match_the_emulator(real_lite0, lite0_cases, preset):
    """Per crop, the real AVX2 logits match the emulated ones (measured: cosine >= 0.9991), and so does the
    fidelity against PyTorch (mean cosine within 0.0005)."""
    emulated, ref, real = lite0_cases["emulated"][preset][True], lite0_cases["ref"], real_lite0[preset]
    assert cosines(real, emulated).min() >= 0.998
    assert abs(cosines(real, ref).mean() - cosines(emulated, ref).mean()) <= 0.005


def test_lite0_saturation_aware_preset_recovers_on_real_kernels(real_lite0, lite0_cases):
    """u8s8 loses to saturation on real AVX2 kernels (measured on these crops: cosine 0.933 vs 0.999 with int32
    accumulation); the saturation-aware preset gets it back (0.998)."""
    ref = lite0_cases["ref"]
    plain, aware = cosines(real_lite0["u8s8"], ref).mean(), cosines(real_lite0["u8s8-saturation-aware"], ref).mean()
    vnni = cosines(lite0_cases["emulated"]["u8s8"][False], ref).mean()
    assert plain <= vnni - 0.03, (plain, vnni)
    assert aware >= 0.99 and aware >= plain + 0.03, (plain, aware)


# ---- OpenVINO's NNCF route: 7-bit weights everywhere where pairs saturate ---------------------------------
@pytest.mark.parametrize("isa,fix", [(["avx2", "fma"], "enable"), (["avx2", "avx512", "avx512_vnni", "fma"],
                                                                  "first_layer_only"), (["arm_dotprod", "neon"],
                                                                                        "first_layer_only")])
def test_nncf_overflow_fix_follows_the_isa(monkeypatch, tmp_path, isa, fix):
    """On AVX2 without VNNI, OpenVINO's int8 kernels saturate like ONNX Runtime's; NNCF's overflow fix on every
    layer (7-bit weights) recovers it (Lite0, held-out crops: cosine 0.961 first layer only -> 0.991).
    Elsewhere NNCF's default (first layer only) stays: 8-bit weights keep more precision."""
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    import openvino as ov

    from edgecnn.exporters.openvino import convert_ir, default_overflow_fix, quantize_nncf
    from edgecnn.exporters.torch_onnx import describe
    from test_int8_passes import float_model, inputs

    real = hostinfo.cpu_info()
    monkeypatch.setattr(hostinfo, "cpu_info", lambda: {**real, "isa": isa})
    assert default_overflow_fix() == fix
    float_model(tmp_path / "m.onnx")
    ir = convert_ir(describe(tmp_path / "m.onnx", stage="fp32", precision="fp32", parent=None),
                    tmp_path / "fp32.xml", precision="fp32")
    art = quantize_nncf(ir, tmp_path / "int8.xml", inputs(16))
    assert f"overflow fix {fix}" in art.notes
    weights = {tuple(op.get_data().shape): int(np.abs(op.get_data().astype(np.int32)).max())
               for op in ov.Core().read_model(str(art.path)).get_ops()
               if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8"}
    # the two pointwise layers (first: 16 -> 32, last: 32 -> 8); the depthwise one is never fixed (nor saturates)
    first, last = weights[(32, 16, 1, 1)], weights[(8, 32, 1, 1)]
    assert first <= 64 and (last <= 64) == (fix == "enable"), weights
