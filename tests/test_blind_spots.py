"""The blind spots mutation testing found (issue 17): each test here is the smallest that fails on one
deliberate bug and passes on the right code. Fast unit tests only: no model export, no real ISA
(the ISA is faked where the decision depends on it).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgecnn import fileio
from edgecnn.artifact import Artifact
from edgecnn.exporters import int8 as int8_mod
from edgecnn.exporters.int8 import PRESETS, default_preset, recipe_for
from edgecnn.harness.common import Original
from edgecnn.models.shufflenet_v1 import channel_shuffle
from edgecnn.parity import ParityResult, Tolerance, compare
from edgecnn.pipeline import ExportConfig
from edgecnn.pipeline.select import select_default
from edgecnn.results import ArtifactResult
from edgecnn.timing import Latency, measure

import tiny_onnx


def _confident(n=16, k=10, seed=0):
    """Logits with one clear winner per row: every row is a confident original."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, k))
    x[np.arange(n), rng.integers(0, k, n)] += 12
    return x


# --- parity: the cosine maths, its threshold, the default tolerances ------------------------------
def test_cosine_of_the_negated_output_is_minus_one():
    ref = _confident()
    r = compare(ref, -ref, precision="int8")
    assert r.cosine == pytest.approx(-1.0)
    assert not r.passed


def test_cosine_is_per_image_over_the_class_axis():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = np.array([[1.0, 2.0], [4.0, 3.0]])
    # per row (image): 1 and 24/25 -> mean 0.98; over the other axis (per class) it would be 0.99466
    assert compare(ref, out).cosine == pytest.approx(0.98, abs=1e-12)
    # and a mean over images, not one cosine of the flattened batch: an image with small logits counts fully
    big_and_small = np.array([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    flipped_small = np.array([[10.0, 0.0, 0.0], [-0.1, 0.0, 0.0]])
    assert compare(big_and_small, flipped_small).cosine == pytest.approx(0.0, abs=1e-12)


def test_the_cosine_threshold_alone_fails_an_int8_result():
    ref = _confident()
    out = ref.copy()
    rng = np.random.default_rng(1)
    for row in out:  # every top-1 kept, every other logit shuffled: only the cosine moves
        top = row.argmax()
        rest = np.delete(np.arange(len(row)), top)
        row[rest] = rng.permutation(row[rest]) * 6.0
        row[top] = 1.0 + row[rest].max() + 1.0
    r = compare(ref, out, precision="int8")
    assert r.top1 == 1.0 and r.top1_confident == 1.0 and r.cosine < 0.98
    assert not r.passed and len(r.failures) == 1 and r.failures[0].startswith("cosine ")


def test_the_cosine_threshold_is_inclusive():
    ref = _confident()
    out = ref + np.random.default_rng(2).normal(0, 1.0, ref.shape)
    cos = compare(ref, out).cosine
    assert compare(ref, out, tolerance=Tolerance(cosine=cos)).passed
    assert not compare(ref, out, tolerance=Tolerance(cosine=np.nextafter(cos, 2.0))).passed


def test_default_tolerances_are_pinned_per_precision():
    assert Tolerance.for_precision("fp32") == Tolerance(max_abs_rel=1e-3, cosine=0.9999)
    assert Tolerance.for_precision("fp16") == Tolerance(rel_l2=2e-2, cosine=0.999, top1_confident=1.0)
    assert Tolerance.for_precision("int8") == Tolerance(cosine=0.98, top1_confident=0.97)
    ref = _confident()
    assert compare(ref, ref).tolerance == Tolerance.for_precision("fp32")  # the default precision is fp32
    with pytest.raises(KeyError):
        Tolerance.for_precision("int4")


# --- int8 presets: the one recorded is the one asked for; the default follows the ISA -------------
@pytest.mark.parametrize("isa, preset", [
    (["avx2", "fma"], "u8s8-saturation-aware"),  # AVX2 without VNNI: int16 pair saturation
    (["avx2", "avx512", "avx512_vnni"], "u8s8"),
    (["avx2", "avx_vnni"], "u8s8"),
    (["avx2", "avx512", "amx", "amx_int8"], "u8s8"),
    (["neon", "arm_dotprod"], "u8s8"),
    (["neon"], "u8s8"),
    ([], "u8s8"),
])
def test_default_preset_follows_the_isa(fake_isa, isa, preset):
    assert default_preset(isa) == preset
    fake_isa(*isa)  # and with no argument, this machine's (faked) ISA decides
    assert default_preset() == preset
    assert recipe_for() == PRESETS[preset]
    plan = ExportConfig("squeezenet1_1", int8=True, targets=("onnxruntime",)).resolve()
    assert plan.recipe == PRESETS[preset]


def test_cli_int8_preset_is_the_recipe_recorded(monkeypatch, fake_isa):
    """`--int8-preset u8s8-reduce-range`: the config the export runs with, and records, has 7-bit weights."""
    import edgecnn.pipeline
    from edgecnn.cli import main

    fake_isa("avx2")  # the default would be saturation-aware here: the flag must win
    seen = []

    class Stop(Exception):
        pass

    def fake_run_export(cfg, log=print):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(edgecnn.pipeline, "run_export", fake_run_export)
    with pytest.raises(Stop):
        main(["export", "squeezenet1_1", "--int8", "--int8-preset", "u8s8-reduce-range", "--targets", "onnxruntime",
              "--quiet"])
    cfg = seen[-1]
    recorded = cfg.to_dict(cfg.resolve())
    assert recorded["int8_preset"] == "u8s8-reduce-range"
    assert recorded["int8_recipe"]["reduce_range"] is True and recorded["int8_recipe"]["saturation_aware"] is False
    with pytest.raises(Stop):
        main(["export", "squeezenet1_1", "--int8", "--targets", "onnxruntime", "--quiet"])
    assert seen[-1].int8 == PRESETS["u8s8-saturation-aware"]


# --- route selection: the best of several, wherever it is listed --------------------------------
def _route(cosine, p50, passed=True):
    parity = ParityResult("r", "int8", 8, 0.1, 0.01, 0.01, cosine, 30.0, 1.0, 1.0, 8, 1.0,
                          Tolerance.for_precision("int8"), () if passed else ("cosine below 0.98",))
    return ArtifactResult("r", "int8", parity=parity, latency=Latency(20, 1, p50, p50, p50, p50, 0.0))


@pytest.mark.parametrize("worse, better, baseline", [
    (_route(0.95, 1.0, passed=False), _route(0.99, 5.0), None),  # passing beats failing, however fast
    (_route(0.999, 3.0), _route(0.99, 1.5), 2.0),  # not slower than fp32 beats better cosine
    (_route(0.990, 1.0), _route(0.995, 3.0), None),  # better cosine (3 decimals) beats speed
    (_route(0.9951, 2.0), _route(0.9949, 1.0), None),  # same cosine to 3 decimals: the faster one
])
def test_route_selection_picks_the_best_in_either_order(worse, better, baseline):
    assert select_default({"qdq": worse, "nncf": better}, baseline_p50=baseline) == "nncf"
    assert select_default({"nncf": better, "qdq": worse}, baseline_p50=baseline) == "nncf"


# --- ONNX Runtime: threads and the requested device reach the session ----------------------------
def test_onnxruntime_session_gets_the_threads(tmp_path):
    from edgecnn import runtimes

    art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    with runtimes.load(art, threads=3) as rt:
        opts = rt.session.get_session_options()
        assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1
        assert rt.info().threads == 3 and rt.info().provider == "CPUExecutionProvider"
    with runtimes.load(art) as rt:  # no threads asked: ONNX Runtime's own default (0 = all cores)
        assert rt.session.get_session_options().intra_op_num_threads == 0


class FakeSession:
    """Stands in for onnxruntime.InferenceSession; records what it was asked for."""

    made: list["FakeSession"] = []

    def __init__(self, src, options, providers=None):
        self.src, self.options, self.providers = src, options, providers
        FakeSession.made.append(self)

    def get_inputs(self):
        return [SimpleNamespace(name="input", type="tensor(float)", shape=[1, *tiny_onnx.SHAPE[1:]])]

    def get_providers(self):
        return list(self.providers)


@pytest.mark.parametrize("device, first", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"),
                                           ("cpu", "CPUExecutionProvider")])
def test_onnxruntime_asks_for_the_device_provider_first(tmp_path, monkeypatch, device, first):
    from edgecnn import runtimes

    art = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    FakeSession.made.clear()
    rt = runtimes.OnnxRuntime(art.path, device=device, threads=2)
    (made,) = FakeSession.made
    assert made.providers[0] == first and made.providers[-1] == "CPUExecutionProvider"
    assert made.options.intra_op_num_threads == 2
    assert rt.provider() == first


# --- ShuffleNet v1: the channel shuffle really shuffles ------------------------------------------
def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    y = torch.arange(2 * 6 * 2 * 3.0).view(2, 6, 2, 3)  # batch and spatial positions are left alone
    out = channel_shuffle(y, 2)
    assert out.shape == y.shape
    assert torch.equal(out[:, [0, 2, 4, 1, 3, 5]], torch.stack([y[:, c] for c in (0, 1, 2, 3, 4, 5)], 1))


# --- latency: percentiles of the timed runs only; bench speedups against the same batch's eager row ------
class FakeClock:
    """time.perf_counter for timing.measure: each call of ``run`` takes the next duration (ms)."""

    def __init__(self, durations_ms):
        self.now, self.durations = 0.0, list(durations_ms)

    def perf_counter(self):
        return self.now

    def run(self, _x):
        self.now += self.durations.pop(0) / 1e3


def test_latency_percentiles_come_from_the_timed_runs(monkeypatch):
    import edgecnn.timing as timing

    clock = FakeClock([500.0, 700.0] + [float(i) for i in range(1, 11)])  # 2 slow warm-up runs, then 1..10 ms
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    ticks = []
    lat = measure(clock.run, np.zeros((4, 1), np.float32), warmup=2, iterations=10, progress=lambda: ticks.append(1))
    assert lat.n == 10 and lat.batch == 4 and len(ticks) == 10
    assert lat.p50_ms == pytest.approx(5.5) and lat.p90_ms == pytest.approx(9.1) and lat.p99_ms == pytest.approx(9.91)
    assert lat.mean_ms == pytest.approx(5.5) and lat.std_ms == pytest.approx(np.sqrt(8.25))
    assert lat.throughput == pytest.approx(4 * 1000 / 5.5)


def test_latency_for_a_duration(monkeypatch):
    import edgecnn.timing as timing

    clock = FakeClock([2.0] * 20)
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    lat = measure(clock.run, np.zeros((1, 1), np.float32), warmup=0, iterations=None, duration_s=0.0099)
    assert lat.n == 5  # runs start at 0, 2, 4, 6 and 8 ms: all before the 9.9 ms deadline
    clock = FakeClock([2.0] * 3)
    lat = measure(clock.run, np.zeros((1, 1), np.float32), warmup=0, iterations=None, duration_s=None)
    assert lat.n == 1  # neither a count nor a duration: one run


class FakeRun:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, x):
        return np.zeros((len(x), 2), np.float32)


def test_bench_speedup_is_against_eager_at_the_same_batch(monkeypatch):
    from edgecnn.harness import bench

    p50 = {("torch-eager", 1): 10.0, ("torch-eager", 4): 40.0, ("simplify", 1): 5.0, ("simplify", 4): 10.0}
    arts = [Artifact("simplify", "onnx", "fp32", Path("/nowhere/model.sim.onnx"), runtime="onnxruntime")]
    manifest = SimpleNamespace(verify=lambda: None, dynamic_batch=32, input_shape=[1, 3, 8, 8], preprocessing={},
                               model="m", artifacts=arts, defaults=set)
    monkeypatch.setattr(bench, "Manifest", SimpleNamespace(load=lambda _d: manifest))
    monkeypatch.setattr(bench, "Preprocessing", SimpleNamespace(from_dict=lambda _d: None))
    monkeypatch.setattr(bench, "sample_library", lambda _p, n, folder: SimpleNamespace(
        x=np.zeros((n, 3, 8, 8), np.float32), settings=dict))
    monkeypatch.setattr(bench, "original_model", lambda _m, **_kw: Original("eager", "torch"))
    monkeypatch.setattr(bench, "baseline", lambda model, _name: model)
    monkeypatch.setattr(bench, "availability", lambda: {"torch": None, "onnxruntime": None, "openvino": "absent"})

    @contextmanager
    def fake_load(target, runtime, threads, precision, device, mode):
        name = "torch-eager" if target == "eager" else target.key
        yield SimpleNamespace(run=FakeRun(name), device=device, versions=lambda: {})

    def fake_measure(run, _library, _settings, *, batch, **_kw):
        t = p50[(run.name, batch)]
        return Latency(5, batch, t, t, t, t, 0.0), None

    monkeypatch.setattr(bench, "load", fake_load)
    monkeypatch.setattr(bench, "run_latency", fake_measure)
    monkeypatch.setattr(bench, "probe", lambda *_a, **_kw: None)  # the worker's pre-run of a received graph
    monkeypatch.setattr(bench, "record", lambda _rt: None)  # the execution record: not what this test is about
    report = bench.bench_dir("out", batches=(1, 4), progress=False)
    speedup = {(r.artifact, r.runtime, r.batch): r.speedup for r in report.results}
    assert speedup == {("torch-eager", "torch", 1): 1.0, ("torch-eager", "torch", 4): 1.0,
                       ("simplify", "onnxruntime", 1): 2.0, ("simplify", "onnxruntime", 4): 4.0}
    assert report.skipped == ["simplify@openvino: unavailable: absent"]


# --- onnxsim: its own output check runs, and a failed check keeps the unsimplified model ----------
def test_onnxsim_checks_its_outputs(tmp_path, monkeypatch):
    import onnxsim

    from edgecnn.exporters.simplify import simplify_onnx

    src = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "m.onnx")
    real, calls = onnxsim.simplify, []

    def spy(model, **kw):
        calls.append(kw)
        return real(model, **kw)

    monkeypatch.setattr(onnxsim, "simplify", spy)
    art, why = simplify_onnx(src, tmp_path / "m.sim.onnx")
    assert art is not None and why == "" and calls[0].get("check_n", 0) >= 1
    monkeypatch.setattr(onnxsim, "simplify", lambda model, **kw: (model, False))  # its check found changed outputs
    art, why = simplify_onnx(src, tmp_path / "m2.sim.onnx")
    assert art is None and "check" in why and not (tmp_path / "m2.sim.onnx").exists()


# --- artifacts are written to a temporary name and renamed, never in place ------------------------
def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "a.onnx"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and tmp != dest and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not dest.exists() and os.listdir(tmp_path) == []
    dest.write_text("good")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert dest.read_text() == "good" and os.listdir(tmp_path) == ["a.onnx"]
    with fileio.atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and os.listdir(tmp_path) == ["a.onnx"]


def _convert_fp16(src, dest):
    from edgecnn.exporters.fp16 import convert_fp16

    return convert_fp16(src, dest)


def _simplify(src, dest):
    from edgecnn.exporters.simplify import simplify_onnx

    return simplify_onnx(src, dest)[0]


def _int8(src, dest):
    return int8_mod.quantize_int8(src, dest, tiny_onnx.inputs(4), recipe=PRESETS["u8s8"], opset=17, progress=False)


def _torch_export(_src, dest):
    from edgecnn.exporters.torch_onnx import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten(), torch.nn.Linear(48, 4)).eval()
    return export_onnx(model, dest, input_shape=tiny_onnx.SHAPE)


@pytest.mark.parametrize("stage", [_torch_export, _simplify, _convert_fp16, _int8])
def test_stages_write_through_a_temporary_name(tmp_path, monkeypatch, stage):
    (tmp_path / "src").mkdir()
    src = tiny_onnx.save(tiny_onnx.conv_gemm_model(), tmp_path / "src" / "m.onnx")
    dest = tmp_path / "out" / "model.x.onnx"
    dest.parent.mkdir()
    real_replace, renames = os.replace, []

    def spy(a, b):
        renames.append((Path(a), Path(b), Path(b).exists(), Path(a).stat().st_size))
        return real_replace(a, b)

    monkeypatch.setattr(fileio.os, "replace", spy)
    art = stage(src, dest)
    final = [(a, existed, size) for a, b, existed, size in renames if b == dest]
    assert len(final) == 1, renames
    tmp, existed, size = final[0]
    assert tmp.parent == dest.parent and tmp.name.startswith(".") and not existed and size > 0
    assert art.path == dest.resolve() and dest.stat().st_size == size
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.x.onnx"]  # no temporary file left behind
