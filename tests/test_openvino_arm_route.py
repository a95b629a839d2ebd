"""OpenVINO int8 on ARM: the s8s8 route (symmetric int8 activations), recorded as the ARM route of an export, is what
an ARM machine deploys; the u8-activation routes, which fail to compile on a Cortex-A72, never are there."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn import runtimes
from edgecnn.artifact import describe
from edgecnn.exporters import openvino as eov
from edgecnn.exporters.int8 import PRESETS
from edgecnn.harness import common
from edgecnn.manifest import Manifest
from edgecnn.models import get_spec, preprocessing
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.results import ArtifactResult

QDQ, NNCF, S8S8 = eov.QDQ_ROUTE, eov.NNCF_ROUTE, eov.ARM_ROUTE


def test_target_arch_and_route_targets():
    assert [eov.target_arch(m) for m in ("aarch64", "arm64", "armv7l", "x86_64", "AMD64")] == \
        ["arm", "arm", "arm", "x86", "x86"]
    assert [k for k, v in eov.ROUTE_TARGETS.items() if "arm" in v] == [S8S8]
    assert all("x86" in v for v in eov.ROUTE_TARGETS.values())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_arm_recipe_is_symmetric_and_keeps_the_users_choices(preset):
    recipe = PRESETS[preset].__class__(**{**PRESETS[preset].__dict__, "calibration": "percentile",
                                          "per_channel": False, "exclude_nodes": ("a",)})
    sym = eov.arm_recipe(recipe)
    assert sym.symmetric and sym.activation_type == "int8" and not sym.saturation_aware and sym.preset == "s8s8"
    assert (sym.calibration, sym.per_channel, sym.exclude_nodes, sym.bias_correction) == \
        ("percentile", False, ("a",), recipe.bias_correction)
    assert sym.reduce_range == (recipe.reduce_range or recipe.saturation_aware)  # x86 without VNNI runs it too


def _parity(passed: bool) -> ParityResult:
    return ParityResult("x", "int8", 8, 0.1, 0.01, 0.01, 0.99 if passed else 0.5, 30.0, 1.0, 1.0, 8, 1.0,
                        Tolerance.for_precision("int8"), () if passed else ("cosine 0.5 < 0.98",))


def _folder(root, *, s8s8_passes: bool = True, default: str = QDQ) -> Manifest:
    arts, results = [], {}
    for stage, precision in (("openvino-fp32", "fp32"), (QDQ, "int8"), (NNCF, "int8"), (S8S8, "int8")):
        (root / f"{stage}.bin").write_bytes(b"w")
        (root / f"{stage}.xml").write_bytes(stage.encode())
        arts.append(describe(root / f"{stage}.xml", stage=stage, precision=precision, parent="simplify",
                             fmt="openvino", runtime="openvino"))
        results[stage] = ArtifactResult(stage, precision, runtime="openvino",
                                        parity=_parity(s8s8_passes or stage != S8S8))
    return Manifest(model="squeezenet1_1", weights={"source": "imagenet"}, input_shape=[1, 3, 64, 64],
                    dynamic_batch=None, preprocessing=preprocessing(get_spec("squeezenet1_1"), 64).to_dict(),
                    config={"model": "squeezenet1_1", "weights": "imagenet"}, versions={}, host={},
                    artifacts=arts, results=results,
                    selected={"openvino:int8": {"default": default, "candidates": [QDQ, NNCF, S8S8], "rule": "r",
                                                "targets": {"x86": QDQ, "arm": S8S8},
                                                "route_targets": {k: list(v) for k, v in eov.ROUTE_TARGETS.items()}}})


@pytest.mark.parametrize("default", [QDQ, S8S8])
@pytest.mark.parametrize("arch,deployed", [("x86", QDQ), ("arm", S8S8)])
def test_each_architecture_deploys_its_recorded_route(tmp_path, monkeypatch, arch, deployed, default):
    """Whichever the default (an export made before the portable default: x86's route), each architecture deploys
    its own; only the route no architecture chose is an alternative."""
    monkeypatch.setattr(common, "target_arch", lambda: arch)
    m = _folder(tmp_path, default=default)
    assert common.deployed_artifact(m, "openvino").key == deployed
    assert m.alternatives() == {NNCF} and m.defaults() == {QDQ, S8S8}


def _routes(**cosines) -> dict[str, ArtifactResult]:
    """Working OpenVINO int8 results (None: failed to compile) with these cosines and equal latency."""
    out = {}
    for stage, cos in zip((QDQ, NNCF, S8S8), (cosines.get("qdq"), cosines.get("nncf"), cosines.get("s8s8"))):
        if cos is None:
            out[stage] = ArtifactResult.failed(stage, "int8", "could not compile")
            continue
        p = _parity(True)
        out[stage] = ArtifactResult(stage, "int8", runtime="openvino", parity=p.__class__(**{**p.__dict__,
                                                                                              "cosine": cos}))
    return out


@pytest.mark.parametrize("cosines,here,default", [
    # x86's measured pick made for x86 only: the default is the route that compiles on every CPU
    (dict(qdq=0.999, nncf=0.99, s8s8=0.998), QDQ, S8S8),
    (dict(qdq=None, nncf=0.999, s8s8=0.99), NNCF, S8S8),
    # the portable route is itself the best here: one route for all
    (dict(qdq=0.99, nncf=0.99, s8s8=0.999), S8S8, S8S8),
    # no working route for every CPU: the default is x86's (ARM gets none)
    (dict(qdq=0.999, nncf=0.99, s8s8=None), QDQ, QDQ),
    (dict(qdq=None, nncf=None, s8s8=None), None, None),
])
def test_the_default_is_the_route_every_cpu_compiles(monkeypatch, cosines, here, default):
    from edgecnn.pipeline import run

    monkeypatch.setattr(eov, "target_arch", lambda machine=None: "x86")
    cands = _routes(**cosines)
    said = []
    stub = type("Stub", (), {"say": lambda self, m: said.append(m)})()
    best, rule = run.select_route(cands, order=run.OPENVINO_INT8_ROUTES)
    targets = run._Export.route_targets(stub, cands, best)
    assert best == here and targets["targets"] == {"x86": here, "arm": S8S8 if cosines["s8s8"] else None}
    chosen, why = run._Export.portable_default(cands, best, rule, targets["targets"])
    assert chosen == default
    assert (why == rule) == (default == here) and (default != here) <= ("every CPU architecture" in why)


def test_on_arm_a_route_made_for_x86_only_is_never_deployed(tmp_path, monkeypatch):
    """The ARM route failing its parity: ARM falls back to fp32, never to a route that does not compile there."""
    monkeypatch.setattr(common, "target_arch", lambda: "arm")
    assert common.deployed_artifact(_folder(tmp_path, s8s8_passes=False), "openvino").key == "openvino-fp32"
    monkeypatch.setattr(common, "target_arch", lambda: "x86")
    assert common.deployed_artifact(_folder(tmp_path, s8s8_passes=False), "openvino").key == QDQ


HAS_OV = runtimes.availability()["openvino"] is None


@pytest.fixture(scope="module")
def x86_export(tmp_path_factory):
    from edgecnn.pipeline.config import ExportConfig
    from edgecnn.pipeline.run import run_export

    out = tmp_path_factory.mktemp("armroute") / "sq"
    run_export(ExportConfig("squeezenet1_1", resolution=64, int8=True, calib_size=8, eval_size=4, out=str(out),
                            targets=("onnxruntime", "openvino"), progress=False), log=lambda _m: None)
    return out


@pytest.mark.skipif(not HAS_OV, reason="OpenVINO is not installed")
def test_on_an_arm_machine_check_and_bench_leave_the_x86_routes_out(x86_export, monkeypatch):
    """Carried to an ARM machine, an x86 export's routes made for x86 only are not run (they do not compile on a
    Cortex-A72), each named with why; the ARM route is the deployed OpenVINO row and is judged."""
    from edgecnn.harness import bench, check

    monkeypatch.setattr(common, "target_arch", lambda: "arm")  # the one place the machine's architecture is read
    report = check.check_dir(x86_export, runtimes=("openvino",), n_images=4)
    rows = {r.artifact: r for r in report.results}
    assert "int8" not in rows and {"export", "simplify"} <= set(rows)  # the int8 ONNX on OpenVINO: the QDQ route
    assert any(s.startswith("int8@openvino: not run on this machine: OpenVINO reading this int8 ONNX is the "
                            f"{QDQ} route") for s in report.skipped), report.skipped
    # random weights: int8 is advisory, so fp32 is the deployed row (a trained export deploys the ARM route:
    # test_each_architecture_deploys_its_recorded_route, tests/test_proxies.py)
    assert QDQ not in rows and NNCF not in rows and rows[S8S8].ok and rows["openvino-fp32"].deployed
    assert report.passed
    for stage in (QDQ, NNCF):
        assert f"{stage}@openvino: not run on this machine: a route edgecnn makes for other CPU architectures " \
               "only (exporters/openvino.py ROUTE_TARGETS); an ARM machine never deploys it" in report.skipped
    timed = bench.bench_dir(x86_export, runtimes=("openvino",), iterations=2, warmup=0, baselines=())
    assert {r.artifact for r in timed.results} >= {S8S8} and not {QDQ, NNCF} & {r.artifact for r in timed.results}
    monkeypatch.setattr(common, "target_arch", lambda: "x86")  # on x86 every route runs
    assert {QDQ, NNCF, S8S8} <= {r.artifact for r in check.check_dir(x86_export, runtimes=("openvino",),
                                                                      n_images=4).results}


@pytest.mark.skipif(not HAS_OV, reason="OpenVINO is not installed")
def test_check_emulate_runs_the_irs_an_arm_machine_deploys_on_its_openvino_kernels(x86_export):
    """check --emulate cortex-a72 on an x86 export: each IR on the A72's OpenVINO kernels (the hint edgecnn's
    runtime sets there), the deployed OpenVINO row the ARM route, which is the export's default and compiles and
    runs int8 there; the routes made for x86 only are listed as not run, never a failed compile nor a pass."""
    from edgecnn import qemu_arm
    from edgecnn.harness.check import check_dir

    if (reason := qemu_arm.unavailable()) is not None:
        pytest.skip(reason)
    out = x86_export
    report = check_dir(out, emulate="cortex-a72", n_images=4)
    rows = {(r.artifact, r.runtime): r for r in report.results}
    assert set(rows) == {("export", "onnxruntime"), ("simplify", "onnxruntime"), ("int8", "onnxruntime"),
                         ("openvino-fp32", "openvino"), (S8S8, "openvino")}, sorted(rows)
    arm = rows[(S8S8, "openvino")]  # random weights: advisory int8 (fp32 is the deployed row), and it runs
    assert arm.error is None and arm.ok and arm.info["emulated_cpu"] == "cortex-a72"
    assert arm.info["inference_precision"] == "f32" and arm.info["compute_layers"].get("int8", 0) >= 8, arm.info
    assert Manifest.load(out).selected["openvino:int8"]["default"] == S8S8
    fp32 = rows[("openvino-fp32", "openvino")]
    assert fp32.parity.passed and set(fp32.info["compute_layers"]) == {"fp32"}, fp32.info  # the f32 hint held
    for stage in (QDQ, NNCF):
        assert any(s.startswith(f"{stage}@openvino: not run on cortex-a72") for s in report.skipped), report.skipped
    assert report.passed and "OpenVINO" in report.emulated["caveat"] and report.emulated["openvino"]


@pytest.mark.slow
@pytest.mark.skipif(runtimes.availability()["openvino"] is not None, reason="OpenVINO is not installed")
def test_the_arm_route_of_an_x86_export_compiles_and_runs_on_an_emulated_cortex_a72(tmp_path):
    """The bar: an export made here records an ARM route, and that route compiles and runs int8 on the A72's real
    OpenVINO kernels (the aarch64 wheel under qemu-aarch64), where the u8s8 QDQ route fails to compile."""
    from edgecnn import qemu_arm
    from edgecnn.pipeline.config import ExportConfig
    from edgecnn.pipeline.run import run_export

    if (reason := qemu_arm.unavailable()) is not None:
        pytest.skip(reason)
    out = tmp_path / "sq"
    run_export(ExportConfig("squeezenet1_1", resolution=64, int8=True, calib_size=8, eval_size=4, out=str(out),
                            targets=("onnxruntime", "openvino"), progress=False), log=lambda _m: None)
    sel = json.loads((out / "manifest.json").read_text())["selected"]["openvino:int8"]
    assert sel["default"] == sel["targets"]["arm"] == S8S8 and sel["route_targets"][S8S8] == ["x86", "arm"]
    m = Manifest.load(out)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    # the default, as the manifest names it, and the u8s8 QDQ route
    outs, seen = qemu_arm.ov_outputs([m.artifact(sel["default"]).path, m.artifact(QDQ).path], x, cpu="cortex-a72",
                                     hint="f32")
    arm, qdq = seen["runs"]
    assert outs[0] is not None and np.isfinite(outs[0]).all() and "error" not in arm
    int8 = sum(n for k, n in arm["exec"]["Convolution"].items() if k.endswith(("/i8", "/u8")))
    assert int8 >= 8, arm["exec"]  # most of SqueezeNet's 26 convolutions run in int8 there
    assert outs[1] is None and "error" in qdq  # what the ARM route exists for (OpenVINO 2026.4)
