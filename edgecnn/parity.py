"""Numerical parity of an artifact's logits against the original's.

Metrics (per artifact, over a batch of real images): max abs error, relative L2 error, mean
logit cosine, SQNR in dB, top-1 agreement (all inputs, and inputs where the original is
confident), top-5 overlap.

Default pass rules, by precision (override with ``Tolerance``):
- fp32: the same computation reordered: max abs error <= 1e-3 x max |logit| (+1e-4) and cosine >= 0.9999.
- fp16: 10-bit mantissa: relative L2 <= 2e-2, cosine >= 0.999, top-1 agreement 100% on confident inputs.
- int8: logits move by design, so int8 is judged by what users see: cosine >= 0.98 and top-1
  agreement >= 97% on inputs where the original's top probability > 0.4 (an unconfident
  original flips its own top-1 under 1% input noise, so disagreement there says nothing).

Top-1 agreement is a proportion measured on a sample, so its threshold is judged as a statistical
test (:func:`agreement_upper_bound`): it FAILS only when the exact one-sided 95% (Clopper-Pearson)
upper confidence bound of the agreement is below the threshold, i.e. when, were the true agreement
the threshold, seeing this few agreements would happen less than 5% of the time. On 12 confident
images one flip passes (11/12: upper bound 99.6%), two fail (10/12: 96.9%); on 200
images 90% fails (upper bound 93.3%), 95% passes (97.3%). A threshold of 100% (fp16) still fails on any flip.
A result is truthy when it passes; ``str(result)`` says what failed and what would have passed.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from .guard import finite

CONFIDENT = 0.4
# The agreement test's level: FAIL when the one-sided upper confidence bound is below the threshold.
CONFIDENCE = 0.95
TOP1_RULE = ("top-1 agreement FAILS only when its one-sided 95% upper confidence bound (exact binomial, "
             "Clopper-Pearson) is below the threshold")


def _log_binom_cdf(k: int, n: int, p: float) -> float:
    """log P(X <= k) for X ~ Binomial(n, p), in log space (no overflow at large n); summed over the shorter
    side (the flips, usually: P(X <= k) = 1 - P(X > k)), vectorised."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 0.0 if k >= n else -math.inf
    lower = k + 1 <= n - k
    i = np.arange(0, k + 1) if lower else np.arange(k + 1, n + 1)
    if not len(i):
        return 0.0  # k >= n: certain
    log_comb = _log_comb(n)[i]
    terms = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(terms.max())
    log_side = top + math.log(float(np.exp(terms - top).sum()))
    if lower:
        return log_side
    tail = math.exp(log_side)
    return math.log1p(-tail) if tail < 1.0 else -math.inf


@functools.lru_cache(maxsize=8)
def _log_comb(n: int) -> np.ndarray:
    """log C(n, i) for i = 0..n (cached: a bisection asks for the same n sixty times)."""
    lg = np.array([math.lgamma(j + 1) for j in range(n + 1)])
    return lg[n] - lg - lg[::-1]


def agreement_upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The exact one-sided (Clopper-Pearson) upper confidence bound of a proportion seen as ``k`` of ``n``:
    the largest p for which P(X <= k | n, p) is still at least 1 - ``confidence``. 1.0 when k == n."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if k == n:
        return 1.0
    alpha, lo, hi = math.log(1.0 - confidence), k / n, 1.0
    for _ in range(60):  # P(X <= k) falls as p rises: bisect for the p where it reaches alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _log_binom_cdf(k, n, mid) >= alpha else (lo, mid)
    return lo


def agreement_below(k: int, n: int, threshold: float, confidence: float = CONFIDENCE) -> bool:
    """True when ``k`` agreements of ``n`` show, at ``confidence``, that the agreement is below ``threshold``
    (the exact binomial test: P(X <= k | n, threshold) < 1 - confidence)."""
    return _log_binom_cdf(k, n, threshold) < math.log(1.0 - confidence)


@dataclass(frozen=True)
class Tolerance:
    max_abs_rel: float | None = None  # max abs error / max |reference logit|
    rel_l2: float | None = None
    cosine: float | None = None
    top1_confident: float | None = None  # fraction of confident inputs with the same top-1

    def check(self) -> "Tolerance":
        """Every bound a finite number in its range (NaN would switch its test off, and pass anything)."""
        for name, high in (("cosine", 1.0), ("top1_confident", 1.0), ("max_abs_rel", 1e6), ("rel_l2", 1e6)):
            value = getattr(self, name)
            if value is not None:
                finite(value, f"tolerance {name}", 0.0, high)
        return self

    @classmethod
    def for_precision(cls, precision: str) -> "Tolerance":
        return {
            "fp32": cls(max_abs_rel=1e-3, cosine=0.9999),
            "fp16": cls(rel_l2=2e-2, cosine=0.999, top1_confident=1.0),
            "int8": cls(cosine=0.98, top1_confident=0.97),
        }[precision]


@dataclass
class ParityResult:
    name: str
    precision: str
    n: int
    max_abs: float
    max_abs_rel: float
    rel_l2: float
    cosine: float
    sqnr_db: float
    top1: float
    top1_confident: float
    n_confident: int
    top5_overlap: float | None  # None with 5 classes or fewer: any 5 of them are all of them
    tolerance: Tolerance
    failures: tuple[str, ...] = ()
    n_agree: int | None = None  # confident inputs whose top-1 is the original's (None: from an older manifest)
    top1_upper: float | None = None  # its one-sided 95% upper confidence bound (TOP1_RULE)

    def __bool__(self) -> bool:
        return not self.failures

    @property
    def passed(self) -> bool:
        return not self.failures

    def agreement(self, *, digits: int = 1) -> str:
        """Top-1 agreement on confident inputs with its count and upper bound: '91.7% (11/12, <= 99.6%)'."""
        if not self.n_confident:
            return "-"
        if self.n_agree is None:  # an older record: no count
            return f"{self.top1_confident:.{digits}%} of {self.n_confident}"
        bound = ("" if self.top1_upper is None or self.n_agree == self.n_confident
                 else f", <= {_below_one(self.top1_upper)}")
        return f"{self.top1_confident:.{digits}%} ({self.n_agree}/{self.n_confident}{bound})"

    def __str__(self) -> str:
        head = (f"{self.name} [{self.precision}]: cosine {self.cosine:.5f}, max abs {self.max_abs:.3g}, "
                f"rel L2 {self.rel_l2:.3g}, SQNR {self.sqnr_db:.1f} dB, top-1 {self.top1:.1%} "
                + (f"(confident: {self.agreement()})" if self.n_confident else "(no confident input)"))
        return head + ("" if self.passed else "; FAILED: " + "; ".join(self.failures))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["failures"] = list(self.failures)
        d["top1_rule"] = TOP1_RULE
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ParityResult":
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        fields["tolerance"] = Tolerance(**(d.get("tolerance") or {}))
        fields["failures"] = tuple(d.get("failures") or ())
        return cls(**fields)


def int8_tolerance(*, cosine: float | None = None, top1: float | None = None) -> Tolerance | None:
    """The int8 rule with its cosine and/or confident top-1 threshold replaced (``export`` and ``check``'s
    ``--int8-cosine`` / ``--int8-top1``); None when neither is given (the default rule)."""
    if cosine is None and top1 is None:
        return None
    for value, option in ((cosine, "--int8-cosine"), (top1, "--int8-top1")):
        if value is not None:
            finite(value, option, 0.0, 1.0)
    base = Tolerance.for_precision("int8")
    return Tolerance(cosine=base.cosine if cosine is None else cosine,
                     top1_confident=base.top1_confident if top1 is None else top1)


def _below_one(p: float) -> str:
    """A percentage below 100% that does not print as 100.0% (0.99989: '99.99%')."""
    for digits in (1, 2, 3):
        if f"{p:.{digits}%}" != f"{1:.{digits}%}":
            return f"{p:.{digits}%}"
    return f"{p:.4%}"


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compare(reference: np.ndarray, candidate: np.ndarray, *, name: str = "artifact", precision: str = "fp32",
            tolerance: Tolerance | None = None) -> ParityResult:
    ref = np.asarray(reference, np.float64)
    out = np.asarray(candidate, np.float64)
    if ref.shape != out.shape:
        tol = tolerance or Tolerance.for_precision(precision)
        nan = float("nan")
        return ParityResult(name, precision, len(ref), nan, nan, nan, nan, nan, 0.0, 0.0, 0, 0.0, tol,
                            (f"output shape {out.shape} != reference {ref.shape}",))
    tol = tolerance or Tolerance.for_precision(precision)
    err = out - ref
    max_abs = float(np.abs(err).max())
    scale = float(np.abs(ref).max()) or 1.0
    rel_l2 = float(np.linalg.norm(err) / (np.linalg.norm(ref) or 1.0))
    cos = np.sum(ref * out, 1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-30)
    sqnr = float(10 * np.log10(np.sum(ref**2) / max(float(np.sum(err**2)), 1e-30)))
    same = ref.argmax(1) == out.argmax(1)
    confident = softmax(ref).max(1) > CONFIDENT
    top5_ref, top5_out = np.argsort(-ref, 1)[:, :5], np.argsort(-out, 1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_out)]) if ref.shape[1] > 5 else None
    result = ParityResult(
        name=name, precision=precision, n=len(ref), max_abs=max_abs, max_abs_rel=max_abs / scale, rel_l2=rel_l2,
        cosine=float(cos.mean()), sqnr_db=sqnr, top1=float(same.mean()),
        top1_confident=float(same[confident].mean()) if confident.any() else float("nan"),
        n_confident=int(confident.sum()), top5_overlap=None if overlap is None else float(overlap), tolerance=tol,
        n_agree=int(same[confident].sum()),
        top1_upper=agreement_upper_bound(int(same[confident].sum()), int(confident.sum())) if confident.any() else None,
    )
    result.failures = tuple(_failures(result, tol, finite=bool(np.isfinite(out).all())))
    return result


def accuracy(logits: np.ndarray, targets: np.ndarray) -> dict:
    """Top-1 (and top-5, with more than 5 classes) accuracy of ``logits`` against true class indices;
    a target of -1 (an image whose class the model has no output for) counts as wrong."""
    logits, targets = np.asarray(logits), np.asarray(targets)
    order = np.argsort(-logits, 1)
    out = {"n": int(len(targets)), "top1": float(np.mean(order[:, 0] == targets))}
    if logits.shape[1] > 5:
        out["top5"] = float(np.mean((order[:, :5] == targets[:, None]).any(1)))
    return out


def _failures(r: ParityResult, tol: Tolerance, *, finite: bool) -> list[str]:
    if not finite:
        return ["non-finite outputs (NaN or Inf)"]
    fails = []
    if tol.max_abs_rel is not None and r.max_abs_rel > tol.max_abs_rel + 1e-4:
        fails.append(f"max abs error {r.max_abs_rel:.3g} x max|logit| > {tol.max_abs_rel:g} (would pass at {r.max_abs_rel:.2g})")
    if tol.rel_l2 is not None and r.rel_l2 > tol.rel_l2:
        fails.append(f"relative L2 {r.rel_l2:.3g} > {tol.rel_l2:g}")
    if tol.cosine is not None and r.cosine < tol.cosine:
        fails.append(f"cosine {r.cosine:.5f} < {tol.cosine:g}")
    if (tol.top1_confident is not None and r.n_confident and r.n_agree is not None
            and agreement_below(r.n_agree, r.n_confident, tol.top1_confident)):
        fails.append(f"top-1 agreement on confident inputs {r.agreement()} < {tol.top1_confident:.0%} "
                     f"(even its 95% upper bound is below the threshold)")
    return fails
