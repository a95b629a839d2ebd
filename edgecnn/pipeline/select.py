"""Which artifact to deploy when several were built for one runtime and precision, and when to say
that an int8 artifact is slower than fp32."""
from __future__ import annotations

import math
import statistics
from typing import Callable

from ..artifact import Artifact
from ..results import ArtifactResult

# An int8 artifact whose quick p50 exceeds its fp32 sibling's (same runtime) by more than this is flagged as
# slower: the export's latency runs are short (20 timed runs), so a few percent is noise, 2x (ShuffleNet v1
# on ONNX Runtime with AMX, measured) is not.
SLOWER_MARGIN = 1.05


def p50(result: ArtifactResult | None) -> float | None:
    return result.latency.p50_ms if result is not None and result.latency is not None else None


def working(result: ArtifactResult) -> bool:
    """It was built, loaded and ran, and its outputs are finite numbers."""
    return result.error is None and result.parity is not None and math.isfinite(result.parity.cosine)


# Two p50s differ only when the gap exceeds this many standard errors of their difference (each p50's standard
# error from its own samples: 1.2533 * std / sqrt(n), the large-sample error of a median). 3 sigma: two identical
# runs on a quiet machine cross it about 0.3% of the time; below it, the fixed order decides.
NOISE_SIGMAS = 3.0
# The quick p50s are taken minutes apart (a route is built between them), so a machine whose load changed in
# between makes them differ by far more than their own spread says (measured here: 3.18 vs 3.29 ms under load,
# then 3.02 vs 2.19 ms quiet, for the same two IRs). Before speed decides, the two are timed again in alternating
# blocks (the order swapped each round); speed decides only when every round agrees: by chance 2 in 2**ROUNDS.
ROUNDS = 6


def p50_noise(result: ArtifactResult | None) -> float:
    """The standard error of ``result``'s p50, in ms, from the spread of its own latency samples (0 without)."""
    lat = result.latency if result is not None else None
    if lat is None or lat.n < 2 or not math.isfinite(lat.std_ms):
        return 0.0
    return 1.2533 * lat.std_ms / math.sqrt(lat.n)


def faster_beyond_noise(a: ArtifactResult, b: ArtifactResult) -> bool:
    """``a``'s p50 is below ``b``'s by more than the measurement's noise."""
    pa, pb = p50(a), p50(b)
    if pa is None or pb is None:
        return False
    return pb - pa > NOISE_SIGMAS * math.hypot(p50_noise(a), p50_noise(b))


def select_route(candidates: dict[str, ArtifactResult], *, order: tuple[str, ...] = (),
                 baseline_p50: float | None = None, baseline_noise: float = 0.0,
                 confirm: Callable[[str, str], list[tuple[float, float]]] | None = None) -> tuple[str | None, str]:
    """The stage to deploy among ``candidates`` (stage -> result), or None when none works, and the rule
    that decided, in words.

    A candidate that failed to build, load, compile or run is never chosen. Among the working ones, in turn:
    fidelity (passes its tolerance), not slower than the fp32 baseline on the same runtime by more than
    :data:`SLOWER_MARGIN` beyond the noise (``baseline_noise``: the baseline p50's standard error; an int8
    model slower than fp32 has no reason to be deployed), cosine to 3 decimals,
    then speed only where the p50s differ by more than their measured noise (:func:`faster_beyond_noise`), else
    the fixed tie-break: the first in ``order`` (then by name). The answer does not depend on the dict's order.
    ``confirm(a, b)``: the p50s of ``a`` and ``b`` timed again in :data:`ROUNDS` alternating rounds; where given,
    speed decides only when one of the two is faster in every round (else the tie-break).
    """
    ok = sorted((k for k, r in candidates.items() if working(r)),
                key=lambda k: (order.index(k) if k in order else len(order), k))
    if not ok:
        return None, "no candidate works"
    if len(ok) == 1:
        return ok[0], "the only working candidate"

    def slower(k: str) -> bool:
        lat = p50(candidates[k])
        if baseline_p50 is None or lat is None:
            return False
        limit = SLOWER_MARGIN * baseline_p50
        return lat - limit > NOISE_SIGMAS * math.hypot(p50_noise(candidates[k]), SLOWER_MARGIN * baseline_noise)

    steps = (("fidelity: passes its tolerance", lambda k: candidates[k].parity.passed),
             (f"not slower than fp32 (x{SLOWER_MARGIN})", lambda k: not slower(k)),
             ("fidelity: higher cosine (3 decimals)", lambda k: round(candidates[k].parity.cosine, 3)))
    for rule, key in steps:
        best = max(key(k) for k in ok)
        if any(key(k) != best for k in ok):
            ok = [k for k in ok if key(k) == best]
            if len(ok) == 1:
                return ok[0], rule
    champion = ok[0]
    for k in ok[1:]:
        if faster_beyond_noise(candidates[k], candidates[champion]):
            champion = k
    first_faster = any(faster_beyond_noise(candidates[ok[0]], candidates[k]) for k in ok[1:])
    if confirm is not None and (champion != ok[0] or first_faster):
        other = champion if champion != ok[0] else min(ok[1:], key=lambda k: p50(candidates[k]) or math.inf)
        rounds = confirm(other, ok[0])
        for winner, wins in ((other, [a < b for a, b in rounds]), (ok[0], [b < a for a, b in rounds])):
            if rounds and all(wins):
                times = {other: [a for a, _ in rounds], ok[0]: [b for _, b in rounds]}
                loser = ok[0] if winner == other else other
                return winner, (f"speed: faster than {loser} in all {len(rounds)} alternating rounds (median p50 "
                                f"{statistics.median(times[winner]):.2f} vs {statistics.median(times[loser]):.2f} ms)")
        return ok[0], (f"tie (same fidelity; {other} was faster in {sum(a < b for a, b in rounds)} of {len(rounds)} "
                       "alternating rounds, not all, nor slower in all): the first of " + ", ".join(ok))
    if champion != ok[0] or first_faster:
        noise = max(p50_noise(candidates[k]) for k in ok)
        return champion, (f"speed: p50 {p50(candidates[champion]):.2f} ms, faster beyond the noise "
                          f"({NOISE_SIGMAS:g} x the p50s' standard error, up to {noise:.3f} ms)")
    return champion, "tie (same fidelity, p50s within their measured noise): the first of " + ", ".join(ok)


def select_default(candidates: dict[str, ArtifactResult], *, order: tuple[str, ...] = (),
                   baseline_p50: float | None = None, baseline_noise: float = 0.0) -> str | None:
    """:func:`select_route`'s stage alone."""
    return select_route(candidates, order=order, baseline_p50=baseline_p50, baseline_noise=baseline_noise)[0]


def flag_slower_int8(artifacts: list[Artifact], results: dict[str, ArtifactResult]) -> list[str]:
    """Mark every int8 result slower than the fp32 artifact of its runtime (the last fp32 stage there: the
    simplified or compiled one) and return one warning per such artifact."""
    fp32: dict[str, Artifact] = {}
    for art in artifacts:
        if art.precision == "fp32" and art.runtime and p50(results.get(art.key)):
            fp32[art.runtime] = art
    warnings = []
    for art in artifacts:
        base, res = fp32.get(art.runtime or ""), results.get(art.key)
        if art.precision != "int8" or base is None or not p50(res):
            continue
        ratio = p50(res) / p50(results[base.key])
        if ratio > SLOWER_MARGIN:
            res.slower_than_fp32 = round(ratio, 2)
            share = res.int8_share  # the execution record says whether float layers explain it
            why = "" if share is None else f"; {share:.0%} of its MACs ran in int8"
            warnings.append(f"{art.stage}: warning: int8 runs {ratio:.2f}x slower than fp32 ({base.stage}) on "
                            f"{art.runtime} here ({p50(res):.2f} vs {p50(results[base.key]):.2f} ms p50{why})")
    return warnings
