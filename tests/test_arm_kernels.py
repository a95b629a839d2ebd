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
import hashlib
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


def wrap_conv(channels: int, *, depthwise: bool) -> onnx.ModelProto:
    """A QDQ convolution of -128 weights on input code 0 (activation zero point 0): exactly 0 in, the output
    zero point out. ONNX Runtime fuses it into QLinearConv, whose ARM kernels flip u8 codes to s8 (0 -> -128)
    and add two products in an int16 lane where they have no dot product: 2 x 16384 wraps. A float Q/DQ
    path (graph optimisations off) cannot wrap: the probe shows the int8 kernels ran."""
    model = qdq_conv(np.full((channels, 1 if depthwise else channels, 3, 3), -128), a_zp=0, pad=1, stride=1, y_exp=3)
    if depthwise:
        model.graph.node[3].attribute.append(helper.make_attribute("group", channels))
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = channels
    return model


WRAPS = {"3x3, 16 channels": (16, False, {"cortex-a72"}),  # only the A72's GEMM has int16 pairs
         "depthwise 3x3, 16 channels": (16, True, set(ISA))}  # MLAS has no dot-product depthwise kernel


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
    for name, (channels, depthwise, _) in WRAPS.items():
        path = work / f"wrap{len(runs)}.onnx"
        onnx.save(wrap_conv(channels, depthwise=depthwise), str(path))
        runs[name] = (path, np.zeros((1, channels, 6, 6), np.float32))
        exact[name] = saturation.emulated_logits(path, runs[name][1], saturate=False)
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
@pytest.mark.parametrize("name", WRAPS)
def test_minus_128_weights_wrap_where_products_pair_in_int16(arm, cases, cpu, name):
    """Fused QLinearConv with -128 weights on u8 code 0 (exact: the output zero point): the A72's GEMM and every
    core's depthwise kernel wrap; UDOT/SDOT and UMMLA do not. A wrap proves ONNX Runtime's int8 kernels ran."""
    wraps = cpu in WRAPS[name][2]
    assert (arm[cpu][0][name] != cases["exact"][name]).any() == wraps, (cpu, np.unique(arm[cpu][0][name]))


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


# ---- check --emulate: an export judged on an emulated ARM CPU, logits exactly a plain ONNX Runtime run's ----
PLAIN = """import sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
for i, path in enumerate(sys.argv[3:]):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[j: j + 1]})[0] for j in range(len(x))])
    np.save(f"{sys.argv[2]}/{i}.npy", y)
"""


@pytest.fixture(scope="module")
def export_dir(cases, tmp_path_factory):
    from edgecnn.pipeline import ExportConfig, run_export

    out = tmp_path_factory.mktemp("arm-export") / "sq"
    run_export(ExportConfig("squeezenet1_1", resolution=64, int8=True, calib_size=8, eval_size=4, out=str(out),
                            targets=("onnxruntime",), progress=False), log=lambda _m: None)
    return out


@pytest.mark.parametrize("cpu", [pytest.param(c, marks=[] if c == "cortex-a72" else pytest.mark.slow) for c in ISA])
def test_check_emulate_judges_a_plain_qemu_runs_logits(export_dir, monkeypatch, tmp_path, cpu):
    """check --emulate CPU: every ONNX artifact judged on that CPU's ONNX Runtime kernels, whose logits are
    exactly what a plain ``InferenceSession`` (default options) computes under qemu-aarch64 on the same inputs;
    the report records the CPU, what its process saw, and that it says nothing about speed."""
    from edgecnn.harness.check import check_dir

    calls = []
    real = qemu_arm.ort_outputs
    monkeypatch.setattr(qemu_arm, "ort_outputs", lambda models, x, **kw: calls.append((models, x)) or real(models, x, **kw))
    report = check_dir(export_dir, emulate=cpu)
    assert report.passed and report.emulated["cpu"] == cpu and set(report.emulated["isa_process"]) == ISA[cpu]
    assert any("not their speed" in n for n in report.notes)
    (models, x), = calls
    assert {r.artifact for r in report.results} == {"export", "simplify", "int8"} and len(models) == 3
    np.save(tmp_path / "x.npy", x)
    qemu_arm.python(["-c", PLAIN, str(tmp_path / "x.npy"), str(tmp_path), *models], cpu=cpu, work=tmp_path)
    for i, res in enumerate(report.results):
        plain = np.load(tmp_path / f"{i}.npy")
        assert res.info["logits_sha256"] == hashlib.sha256(plain.astype(np.float32).tobytes()).hexdigest(), res.artifact


def test_check_emulate_refuses_what_it_cannot_do(export_dir):
    from edgecnn.errors import ConfigError
    from edgecnn.harness.check import check_dir

    with pytest.raises(ConfigError, match="unknown ARM CPU 'cortex-x9'"):
        check_dir(export_dir, emulate="cortex-x9")
    with pytest.raises(ConfigError, match="ONNX Runtime and OpenVINO only, not torch"):
        check_dir(export_dir, emulate="cortex-a76", runtimes=("openvino", "torch"))


def test_a_sysroot_this_machine_did_not_build_is_never_used(monkeypatch, tmp_path):
    """A folder at the sysroot's place without this machine's record of building it (a killed build's
    left-over moved there, a copy, someone else's) is refused and left alone, never run."""
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path))
    try:
        final = tmp_path / "qemu-aarch64" / qemu_arm._key(qemu_arm.wheel_versions())
    except qemu_arm.QemuUnavailable as e:
        pytest.skip(str(e))
    (final / "usr" / "bin").mkdir(parents=True)
    (final / "site" / "onnxruntime").mkdir(parents=True)
    (final / "usr" / "bin" / qemu_arm.PYTHON).write_text("#!/bin/sh\n")
    (final / qemu_arm.BUILD).write_text("{}")
    assert qemu_arm._built() is None
    with pytest.raises(qemu_arm.QemuUnavailable, match="no record of building it|qemu-aarch64 not found|arm64"):
        qemu_arm.sysroot()
    assert (final / qemu_arm.BUILD).read_text() == "{}"
