import numpy as np

from edgecnn.parity import Tolerance, compare


def _logits(n=64, k=100, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (n, k))
    x[np.arange(n), rng.integers(0, k, n)] += 8  # confident originals
    return x


def test_identical_outputs_pass_every_precision():
    ref = _logits()
    for precision in ("fp32", "fp16", "int8"):
        r = compare(ref, ref.copy(), precision=precision)
        assert r and r.cosine > 0.999999 and r.max_abs == 0 and r.top1 == 1.0 and r.top5_overlap == 1.0


def test_fp32_tolerance_catches_small_drift_and_says_what_would_pass():
    ref = _logits()
    r = compare(ref, ref + 0.05, precision="fp32")
    assert not r
    assert "would pass at" in str(r) and "FAILED" in str(r)


def test_int8_judged_by_cosine_and_confident_agreement():
    ref = _logits()
    noisy = ref + np.random.default_rng(1).normal(0, 0.3, ref.shape)
    r = compare(ref, noisy, precision="int8")
    assert r, str(r)
    flipped = ref.copy()
    flipped[:, 0] = ref.max(1) + 1  # every top-1 changes
    r = compare(ref, flipped, precision="int8")
    assert not r and r.top1 < 0.05
    assert any("top-1 agreement" in f for f in r.failures)


def test_nan_and_shape_mismatch_fail():
    ref = _logits()
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not compare(ref, bad)
    assert "shape" in str(compare(ref, ref[:, :10]))


def test_custom_tolerance_overrides_default():
    ref = _logits()
    noisy = ref + 0.05
    assert compare(ref, noisy, precision="fp32", tolerance=Tolerance(max_abs_rel=0.1))
