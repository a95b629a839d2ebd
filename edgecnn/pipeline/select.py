"""Which artifact to deploy when several were built for one runtime and precision, and when to say
that an int8 artifact is slower than fp32."""
from __future__ import annotations

import math

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


def select_default(candidates: dict[str, ArtifactResult], *, baseline_p50: float | None = None) -> str | None:
    """The stage to deploy among ``candidates`` (stage -> result), or None when none works.

    A candidate that failed to build, load, compile or run is never chosen. Among the working ones:
    fidelity first (passes its tolerance), then not slower than the fp32 baseline on the same runtime
    (an int8 model slower than fp32 has no reason to be deployed where another is not), then cosine to
    3 decimals, then speed.
    """
    def score(item: tuple[str, ArtifactResult]) -> tuple:
        r = item[1]
        lat = p50(r)
        slower = baseline_p50 is not None and lat is not None and lat > SLOWER_MARGIN * baseline_p50
        return (r.parity.passed, not slower, round(r.parity.cosine, 3), -(lat or 0.0))

    ok = [(k, r) for k, r in candidates.items() if working(r)]
    return max(ok, key=score)[0] if ok else None


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
            warnings.append(f"{art.stage}: warning: int8 runs {ratio:.2f}x slower than fp32 ({base.stage}) on "
                            f"{art.runtime} here ({p50(res):.2f} vs {p50(results[base.key]):.2f} ms p50)")
    return warnings
