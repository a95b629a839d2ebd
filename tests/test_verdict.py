"""Issue 20: ``check`` decides what counts from the files, never from the manifest's labels.

A hostile folder comes with a consistent manifest (its hashes match the planted files, so ``verify`` passes):
an artifact named ``int8-tensorrt`` or labelled advisory that computes garbage, a ``selected`` that lists the
planted int8 as a losing candidate or names a ``ghost`` default, results whose flags say "ok". None of it may
turn into a pass, and ``predict`` never deploys what ``check`` did not judge. Engines are native code: refused
unless built here or ``--trust-source``. The OpenVINO route is chosen by a stated, noise-aware rule.

One small LeNet-5 int8 export (random weights: its int8 is advisory), copied per case; the CLI runs in this
process, as in test_security.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecnn.artifact import describe
from edgecnn.errors import ArtifactError
from edgecnn.harness import check as check_mod
from edgecnn.harness import common
from edgecnn.harness.check import check_dir
from edgecnn.harness.predict import choose_artifact
from edgecnn.manifest import Manifest
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.pipeline.select import NOISE_SIGMAS, p50_noise, select_route
from edgecnn.results import FLOOR_COSINE, FLOOR_TOP1, ArtifactResult
from edgecnn.timing import Latency
from test_security import edgecnn_cli, one_line
from test_security import edit_received as edit


ORT = ("--runtimes", "onnxruntime")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verdict") / "good"
    r = edgecnn_cli("export", "lenet5", "--targets", "onnxruntime", "--int8", "--calib-size", "16", "--quiet",
                    "--out", out)
    assert r.code == 0, r.err
    Image.new("L", (40, 40), 128).save(out.parent / "img.png")
    return out


@pytest.fixture
def folder(good, tmp_path) -> Path:
    dest = tmp_path / "received"
    shutil.copytree(good, dest)
    shutil.copyfile(good.parent / "img.png", tmp_path / "img.png")
    return dest


def garbage_onnx(src: Path, dest: Path) -> None:
    """``src`` with its logits negated (the classifier scaled by -1; a permutation alone keeps a random LeNet's
    near-constant logits too close): runs fine, computes garbage."""
    model = onnx.load(str(src))
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{o}.raw" if o == out else o for o in node.output]
    model.graph.node.append(onnx.helper.make_node("Neg", [f"{out}.raw"], [out]))
    onnx.save(model, str(dest))


def plant(folder: Path, stage: str, *, precision: str = "int8", garbage: bool = True, src: str = "model.sim.onnx",
          name: str | None = None) -> None:
    """Write an artifact file and record it with its true hashes, as a sender would (the manifest stays consistent)."""
    dest = folder / (name or f"model.{stage}.onnx")
    if garbage:
        garbage_onnx(folder / src, dest)
    else:
        shutil.copyfile(folder / src, dest)
    art = describe(dest, stage=stage, precision=precision, parent="simplify").to_json(folder)

    def change(d):
        d["artifacts"] = [a for a in d["artifacts"] if a["stage"] != stage] + [art]
    edit(folder, change)


def check_json(folder: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    r = edgecnn_cli("check", folder, *ORT, "--json", tmp_path / "c.json", *extra)
    assert "Traceback" not in r.err, r.err
    data = json.loads((tmp_path / "c.json").read_text()) if r.code in (0, 1) else {}
    return r.code, data, r.out


def row(data: dict, artifact: str) -> dict:
    return next(r for r in data["results"] if r["artifact"] == artifact)


def test_garbage_is_below_the_floor(folder):
    """The garbage these tests plant is garbage: far below the floor on both figures."""
    garbage_onnx(folder / "model.sim.onnx", folder / "g.onnx")
    m = Manifest.load(folder)
    rep = check_mod.evaluate_artifact(describe(folder / "g.onnx", stage="g", precision="int8", parent=None),
                                      *_reference(m), latency=False)
    assert rep.parity.cosine < FLOOR_COSINE and rep.parity.top1 < FLOOR_TOP1


@pytest.mark.parametrize("cosine, top1", [(-0.05, 0.0), (0.27, 0.0), (0.9, 0.0), (0.27, 0.9)])
def test_the_issues_garbage_figures_fail_whatever_the_label(cosine, top1):
    """The figures the probe saw on planted artifacts (cosine -0.05 / 0.27, top-1 0%) fail under every label;
    so does either figure alone below the floor. The lowest legitimate figures measured clear it."""
    def result(cos, t1, **labels):
        parity = ParityResult("x", "int8", 32, 9.0, 1.0, 1.0, cos, -3.0, t1, t1, 10, 0.0,
                              Tolerance.for_precision("int8"), ("cosine below 0.98",))
        return ArtifactResult("int8-tensorrt", "int8", parity=parity, **labels)

    for labels in ({}, {"advisory": "random weights"}, {"not_judged": "made for TensorRT"}, {"alternative": True}):
        assert not result(cosine, top1, **labels).ok
    # measured: random-init int8 (MobileNetV2, ShuffleNetV2: all images); TensorRT QDQ on AVX2 (confident crops)
    for cos, t1 in ((0.970, 0.625), (0.981, 0.59), (0.737, 0.50)):
        assert result(cos, t1, advisory="random weights").ok and result(cos, t1, not_judged="TensorRT").ok


def _reference(m: Manifest):
    from edgecnn.data import Preprocessing, evaluation_batch

    x = evaluation_batch(Preprocessing.from_dict(m.preprocessing), 16)
    return x, common.original_model(m).logits(x)


def test_a_healthy_folder_passes_and_marks_what_predict_deploys(folder, tmp_path):
    code, data, out = check_json(folder, tmp_path)
    assert code == 0 and data["passed"] and "all artifacts pass" in out
    deployed = [r["artifact"] for r in data["results"] if r["deployed"]]
    r = edgecnn_cli("predict", folder, folder.parent / "img.png", "--json", tmp_path / "p.json")
    assert r.code == 0, r.err
    assert deployed == [json.loads((tmp_path / "p.json").read_text())["artifact"]] == ["simplify"]


def test_garbage_named_int8_tensorrt_fails_check_and_is_never_deployed(folder, tmp_path):
    plant(folder, "int8-tensorrt")
    code, data, out = check_json(folder, tmp_path)
    assert code == 1 and data["passed"] is False and "all artifacts pass" not in out
    bad = row(data, "int8-tensorrt")
    assert bad["not_judged"] and not bad["ok"] and not bad["deployed"]
    one_line(edgecnn_cli("predict", folder, folder.parent / "img.png", "--artifact", "int8-tensorrt"),
             "not deployed on onnxruntime", code=2)
    r = edgecnn_cli("predict", folder, folder.parent / "img.png", "--json", tmp_path / "p.json")
    assert r.code == 0 and json.loads((tmp_path / "p.json").read_text())["artifact"] != "int8-tensorrt"


def test_predict_on_a_received_folder_says_whose_word_chose_the_artifact(good, folder, tmp_path):
    """predict deploys by the manifest's recorded results; on a folder this machine did not export (a copy) it
    says those results are the sender's and that check judges here. On its own export it says nothing of it."""
    img = folder.parent / "img.png"
    received = edgecnn_cli("predict", folder, img, "--json", tmp_path / "r.json")
    own = edgecnn_cli("predict", good, good.parent / "img.png", "--json", tmp_path / "o.json")
    assert received.code == own.code == 0, received.err + own.err
    assert "not exported on this machine" in " ".join(received.out.split())
    assert json.loads((tmp_path / "r.json").read_text())["note"]
    assert "not exported on this machine" not in own.out and json.loads((tmp_path / "o.json").read_text())["note"] is None


def test_a_working_int8_tensorrt_is_shown_not_judged(folder, tmp_path):
    plant(folder, "int8-tensorrt", garbage=False, src="model.int8.onnx")
    code, data, out = check_json(folder, tmp_path)
    assert code == 0 and data["passed"], out
    r = row(data, "int8-tensorrt")
    assert r["not_judged"] and r["ok"] and not r["deployed"]
    assert ArtifactResult.from_dict(r).verdict == "not judged"  # (the table's rendering is test_tables' business)


def test_the_name_int8_tensorrt_never_makes_a_file_deployable(folder):
    """Renaming the fp32 model 'int8-tensorrt' removes it from what predict may run; it grants nothing."""
    edit(folder, lambda d: [a.update(stage="int8-tensorrt") for a in d["artifacts"] if a["stage"] == "simplify"])
    m = Manifest.load(folder)
    assert common.deployed_artifact(m, "onnxruntime").key == "export"
    edit(folder, lambda d: d.update(artifacts=[a for a in d["artifacts"] if a["stage"] == "int8-tensorrt"]))
    with pytest.raises(Exception, match="no artifact onnxruntime runs and judges"):
        choose_artifact(Manifest.load(folder), runtime="onnxruntime")


def test_garbage_advisory_int8_fails_check(folder, tmp_path):
    plant(folder, "int8")  # random weights: the int8 row is advisory, and garbage still fails
    code, data, _ = check_json(folder, tmp_path)
    bad = row(data, "int8")
    assert code == 1 and not data["passed"] and bad["advisory"] and not bad["ok"]


def test_selected_listing_the_planted_int8_as_a_loser_fails_check(folder, tmp_path):
    plant(folder, "int8")
    edit(folder, lambda d: d.update(selected={"onnxruntime:int8": {"default": "simplify",
                                                                            "candidates": ["simplify", "int8"]}}))
    code, data, out = check_json(folder, tmp_path)
    assert code == 1 and not data["passed"] and row(data, "int8")["alternative"] and "all artifacts pass" not in out


def test_a_ghost_default_changes_nothing(folder, tmp_path):
    for stage, name in (("export", "model.onnx"), ("simplify", "model.sim.onnx"), ("int8", "model.int8.onnx")):
        garbage_onnx(folder / name, folder / name)
        prec = "int8" if stage == "int8" else "fp32"
        art = describe(folder / name, stage=stage, precision=prec, parent=None).to_json(folder)
        edit(folder, lambda d: [a.update(art) for a in d["artifacts"] if a["stage"] == stage])
    edit(folder, lambda d: d.update(selected={"g": {"default": "ghost",
                                                             "candidates": ["ghost", "export", "simplify", "int8"]}}))
    m = Manifest.load(folder)
    assert m.alternatives() == set() and m.defaults() == set()  # a default that is not here selects nothing
    code, data, out = check_json(folder, tmp_path)
    assert code == 1 and data["passed"] is False and "all artifacts pass" not in out
    assert not any(r["ok"] for r in data["results"])


def test_a_pass_over_nothing_judged_is_an_error(folder, tmp_path):
    plant(folder, "int8-tensorrt", garbage=False, src="model.int8.onnx")
    edit(folder, lambda d: d.update(artifacts=[a for a in d["artifacts"] if a["stage"] == "int8-tensorrt"]))
    one_line(edgecnn_cli("check", folder, *ORT), "nothing to judge", "int8-tensorrt", code=2)


def test_results_flags_in_the_manifest_change_nothing(folder, tmp_path):
    plant(folder, "int8")

    def lie(d):
        for r in d["results"].values():
            r.update(ok=True, alternative=True, advisory="trust me", not_judged="x", deployed=False)
            if r.get("parity"):
                r["parity"].update(passed=True, failures=[], cosine=1.0)
    edit(folder, lie)
    code, data, _ = check_json(folder, tmp_path)
    assert code == 1 and not data["passed"]


# --- engines are native code -------------------------------------------------------------------
def engine_folder(folder: Path) -> Path:
    """A folder whose manifest lists a (fake) TensorRT engine with its true hash."""
    (folder / "tensorrt").mkdir()
    (folder / "tensorrt" / "model.fp32.engine").write_bytes(b"not an engine, and never deserialized")
    art = describe(folder / "tensorrt" / "model.fp32.engine", stage="tensorrt-fp32", precision="fp32",
                   parent="simplify", fmt="tensorrt", runtime="tensorrt").to_json(folder)
    edit(folder, lambda d: d["artifacts"].append(art))
    return folder


def test_an_engine_not_built_here_is_refused_before_it_is_loaded(folder, monkeypatch, tmp_path):
    engine_folder(folder)
    m = Manifest.load(folder)
    eng = m.artifact("tensorrt-fp32")
    with pytest.raises(ArtifactError, match="an engine is native code.*--trust-source"):
        common.admit_engine(m, eng, trust_source=False)
    common.admit_engine(m, eng, trust_source=True)  # the user vouches for it
    monkeypatch.setattr(common, "built_here", lambda _m, _a: True)
    common.admit_engine(m, eng, trust_source=False)  # the ledger proves these bytes were built here
    monkeypatch.undo()

    from edgecnn.harness import bench as bench_mod

    loaded = []
    everything = {"onnxruntime": None, "openvino": None, "tensorrt": None, "torch": None}
    monkeypatch.setattr(check_mod, "availability", lambda: everything)  # as on a machine with TensorRT
    monkeypatch.setattr(bench_mod, "availability", lambda: everything)
    monkeypatch.setattr(check_mod, "load", lambda art, **_k: loaded.append(art) or pytest.fail("loaded"))
    one_line(edgecnn_cli("check", folder), "refused to load the TensorRT engine", "--trust-source", code=2)
    one_line(edgecnn_cli("bench", folder, "--runtimes", "tensorrt", "--iterations", "1"),
             "refused to load the TensorRT engine", code=2)
    one_line(edgecnn_cli("predict", folder, folder.parent / "img.png", "--runtime", "tensorrt"),
             "refused to load the TensorRT engine", code=2)
    assert loaded == []


def test_an_engine_the_ledger_proves_is_admitted_and_only_those_bytes(folder):
    from edgecnn import ledger

    engine_folder(folder)
    m = Manifest.load(folder)
    eng = m.artifact("tensorrt-fp32")
    assert not common.built_here(m, eng)
    ledger.record(folder, eng.path)  # as the export that built it records it
    assert common.built_here(m, eng)
    common.admit_engine(m, eng, trust_source=False)
    eng.path.write_bytes(b"swapped for other native code")  # same name, other bytes: proves nothing
    assert not common.built_here(m, eng)
    with pytest.raises(ArtifactError, match="native code"):
        common.admit_engine(m, eng, trust_source=False)


# --- the OpenVINO route: a stated rule, not a coin flip ----------------------------------------
def _route(cosine: float, p50: float, std: float, passed: bool = True) -> ArtifactResult:
    parity = ParityResult("r", "int8", 32, 0.1, 0.01, 0.01, cosine, 30.0, 1.0, 1.0, 8, 1.0,
                          Tolerance.for_precision("int8"), () if passed else ("cosine below 0.98",))
    return ArtifactResult("r", "int8", parity=parity, latency=Latency(20, 1, p50, p50, p50, p50, std))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.floats(0.5, 20), jitter=st.floats(-1, 1), std=st.floats(0.01, 0.5), swap=st.booleans())
def test_route_choice_is_stable_within_noise(base, jitter, std, swap):
    """Identical routes whose p50s differ by less than the measured noise: the same choice, whatever the order
    and the jitter, and the rule says it was the tie-break."""
    a, b = _route(0.991, base, std), _route(0.991, base, std)
    within = 0.99 * NOISE_SIGMAS * np.hypot(p50_noise(a), p50_noise(b))
    b.latency.p50_ms = base + jitter * within
    cands = {"openvino-int8-nncf": b, "openvino-int8-qdq": a}
    if swap:
        cands = dict(reversed(list(cands.items())))
    best, rule = select_route(cands, order=("openvino-int8-qdq", "openvino-int8-nncf"))
    assert best == "openvino-int8-qdq" and rule.startswith("tie")


@pytest.mark.parametrize("rounds, expected", [
    ([(2.0, 3.0)] * 6, "openvino-int8-nncf"),  # faster in every alternating round: speed decides
    ([(2.0, 3.0)] * 5 + [(3.1, 3.0)], "openvino-int8-qdq"),  # one round against: the fixed tie-break
    ([], "openvino-int8-qdq"),  # no confirmation measured: no speed verdict
    ([(3.2, 3.0)] * 6, "openvino-int8-qdq"),  # the quick p50s lied: the first is faster in every round
])
def test_speed_decides_only_when_alternating_rounds_all_agree(rounds, expected):
    """Quick p50s taken minutes apart under a changing load (3.02 vs 2.19 ms here, then the reverse) must not
    flip the default between identical runs: the alternating re-timing decides, all rounds or nothing."""
    cands = {"openvino-int8-qdq": _route(0.99, 3.0, 0.01), "openvino-int8-nncf": _route(0.99, 2.0, 0.01)}
    asked = []

    def confirm(a, b):
        asked.append((a, b))
        return rounds
    best, rule = select_route(cands, order=("openvino-int8-qdq", "openvino-int8-nncf"), confirm=confirm)
    assert asked == [("openvino-int8-nncf", "openvino-int8-qdq")]
    assert best == expected and ("alternating rounds" in rule), rule


def test_route_rules_fidelity_first_then_speed_beyond_noise():
    order = ("qdq", "nncf")
    best, rule = select_route({"qdq": _route(0.95, 1.0, 0.01, passed=False), "nncf": _route(0.99, 9.0, 0.01)},
                              order=order)
    assert best == "nncf" and rule.startswith("fidelity")
    best, rule = select_route({"nncf": _route(0.991, 1.0, 0.05), "qdq": _route(0.991, 2.0, 0.05)}, order=order)
    assert best == "nncf" and rule.startswith("speed")
    best, rule = select_route({"nncf": _route(0.991, 1.9, 0.5), "qdq": _route(0.991, 2.0, 0.5)}, order=order)
    assert best == "qdq" and rule.startswith("tie")
    # "slower than fp32" is speed too: only beyond the noise of both measurements
    a, b = _route(0.999, 2.2, 0.5), _route(0.990, 1.0, 0.5)
    assert select_route({"qdq": a, "nncf": b}, order=order, baseline_p50=2.0, baseline_noise=0.1)[0] == "qdq"
    assert select_route({"qdq": a, "nncf": b}, order=order, baseline_p50=1.5, baseline_noise=0.01)[0] == "nncf"


# --- the Hypothesis fuzz: labels never turn garbage into a pass --------------------------------
LABELS = st.fixed_dictionaries({}, optional={
    "selected": st.dictionaries(st.sampled_from(["openvino:int8", "g", "onnxruntime:int8"]), st.fixed_dictionaries(
        {"default": st.none() | st.sampled_from(["ghost", "export", "simplify", "int8"]),
         "candidates": st.lists(st.sampled_from(["ghost", "export", "simplify", "int8"]), max_size=4)},
        # each CPU architecture's route, and the architectures each route is for (OpenVINO int8)
        optional={"targets": st.dictionaries(st.sampled_from(["x86", "arm"]),
                                             st.none() | st.sampled_from(["ghost", "export", "simplify", "int8"])),
                  "route_targets": st.dictionaries(st.sampled_from(["export", "simplify", "int8"]),
                                                   st.lists(st.sampled_from(["x86", "arm"]), max_size=2))}),
        max_size=2),
    "weights": st.none() | st.just("random"),
})
FLAGS = st.fixed_dictionaries({}, optional={
    "ok": st.booleans(), "alternative": st.booleans(), "advisory": st.none() | st.text(max_size=5),
    "not_judged": st.none() | st.text(max_size=5), "deployed": st.booleans(), "error": st.none()})


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(labels=LABELS, flags=st.dictionaries(st.sampled_from(["export", "simplify", "int8"]), FLAGS),
       victim=st.sampled_from(["export", "simplify", "int8", "int8-tensorrt"]))
def test_fuzz_labels_never_pass_garbage(good, tmp_path_factory, labels, flags, victim):
    folder = tmp_path_factory.mktemp("fz") / "f"
    shutil.copytree(good, folder)
    names = {"export": "model.onnx", "simplify": "model.sim.onnx", "int8": "model.int8.onnx"}
    if victim == "int8-tensorrt":
        plant(folder, victim)
    else:
        garbage_onnx(folder / "model.sim.onnx", folder / names[victim])
        prec = "int8" if victim == "int8" else "fp32"
        art = describe(folder / names[victim], stage=victim, precision=prec, parent=None).to_json(folder)
        edit(folder, lambda d: [a.update(art) for a in d["artifacts"] if a["stage"] == victim])

    def mutate(d):
        if "selected" in labels:
            d["selected"] = labels["selected"]
        if "weights" in labels:
            d["config"]["weights"] = labels["weights"]
        for stage, f in flags.items():
            d["results"].setdefault(stage, {"artifact": stage, "precision": "fp32"}).update(f)
    edit(folder, mutate)
    try:
        report = check_dir(folder, runtimes=("onnxruntime",), n_images=8)
    except ArtifactError:  # e.g. weights named but not on this machine: refused, never a pass
        return
    assert not report.passed
