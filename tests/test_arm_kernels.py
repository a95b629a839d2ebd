"""int8 and fp32 on real ARM kernels: ONNX Runtime's (and OpenVINO's) aarch64 wheels under qemu-aarch64
(edgecnn.qemu_arm) on three CPU models, against exact int32 arithmetic and against fp32.

- ``cortex-a72`` (Raspberry Pi 4): no dot product; MLAS runs u8s8 and s8s8 through an S8S8 NEON kernel that
  adds two s8 x s8 products in an int16 lane (SMULL + SMLAL, then SADALP);
- ``cortex-a76`` (the Jetson Orin's A78AE class): UDOT / SDOT;
- ``max,sve=off`` (Apple-silicon like): UMMLA / SMMLA (i8mm).
All three accumulate in int32: no saturation, so with ONNX Runtime's weights in [-127, 127] they must agree
with exact arithmetic to the last bit. The one exception is a pair of -128 x -128 products, which wraps the
A72's int16 lane (a probe shows it). One emulated process per CPU runs every model (its start, ~5-10 s, is
the main cost); the three run two at a time. Skipped, with the reason, where qemu-aarch64 or the arm64
packages cannot be had (.ci/run installs qemu-user and adds the arm64 architecture where apt is available).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_avx2_kernels import CONVS, cosines, matmul_integer, qdq_conv  # noqa: E402

from edgecnn import hostinfo, qemu_arm  # noqa: E402
from edgecnn.exporters import saturation  # noqa: E402
from edgecnn.exporters.graph import logits  # noqa: E402
from edgecnn.exporters.int8 import default_preset  # noqa: E402

MODELS = ("squeezenet1_1", "mobilenet_v2")  # emphasis families: plain convs; depthwise + residual Adds
PX, IMAGES = 64, 2
PRESETS = ("u8s8", "s8s8")
# What each -cpu hands the process as HWCAPs (QEMU 7.2), as hostinfo decodes them.
ISA = {"cortex-a72": {"neon"}, "cortex-a76": {"neon", "arm_dotprod", "arm_fp16"},
       "max,sve=off": {"neon", "arm_dotprod", "arm_fp16", "arm_i8mm", "arm_bf16"}}


def wrap_probe() -> onnx.ModelProto:
    """uint8 code 0 x int8 -128, k = 64: exactly 0; the A72 kernel flips u8 to s8 (0 -> -128), and each pair
    of products (-128 x -128) * 2 = 32768 wraps its int16 lane."""
    b = numpy_helper.from_array(np.full((64, 16), -128, np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "wrap",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 16])], [b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Every model run on ARM, with its input and its host reference: probes (exact by construction) and
    the emphasis models' fp32, u8s8 and s8s8 artifacts (random weights: kernels, not accuracy)."""
    reason = qemu_arm.unavailable()
    if reason:
        pytest.skip(reason)
    import edgecnn
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.exporters.int8 import get_preset, quantize_int8
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.models import get_spec, preprocessing

    work, rng = tmp_path_factory.mktemp("arm"), np.random.default_rng(0)
    runs, exact = {}, {}
    for name, model, x in (("matmul_integer", matmul_integer(), np.full((1, 64), 255, np.uint8)),
                           ("wrap", wrap_probe(), np.zeros((1, 64), np.uint8))):
        onnx.save(model, str(work / f"{name}.onnx"))
        runs[name] = (work / f"{name}.onnx", x)
    for name, (cin, k, pad, stride, zp, y_exp) in CONVS.items():
        w_q = rng.integers(40, 128, size=(8, cin, k, k)) * rng.choice([-1, 1], size=(8, 1, 1, 1))
        path = work / f"conv{len(runs)}.onnx"
        onnx.save(qdq_conv(w_q, a_zp=zp, pad=pad, stride=stride, y_exp=y_exp), str(path))
        x = rng.uniform(-zp / 16, (255 - zp) / 16, size=(2, cin, 6, 6)).astype(np.float32)
        runs[name] = (path, x)
        exact[name] = saturation.emulated_logits(path, x, saturate=False)  # int32 accumulation, exact scales
    for name in MODELS:
        spec = get_spec(name)
        prep = preprocessing(spec, PX)
        x = evaluation_batch(prep, IMAGES)
        fp32 = export_onnx(edgecnn.create_model(name, calibration_resolution=PX), work / f"{name}.onnx",
                           input_shape=(1, 3, PX, PX))
        runs[f"{name} fp32"] = (fp32.path, x)
        calib = calibration_batch(prep, 8)
        for preset in PRESETS:
            q = quantize_int8(fp32, work / f"{name}.{preset}.onnx", calib, recipe=get_preset(preset), opset=17,
                              progress=False)
            runs[f"{name} {preset}"] = (q.path, x)
            exact[f"{name} {preset}"] = logits(q.path, x, 1, optimize=False)  # Q/DQ arithmetic, graph as written
    return {"runs": runs, "exact": exact, "fp32": {n: logits(p, x, 1) for n, (p, x) in runs.items() if "fp32" in n}}


@pytest.fixture(scope="module")
def arm(cases):
    """cpu -> (name -> ONNX Runtime's output on that emulated CPU, what the process saw)."""
    def run(cpu):
        outs, seen = qemu_arm.ort_outputs([p for p, _ in cases["runs"].values()], [x for _, x in cases["runs"].values()],
                                          cpu=cpu)
        return cpu, (dict(zip(cases["runs"], outs)), seen)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, ISA))


@pytest.mark.parametrize("cpu", ISA)
def test_the_process_sees_the_cpus_hwcaps_and_gets_u8s8(arm, cpu):
    """HWCAP decoded inside the emulated process (hostinfo.isa_process), and the int8 preset chosen from it."""
    info = arm[cpu][1]["cpu"]
    assert set(info["isa_process"]) == ISA[cpu], info
    assert "HWCAP" in info["isa_source"] and "sve" not in info["isa"], info
    assert default_preset(info["isa"]) == "u8s8"


@pytest.mark.parametrize("cpu", ISA)
def test_matmul_integer_accumulates_exactly(arm, cpu):
    """255 x 127 pairs: 64,770 each, beyond int16; ARM's int32 accumulation gives the exact 2,072,640
    (AVX2 without VNNI: 32 x 32767, tests/test_avx2_kernels.py)."""
    y = arm[cpu][0]["matmul_integer"]
    assert (y == 64 * 255 * 127).all(), np.unique(y)


@pytest.mark.parametrize("cpu", ISA)
def test_a_minus_128_pair_wraps_only_the_a72_kernel(arm, cpu):
    """Weights of -128 against u8 code 0: exact is 0. The A72's int16 pair lane wraps (why edgecnn's own
    exports keep weights in [-127, 127]); the dot-product and i8mm kernels do not."""
    y = arm[cpu][0]["wrap"]
    if cpu == "cortex-a72":
        assert (y != 0).all(), np.unique(y)
    else:
        assert (y == 0).all(), np.unique(y)


@pytest.mark.parametrize("cpu", ISA)
@pytest.mark.parametrize("name", CONVS)
def test_qlinearconv_equals_exact_arithmetic(arm, cases, cpu, name):
    """Power-of-two scales: the exact int32 result requantised exactly; the ARM kernels give it to the bit."""
    np.testing.assert_array_equal(arm[cpu][0][name], cases["exact"][name])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("preset", PRESETS)
def test_int8_models_are_exact_on_every_arm_kernel(arm, cases, model, preset):
    """The three kernel families (int16-pair NEON, UDOT/SDOT, UMMLA/SMMLA) give bit-identical int8 logits,
    and those are exact arithmetic's: the Q/DQ graph computed in float on the host (cosine >= 0.9999, the
    float path's own rounding); u8s8 on a host whose kernels accumulate in int32 (VNNI, AMX): bit-identical."""
    key = f"{model} {preset}"
    first, *others = (arm[cpu][0][key] for cpu in ISA)
    for cpu, other in zip(list(ISA)[1:], others):
        np.testing.assert_array_equal(other, first, err_msg=f"{key}: {cpu} vs cortex-a72")
    assert cosines(first, cases["exact"][key]).min() >= 0.9999
    fp32 = cases["fp32"][f"{model} fp32"]  # as faithful to fp32 as exact arithmetic is
    assert abs(cosines(first, fp32).mean() - cosines(cases["exact"][key], fp32).mean()) <= 1e-4
    if preset == "u8s8" and not hostinfo.saturates_u8s8() and hostinfo.cpu_info()["arch"] in ("x86_64", "AMD64"):
        np.testing.assert_array_equal(first, logits(cases["runs"][key][0], cases["runs"][key][1], 1))


@pytest.mark.parametrize("cpu", ISA)
@pytest.mark.parametrize("model", MODELS)
def test_fp32_matches_the_host(arm, cases, cpu, model):
    key = f"{model} fp32"
    ref = cases["fp32"][key]
    np.testing.assert_allclose(arm[cpu][0][key], ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_openvino_runs_on_arm(cases):
    """OpenVINO's aarch64 CPU plugin (ACL) on a Jetson-class core: the fp32 model in f32 (read back from the
    compiled model, not assumed) matches the host, and its runtime graph says which kernels ran."""
    pytest.importorskip("openvino")
    path, x = cases["runs"]["squeezenet1_1 fp32"]
    outs, seen = qemu_arm.ov_outputs([path], x, cpu="cortex-a76", hint="f32")
    run = seen["runs"][0]
    assert "error" not in run and run["inference_precision"] == "f32", run
    assert any("f32" in k for k in run["exec"].get("Convolution", {})), run["exec"]
    ref = cases["fp32"]["squeezenet1_1 fp32"]
    np.testing.assert_allclose(outs[0], ref, rtol=0, atol=1e-3 * np.abs(ref).max())
