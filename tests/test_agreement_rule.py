"""The top-1 agreement rule: an exact one-sided binomial test, not a bare fraction against 97%."""
import json

import numpy as np
import pytest

from edgecnn.parity import (TOP1_RULE, ParityResult, Tolerance, agreement_below, agreement_upper_bound, compare)


def _flipped(n: int, flips: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` confident originals (one logit far above the rest) and a candidate whose top-1 differs on ``flips``."""
    ref = np.zeros((n, k))
    ref[np.arange(n), np.arange(n) % k] = 10.0
    out = ref.copy()
    rows = np.arange(flips)
    out[rows, (np.arange(flips) + 1) % k] = 11.0
    return ref, out


def _judge(n: int, flips: int, threshold: float = 0.97) -> ParityResult:
    ref, out = _flipped(n, flips)
    return compare(ref, out, precision="int8", tolerance=Tolerance(top1_confident=threshold))


def test_one_flip_in_twelve_passes_two_fail():
    r = _judge(12, 1)
    assert r.passed and r.n_confident == 12 and r.n_agree == 11
    assert r.top1_upper == pytest.approx(0.9957, abs=1e-4)
    assert "91.7% (11/12, <= 99.6%)" in str(r)
    r = _judge(12, 2)
    assert not r.passed and "10/12" in r.failures[0] and "upper bound" in r.failures[0]


def test_two_hundred_at_ninety_percent_fails_at_ninety_five_passes():
    assert not _judge(200, 20).passed
    assert _judge(200, 10).passed


def test_boundary_at_one_hundred_images():
    # Binomial(100, 0.03) flips: P(>= 6) = 0.081 (not unusual), P(>= 7) = 0.031 (under 5%)
    assert _judge(100, 6).passed
    assert not _judge(100, 7).passed


def test_a_hundred_percent_threshold_fails_on_any_flip():
    assert _judge(500, 0, threshold=1.0).passed
    assert not _judge(500, 1, threshold=1.0).passed


def test_bound_and_test_agree_and_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for n in (1, 2, 12, 33, 34, 100, 1000):
        for k in sorted({0, n // 2, max(0, n - 3), max(0, n - 1), n}):
            upper = agreement_upper_bound(k, n)
            if k < n:  # Clopper-Pearson: the beta quantile
                assert upper == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), abs=1e-9)
            p_value = stats.binom.cdf(k, n, 0.97)
            assert agreement_below(k, n, 0.97) == (p_value < 0.05), (k, n)
            assert agreement_below(k, n, 0.97) == (upper < 0.97), (k, n)
    for k in (50_000, 96_900, 97_000, 99_990):  # large n: summed in log space over the shorter side
        assert agreement_upper_bound(k, 100_000) == pytest.approx(stats.beta.ppf(0.95, k + 1, 100_000 - k), abs=1e-9)
        assert agreement_below(k, 100_000, 0.97) == (stats.binom.cdf(k, 100_000, 0.97) < 0.05), k


def test_recorded_in_the_json_and_read_back():
    r = _judge(12, 1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["n_agree"] == 11 and d["top1_upper"] == pytest.approx(r.top1_upper) and d["top1_rule"] == TOP1_RULE
    back = ParityResult.from_dict(d)
    assert back.n_agree == 11 and back.passed
    old = {k: v for k, v in d.items() if k not in ("n_agree", "top1_upper")}  # a manifest from before the rule
    assert ParityResult.from_dict(old).agreement() == "91.7% of 12"


def test_bad_counts_refused():
    for k, n in ((3, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError):
            agreement_upper_bound(k, n)


# --- export takes the same two thresholds as check, and judges by them ------------------------------
def test_export_and_check_share_the_int8_options():
    from edgecnn.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in ("export", "check"):
        args = sub.choices[command].parse_args(["x", "--int8-top1", "0.9", "--int8-cosine", "0.95"])
        assert (args.int8_top1, args.int8_cosine) == (0.9, 0.95)


def test_export_int8_thresholds_judge_and_are_recorded(tmp_path):
    import os
    import subprocess
    import sys

    import edgecnn
    import torch
    from edgecnn.manifest import Manifest

    torch.save(edgecnn.create_model("lenet5", weights="random").state_dict(), tmp_path / "w.pth")
    env = {**os.environ, "EDGECNN_OFFLINE": "1", "COLUMNS": "200"}

    def export(*extra: str):
        return subprocess.run([sys.executable, "-m", "edgecnn", "export", "lenet5", "--weights", str(tmp_path / "w.pth"),
                               "--int8", "--targets", "onnxruntime", "--out", str(tmp_path / "out"), "--quiet", *extra],
                              capture_output=True, text=True, timeout=300, env=env)

    r = export("--int8-cosine", "0.9999999")
    assert r.returncode == 1 and "parity FAILED" in r.stdout, r.stdout + r.stderr
    int8 = Manifest.load(tmp_path / "out").results["int8"]
    assert int8.parity.tolerance == Tolerance(cosine=0.9999999, top1_confident=0.97)
    assert any("cosine" in f and "< 1" in f for f in int8.parity.failures), int8.parity.failures
    check = subprocess.run([sys.executable, "-m", "edgecnn", "check", str(tmp_path / "out"), "--runtimes", "onnxruntime",
                            "--int8-cosine", "0.9999999"], capture_output=True, text=True, timeout=300, env=env)
    assert check.returncode == 1, check.stdout + check.stderr  # the same rule, the same verdict
    r = export("--int8-cosine", "0.5", "--int8-top1", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert Manifest.load(tmp_path / "out").config["int8_top1"] == 0.0
    r = export("--int8-top1", "1.5")
    assert r.returncode == 2 and r.stderr.strip().endswith("--int8-top1 must be a number from 0 to 1, got 1.5"), r.stderr
