"""bench's MLPerf-style scenarios (issue 23.2/23.3): loadgen's early-stopping estimate against the formula computed
independently here, Triton's stability rule, the TEST01-style output check against a stub runtime that computes
something else while timed, the VALID/INVALID reasons, the sample library, machine state from a fake sysfs tree,
tables at 80/100 columns, and `report` keeping results of other settings apart."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from edgecnn import layout
from edgecnn.errors import ConfigError
from edgecnn.harness import machine
from edgecnn.harness.bench import BenchReport, bench_dir
from edgecnn.harness.samples import SampleLibrary
from edgecnn.harness.scenario import Settings, judge, run_latency
from edgecnn.report import bench_table, markdown, scenario_lines, settings_groups
from edgecnn.results import ArtifactResult
from edgecnn.timing import early_stopping, min_passing, stability

# ---- early stopping: MLPerf loadgen's formula, computed here with the binomial CDF (not the beta function) -------


def mlperf_estimate(latencies, p: float, c: float = 0.99):
    """loadgen's SingleStream loop, written from its definition: h(t) = the least h with P(Binomial(h + t, 1 - p) <= t)
    < 1 - c; t = 1 and then i = 2, 3, ... until n < h(i) + i; the estimate is the t-th slowest latency."""
    n = len(latencies)

    def h_of(t: int) -> int:
        hs = np.arange(1, 20 * n + 1000)
        return int(hs[np.argmax(binom.cdf(t, hs + t, 1 - p) < 1 - c)])

    if n < h_of(1) + 1:
        return None, None
    t = 1
    for i in range(2, n + 1):
        if n < h_of(i) + i:
            t = i - 1
            break
    return float(np.sort(latencies)[n - t]), t - 1


def test_early_stopping_minimum_queries_are_mlperfs():
    # 64 queries at p90 (loadgen: "Need to process at least 64 queries"), and 662 at p99: mlperf.conf's
    # *.MultiStream.min_query_count = 662 is that minimum
    assert min_passing(1, 0.90) + 1 == 64 and min_passing(1, 0.99) + 1 == 662
    assert binom.cdf(1, 64, 0.1) < 0.01 <= binom.cdf(1, 63, 0.1)  # the boundary, from the formula itself


@pytest.mark.parametrize("n,p,seed", [(100, 0.90, 0), (500, 0.90, 1), (700, 0.99, 2)])
def test_early_stopping_estimate_matches_the_formula(n, p, seed):
    lat = np.random.default_rng(seed).lognormal(1.0, 0.3, n)  # any order: the estimate sorts
    expected, discarded = mlperf_estimate(lat, p)
    es = early_stopping(lat, p)
    assert es["met"] and es["estimate_ms"] == expected and es["discarded"] == discarded
    assert np.percentile(lat, p * 100) <= es["estimate_ms"]  # an upper bound on the percentile, never below it


def test_early_stopping_hand_values():
    # n = 100 at p90: t = 3 (h(3) = 97 (binom.cdf(3, 100, 0.1) = 0.0078 < 0.01), h(4) = 124 > 100 - 4): the 3rd
    # slowest of 1..100 is 98, and 2 are discarded
    assert binom.cdf(3, 100, 0.1) < 0.01 < binom.cdf(4, 100, 0.1)
    es = early_stopping(np.arange(1, 101, dtype=float), 0.9)
    assert (es["estimate_ms"], es["discarded"]) == (98.0, 2)
    short = early_stopping(np.arange(63, dtype=float), 0.9)
    assert not short["met"] and short["estimate_ms"] is None and short["min_queries"] == 64


# The real loadgen (mlcommons-loadgen 6.0.17 from PyPI, benchmarks/loadgen_crosscheck.py, its summary's "Would
# discard N highest latency queries"): for these query counts it discards as many as edgecnn (the counts depend on
# n, the percentile and the confidence only); below 64 (p90) and 662 (p99) queries it says early stopping needs more.
LOADGEN_DISCARDS = {0.90: {64: 0, 100: 2, 137: 4, 500: 33, 1024: 79, 4000: 354}, 0.99: {662: 0, 700: 0, 2000: 8}}


@pytest.mark.parametrize("p", sorted(LOADGEN_DISCARDS))
def test_early_stopping_discards_what_loadgen_discards(p):
    for n, discarded in LOADGEN_DISCARDS[p].items():
        assert early_stopping(np.arange(n, dtype=float), p)["discarded"] == discarded, n


# ---- Triton's stability rule ---------------------------------------------------------------------------------

def windows(means, qps=None):
    return [{"mean_ms": m, "qps": q} for m, q in zip(means, qps or [1000 / m for m in means])]


def test_stability_rule():
    assert stability(windows([5.0, 1.0, 1.05, 1.1], qps=[9, 10, 10, 10]))["stable"]  # the last 3: max / min = 1.10
    drift = stability(windows([1.0, 1.0, 1.12]))
    assert not drift["stable"] and "12% apart" in drift["why"]
    assert not stability(windows([1.0, 1.0, 1.0], qps=[100, 100, 80]))["stable"]  # throughput must agree too
    assert not stability(windows([1.0, 1.0]))["stable"]  # fewer than 3 windows: not stable


# ---- the run: a fake clock, a stub runtime ---------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class StubRuntime:
    """A linear 'model'; ``cheat_after`` calls, it returns something else (a timed path that is not the model)."""

    def __init__(self, clock: Clock, *, cheat_after: int | None = None, ms=lambda k: 1.0):
        self.clock, self.cheat_after, self.ms, self.calls = clock, cheat_after, ms, 0
        self.w = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
        self.inputs: list[bytes] = []

    def __call__(self, x):
        self.calls += 1
        self.inputs.append(x.tobytes())
        self.clock.t += self.ms(self.calls) / 1e3
        y = x.mean(axis=(2, 3)) @ self.w
        return y + 0.5 if self.cheat_after is not None and self.calls > self.cheat_after else y


def library(n=8, seed=3):
    return SampleLibrary(np.random.default_rng(seed).normal(size=(n, 3, 4, 4)).astype(np.float32), "test", seed)


def test_run_is_valid_on_a_steady_honest_runtime():
    clock = Clock()
    s = Settings.default("single-stream", min_duration_s=0.3, min_queries=150)
    rt = StubRuntime(clock)
    lat, rec = run_latency(rt, library(), s, state=lambda: None, clock=clock)
    assert rec["verdict"] == "VALID" and rec["reasons"] == [], rec["reasons"]
    assert len(set(rt.inputs[8:])) == 8  # the timed queries (after the accuracy pass) drew every sample
    assert rec["queries"] == lat.n >= 150 and len(rec["stability"]["windows"]) == 3
    assert rec["output_check"]["checked"] >= 3 and rec["output_check"]["passed"]
    assert rec["early_stopping"]["estimate_ms"] == pytest.approx(1.0)


def test_output_check_fails_when_the_timed_path_computes_something_else():
    clock = Clock()
    s = Settings.default("single-stream", min_duration_s=0.3, min_queries=150)
    lib = library()
    _, rec = run_latency(StubRuntime(clock, cheat_after=len(lib)), lib, s, state=lambda: None, clock=clock)
    assert rec["verdict"] == "INVALID" and not rec["output_check"]["passed"]
    assert any(r.startswith("output check: ") and "differ from the accuracy pass" in r for r in rec["reasons"])


def test_unsettled_latency_runs_ten_windows_and_is_unstable():
    clock = Clock()
    s = Settings.default("single-stream", min_duration_s=0.3, min_queries=30)
    _, rec = run_latency(StubRuntime(clock, ms=lambda k: 1.0 + k / 50), library(), s, state=lambda: None,
                         clock=clock)  # each call slower than the last: windows never agree
    assert len(rec["stability"]["windows"]) == 10 and rec["verdict"] == "INVALID"
    assert any(r.startswith("unstable: ") for r in rec["reasons"])


def test_multi_stream_query_is_its_samples():
    clock = Clock()
    s = Settings.default("multi-stream", min_duration_s=0.0, min_queries=700, samples_per_query=4)
    rt = StubRuntime(clock)
    lat, rec = run_latency(rt, library(), s, state=lambda: None, clock=clock)
    assert lat.batch == 4 and lat.p50_ms == pytest.approx(4.0)  # four calls of one sample per query
    assert rec["early_stopping"]["percentile"] == 0.99 and rec["early_stopping"]["met"]


def test_verdict_reasons():
    s = Settings.default("single-stream", min_duration_s=10, min_queries=200)
    steady = windows([1.0, 1.0, 1.0])
    ok = {"checked": 5, "mismatched": 0, "passed": True}
    assert judge(s, [1.0] * 300, steady, 12.0, ok, None)["verdict"] == "VALID"
    rec = judge(s, [1.0] * 50, windows([1.0, 1.0, 1.5], qps=[100, 100, 100]), 3.0, {"checked": 4, "mismatched": 1, "passed": False},
                {"throttled": True, "why": "CPU clock fell to 70% of its reading before the row"})
    assert rec["verdict"] == "INVALID"
    assert rec["reasons"] == ["ran 3.0 s < min duration 10 s", "50 queries < min 200",
                              "early stopping needs 64 queries, ran 50",
                              "unstable: last 3 windows' mean latency 50% apart (> 10%)",
                              "output check: 1 of 4 sampled timed outputs differ from the accuracy pass",
                              "throttled: CPU clock fell to 70% of its reading before the row"]


def test_settings_defaults_and_aliases():
    s = Settings.default("single-stream")
    assert (s.min_duration_s, s.min_queries, s.samples_per_query) == (2.0, 100, 1)
    assert s.to_dict()["note"] == "not MLPerf-length: min 2 s < MLPerf's 600 s"
    assert Settings.default("single-stream", min_queries=5).min_duration_s == 0.0  # --iterations alone: a count
    m = Settings.default("multi-stream")
    assert (m.samples_per_query, m.min_queries) == (8, 662)
    assert Settings.default("single-stream", min_duration_s=600).to_dict()["mlperf_length"]
    assert Settings.default("single-stream", sustained_min=1).windows == 10
    with pytest.raises(ConfigError, match="multi-stream"):
        Settings.default("single-stream", samples_per_query=4)
    with pytest.raises(ConfigError, match="give one of them"):  # before any folder is read
        bench_dir("/nonexistent", mode="throughput", scenario="single-stream")


def test_sample_library_is_real_images_with_a_recorded_seed():
    from edgecnn.data import Preprocessing
    from edgecnn.harness.samples import sample_library

    prep = Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    a, b = sample_library(prep, n=6, seed=1), sample_library(prep, n=6, seed=7)
    assert len({x.tobytes() for x in a.x}) == 6  # six different samples, not one repeated tensor
    assert a.sha256 == sample_library(prep, n=6, seed=1).sha256 != b.sha256
    assert a.settings()["library_seed"] == 1 and a.settings()["images"] == "bundled photos"


# ---- machine state: a fake sysfs tree --------------------------------------------------------------------------

def fake_sysfs(root: Path, khz: dict[int, int], *, gpu_hz: int | None = None) -> Path:
    for cpu, cur in khz.items():
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{cur}\n")
        (d / "cpuinfo_max_freq").write_text("2000000\n")
        (d / "scaling_governor").write_text("schedutil\n")
    z = root / "sys/class/thermal/thermal_zone0"
    z.mkdir(parents=True, exist_ok=True)
    (z / "type").write_text("cpu-thermal\n")
    (z / "temp").write_text("61500\n")
    if gpu_hz is not None:
        g = root / "sys/class/devfreq/17000000.ga10b"
        g.mkdir(parents=True, exist_ok=True)
        (g / "cur_freq").write_text(f"{gpu_hz}\n")
        (g / "max_freq").write_text("918000000\n")
        (root / "var/lib/nvpmodel").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/nvpmodel/status").write_text("pmode:0000\n")
    return root


def test_machine_state_from_a_fake_sysfs(tmp_path):
    root = fake_sysfs(tmp_path, {0: 2000000, 1: 1800000}, gpu_hz=918000000)
    s = machine.read_state(root)
    assert s["cpus"]["cpu1"] == {"cur_khz": 1800000, "max_khz": 2000000, "governor": "schedutil"}
    assert s["thermal_c"] == {"cpu-thermal": 61.5}
    assert s["jetson"] == {"power_mode": "pmode:0000", "gpu_hz": 918000000, "gpu_max_hz": 918000000}
    assert machine.read_state(tmp_path / "empty") is None  # nothing readable: None (bench says so once)


def test_throttled_when_a_clock_falls_more_than_the_share(tmp_path):
    before = machine.read_state(fake_sysfs(tmp_path / "a", {0: 2000000, 1: 2000000}, gpu_hz=900000000))
    dip = machine.read_state(fake_sysfs(tmp_path / "b", {0: 1700000, 1: 1800000}, gpu_hz=900000000))  # 87.5%
    small = machine.read_state(fake_sysfs(tmp_path / "c", {0: 1900000, 1: 1900000}, gpu_hz=850000000))  # 95%, 94%
    gpu = machine.read_state(fake_sysfs(tmp_path / "d", {0: 2000000, 1: 2000000}, gpu_hz=600000000))
    hot = machine.summary([before, dip, before])  # fell during the row, recovered by its end: still throttled
    assert hot["throttled"] and hot["why"] == "CPU clock fell to 88% of its reading before the row"
    assert hot["cpu_low_share"] == 0.875 and hot["cpu_cur_over_max"] == 1.0
    assert not machine.summary([before, small, small])["throttled"]
    assert machine.summary([before, gpu])["why"] == "GPU clock fell to 67% of its reading before the row"
    assert machine.summary([None, None]) is None


# ---- tables and report ---------------------------------------------------------------------------------------

def scenario_report(settings: Settings, label="laptop") -> BenchReport:
    clock = Clock()
    rows = []
    for name, cheat in (("simplify", None), ("int8", 8)):
        lat, rec = run_latency(StubRuntime(clock, cheat_after=cheat), library(), settings, state=lambda: None,
                               clock=clock)
        rows.append(ArtifactResult(name, "fp32" if cheat is None else "int8", runtime="onnxruntime", batch=1,
                                   latency=lat, scenario=rec, speedup=1.0))
    return BenchReport("mobilenet_v2", [1, 3, 224, 224], None, 10, None, None,
                       {"cpu": {"model": "AMD EPYC 7B13 64-Core Processor", "cores": 2}}, {}, results=rows,
                       scenario=settings.scenario, settings=settings.to_dict(), label=label,
                       machine_note=machine.NOTHING_READABLE)


@pytest.mark.parametrize("width", [80, 100])
def test_bench_table_keeps_verdicts(width):
    rep = scenario_report(Settings.default("single-stream", min_duration_s=0.3, min_queries=150))
    con = layout.console(file=io.StringIO(), width=width)
    con.print(bench_table([rep], con=con))
    text = con.file.getvalue()
    assert all(len(line) <= width for line in text.splitlines()) and "…" not in text
    flat = " ".join(text.split())
    assert next(line for line in text.splitlines() if line.startswith("simplify")).rstrip().endswith(" VALID")
    assert "INVALID output check:" in flat  # the verdict and its reason stay at 80 columns
    if width == 100:
        assert "p90 est." in text
    lines = scenario_lines(rep)
    assert sum(machine.NOTHING_READABLE in line for line in lines) == 1  # said once, not per row
    assert any(line.startswith("not MLPerf-length") for line in lines)


def test_report_keeps_other_settings_apart():
    a = scenario_report(Settings.default("single-stream", min_duration_s=0.3, min_queries=150))
    b = scenario_report(Settings.default("single-stream", min_duration_s=0.3, min_queries=150), label="jetson")
    c = scenario_report(Settings.default("multi-stream", min_duration_s=0.0, min_queries=700, samples_per_query=2))
    assert settings_groups([a, b]) == [(None, [a, b])]  # the same settings: one table
    groups = settings_groups([a, c, b])
    assert [g for _, g in groups] == [[a, b], [c]]
    assert all(why.startswith("results measured under other settings are not compared") for why, _ in groups)
    assert markdown([a, c]).count("| host |") == 2
    con = layout.console(file=io.StringIO(), width=100)
    con.print(bench_table([c], con=con))  # a multi-stream query's latency is of its 2 samples; the row is batch 1
    assert "p99 est." in con.file.getvalue() and "INVALID" in con.file.getvalue()
    again = BenchReport.from_dict(json.loads(json.dumps(a.to_dict())))
    assert settings_groups([a, again]) == [(None, [a, again])] and again.results[1].scenario["verdict"] == "INVALID"
