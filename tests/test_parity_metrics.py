import numpy as np
import pytest

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


# --- every metric pinned on cases small enough to check by hand -------------------------------------
def test_every_metric_on_a_hand_checked_case():
    from edgecnn.parity import ParityResult

    ref = np.array([[4.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    out = np.array([[4.0, 0.0, 3.0], [0.0, 1.0, 2.0]])
    r = compare(ref, out, name="m", precision="int8")
    assert isinstance(r, ParityResult) and (r.name, r.precision, r.n) == ("m", "int8", 2)
    assert r.max_abs == 3.0 and r.max_abs_rel == 0.75  # / max |reference logit| = 4
    assert r.rel_l2 == pytest.approx(np.sqrt(11.0 / 21.0))  # |err| = sqrt(9+1+1), |ref| = sqrt(16+4+1)
    assert r.cosine == pytest.approx((0.8 + 0.8) / 2)  # 16 / (4 * 5) and 4 / (sqrt(5) * sqrt(5))
    assert r.sqnr_db == pytest.approx(10 * np.log10(21.0 / 11.0))
    assert r.top1 == 0.5  # image 1's top-1 moved from class 1 to class 2
    # softmax([4, 0, 0]) peaks at 0.96 (confident); softmax([0, 2, 1]) at 0.665: both confident
    assert r.n_confident == 2 and r.top1_confident == 0.5
    assert r.top5_overlap is None  # 3 classes: any 5 of them are all of them, so top-5 is not reported
    assert r.tolerance == Tolerance.for_precision("int8")
    # 1 of 2 confident agree: were the agreement 97%, a flip in 2 happens 5.9% of the time (> 5%), so
    # top-1 does not fail on its own here (its exact 95% upper bound is 97.47%); cosine does
    assert r.n_agree == 1 and r.top1_upper == pytest.approx(0.9747, abs=1e-4)
    assert r.failures == ("cosine 0.80000 < 0.98",)
    assert str(r) == ("m [int8]: cosine 0.80000, max abs 3, rel L2 0.724, SQNR 2.8 dB, top-1 50.0% (confident: "
                      "50.0% (1/2, <= 97.5%)); FAILED: cosine 0.80000 < 0.98")


@pytest.mark.filterwarnings("error")  # no "mean of empty slice" warning either
def test_top5_overlap_and_unconfident_inputs():
    ref = np.tile(np.arange(10.0) / 10, (2, 1))  # flat: softmax peak ~0.17, nobody is confident
    out = ref.copy()
    out[:, [9, 8]] = -1.0  # two of the five best classes leave the top 5 (and the top-1 changes)
    r = compare(ref, out, precision="int8", tolerance=Tolerance(top1_confident=1.0))
    assert r.top5_overlap == pytest.approx(3 / 5) and r.top1 == 0.0
    assert r.n_confident == 0 and np.isnan(r.top1_confident) and r.passed  # no confident input: nothing to judge
    assert str(r).endswith("(no confident input)") and "nan" not in str(r)


def test_the_confidence_cut_is_strictly_above_40_percent():
    from edgecnn.parity import CONFIDENT, softmax

    at = np.array([[np.log(2.0), 0.0, 0.0, 0.0]])  # softmax peak exactly 2/5
    above = np.array([[np.log(2.01), 0.0, 0.0, 0.0]])
    assert CONFIDENT == 0.4 and softmax(at).max() == 0.4
    assert compare(at, at).n_confident == 0 and compare(above, above).n_confident == 1


def test_softmax_rows_over_classes_even_for_huge_logits():
    from edgecnn.parity import softmax

    p = softmax(np.array([[1000.0, 0.0], [1.0, 3.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [1 / (1 + np.e**2), np.e**2 / (1 + np.e**2)]], atol=1e-15)


def test_relative_thresholds_are_inclusive_and_max_abs_has_a_floor():
    ref = _logits()
    out = ref + np.random.default_rng(3).normal(0, 0.01, ref.shape)
    r = compare(ref, out)
    assert compare(ref, out, tolerance=Tolerance(rel_l2=r.rel_l2)).passed
    assert not compare(ref, out, tolerance=Tolerance(rel_l2=np.nextafter(r.rel_l2, 0))).passed
    # max abs: 1e-4 (x max |logit|) is always allowed on top of the tolerance, inclusive too
    at = r.max_abs_rel - 1e-4
    for _ in range(100):  # the tolerance whose allowance lands exactly on the measured error
        if at + 1e-4 == r.max_abs_rel:
            break
        at = np.nextafter(at, 1.0 if at + 1e-4 < r.max_abs_rel else 0.0)
    assert at + 1e-4 == r.max_abs_rel
    assert compare(ref, out, tolerance=Tolerance(max_abs_rel=at)).passed
    assert compare(ref, out, tolerance=Tolerance(max_abs_rel=r.max_abs_rel - 0.9e-4)).passed
    tight = compare(ref, out, tolerance=Tolerance(max_abs_rel=r.max_abs_rel - 1.1e-4))
    assert tight.failures == (f"max abs error {r.max_abs_rel:.3g} x max|logit| > {r.max_abs_rel - 1.1e-4:g} "
                              f"(would pass at {r.max_abs_rel:.2g})",)
    agree = compare(ref, out).top1_confident
    assert compare(ref, out, tolerance=Tolerance(top1_confident=agree)).passed
    fp16 = compare(ref, ref * 1.05, precision="fp16")  # 5% louder: same directions, relative L2 0.05
    assert fp16.failures == ("relative L2 0.05 > 0.02",) and fp16.cosine == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log10(0) and inf / inf, on purpose
def test_zero_reference_and_non_finite_outputs():
    zeros = np.zeros((2, 3))
    r = compare(zeros, zeros)
    assert r.max_abs_rel == 0 and r.rel_l2 == 0 and r.cosine == 0 and r.passed is False  # cosine 0 < 0.9999
    r = compare(zeros, zeros + 0.5, tolerance=Tolerance(max_abs_rel=1.0))
    assert r.max_abs_rel == 0.5 and r.rel_l2 == pytest.approx(np.sqrt(6 * 0.25)) and r.passed  # divided by 1, not 0
    ref = _logits()
    bad = ref.copy()
    bad[1, 2] = np.inf
    r = compare(ref, bad)
    assert r.failures == ("non-finite outputs (NaN or Inf)",)


def test_a_shape_mismatch_is_a_failed_result():
    ref = _logits(n=4, k=10)
    r = compare(ref, ref[:, :5], name="m", precision="fp16")
    assert (r.name, r.precision, r.n, r.n_confident, r.top1, r.top1_confident, r.top5_overlap) == ("m", "fp16", 4, 0, 0.0,
                                                                                                  0.0, 0.0)
    assert np.isnan([r.max_abs, r.max_abs_rel, r.rel_l2, r.cosine, r.sqnr_db]).all()
    assert r.failures == ("output shape (4, 5) != reference (4, 10)",) and r.tolerance == Tolerance.for_precision("fp16")
    mine = Tolerance(cosine=0.5)
    assert compare(ref, ref[:2], tolerance=mine).tolerance is mine


def test_result_dict_round_trip():
    from edgecnn.parity import ParityResult

    ref = _logits()
    for out in (ref, -ref):
        r = compare(ref, out, precision="int8")
        d = r.to_dict()
        assert d["passed"] is r.passed and d["failures"] == list(r.failures)
        assert d["tolerance"] == {"max_abs_rel": None, "rel_l2": None, "cosine": 0.98, "top1_confident": 0.97}
        back = ParityResult.from_dict({**d, "unknown_field": 1})
        assert back == r and bool(back) is r.passed
    bare = ParityResult.from_dict({**compare(ref, ref).to_dict(), "tolerance": None, "failures": None})
    assert bare.tolerance == Tolerance() and bare.failures == () and bare.passed


def test_defaults_and_float16_logits():
    """float16 outputs (an fp16 artifact read as is) are compared in float64: their norms do not overflow."""
    ref = _logits(k=1000) * 30  # logits in the hundreds: the sum of squares is far above float16's 65504
    for r in (compare(ref, ref.astype(np.float16)), compare(ref.astype(np.float16), ref)):
        assert r.cosine == pytest.approx(1.0, abs=1e-6) and r.name == "artifact" and r.precision == "fp32"
    same = compare(ref, ref)
    assert same.sqnr_db == pytest.approx(10 * np.log10(np.sum(ref**2) / 1e-30))  # error 0: the 1e-30 floor


def test_accuracy_against_true_labels():
    from edgecnn.parity import accuracy

    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    assert accuracy(logits, np.array([1, 0, 1, -1])) == {"n": 4, "top1": 0.5}  # -1: no output for its class
    wide = np.tile(np.arange(7.0), (2, 1))  # best first: classes 6, 5, 4, 3, 2, then 1 and 0
    assert accuracy(wide, np.array([2, 1])) == {"n": 2, "top1": 0.0, "top5": 0.5}
    assert accuracy(wide, [6, 0]) == {"n": 2, "top1": 0.5, "top5": 0.5}  # lists work as well as arrays


def test_top5_overlap_counts_the_five_best_of_each_and_needs_more_than_5_classes():
    ref = np.tile(np.arange(10.0), (1, 1))  # best first: 9, 8, 7, 6, 5, then 4
    out = ref.copy()
    out[0, 5] = 3.5  # class 5 drops to 6th place: 4 of the 5 best are shared
    assert compare(ref, out, precision="int8").top5_overlap == pytest.approx(4 / 5)
    assert compare(ref[:, :5], out[:, :5], precision="int8").top5_overlap is None  # 5 classes: any 5 are all
    six = compare(ref[:, :6], ref[:, :6][:, ::-1], precision="int8")  # 6 classes: reported
    assert six.top5_overlap == pytest.approx(4 / 5)
