"""OpenVINO runs an fp32 artifact in f32, and the precision it used is read back from the compiled model, not
assumed (edgecnn.backends.openvino.plugin_precision): OpenVINO's own default is bf16 on x86 CPUs with
AVX512-BF16 / AMX and f16 on fp16-capable ARM cores."""
from __future__ import annotations

import textwrap
from dataclasses import asdict

import pytest

import tiny_onnx
from edgecnn import runtimes

pytestmark = pytest.mark.skipif(runtimes.availability()["openvino"] is not None, reason="OpenVINO is not installed")


@pytest.fixture(scope="module")
def fp32_ir(tmp_path_factory):
    from edgecnn.exporters.openvino import convert_ir

    d = tmp_path_factory.mktemp("ovp")
    onnx_art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), d / "m.onnx")
    return convert_ir(onnx_art, d / "m.fp32.xml", precision="fp32")


def test_the_fp32_artifact_runs_in_f32_as_read_back(fp32_ir):
    with runtimes.load(fp32_ir, threads=1) as rt:
        info = asdict(rt.info())
    used = info["executed_precision"]
    assert used["inference_precision"] == "f32" and info["versions"]["inference_precision"] == "f32"
    assert used["compute_layers"] == {"fp32": 2} and used["fp32_kept"]  # the conv and the Gemm


def test_the_read_back_reports_what_the_plugin_chose_not_the_request(fp32_ir):
    """Compiled without edgecnn's hint, or with a lower one where this CPU has it, the same read-back says so."""
    import openvino as ov

    from edgecnn.backends.openvino import plugin_precision

    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    lower = "bf16" if "BF16" in caps else "f16" if "FP16" in caps else None
    if lower is None:
        pytest.skip(f"this CPU computes neither bf16 nor f16 natively ({', '.join(caps)}): OpenVINO runs f32 anyway")
    used = plugin_precision(core.compile_model(str(fp32_ir.path), "CPU", {"INFERENCE_PRECISION_HINT": lower}))
    assert used["inference_precision"] == lower and not used["fp32_kept"]
    default = plugin_precision(core.compile_model(str(fp32_ir.path), "CPU"))
    assert default["inference_precision"] == lower  # OpenVINO's own default here: what edgecnn's hint overrides


ARM_PROBE = textwrap.dedent("""
    import json, sys
    import openvino as ov
    from edgecnn.backends.openvino import plugin_precision
    from edgecnn.runtimes.openvino import OpenVINORuntime
    rt = OpenVINORuntime(sys.argv[1], precision="fp32", device="cpu", threads=1)
    print(json.dumps({"edgecnn": rt.executed_precision(),
                      "default": plugin_precision(ov.Core().compile_model(sys.argv[1], "CPU"))}))
""")


@pytest.mark.slow
def test_on_an_emulated_fp16_capable_arm_core_the_fp32_artifact_still_runs_in_f32(fp32_ir, tmp_path):
    """cortex-a76 (fp16 arithmetic, like the Jetson Orin's A78AE): OpenVINO's default would be f16; edgecnn's
    runtime, run there on the real aarch64 wheel, asks for f32 and reads back that it got it."""
    import json

    from edgecnn import qemu_arm

    reason = qemu_arm.unavailable()
    if reason:
        pytest.skip(reason)
    proc = qemu_arm.python(["-c", ARM_PROBE, str(fp32_ir.path)], cpu="cortex-a76", work=tmp_path, timeout=900)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["default"]["inference_precision"] == "f16" and seen["default"]["compute_layers"].get("fp16")
    assert seen["edgecnn"]["inference_precision"] == "f32" and seen["edgecnn"]["fp32_kept"], seen
