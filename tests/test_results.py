"""The typed result every table, manifest and report shares, and its one pass rule."""
import json

import numpy as np

from edgecnn.parity import Tolerance, compare
from edgecnn.results import FLOOR_COSINE, ArtifactResult, all_pass
from edgecnn.timing import Latency


def _logits(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (16, 10))
    x[np.arange(16), rng.integers(0, 10, 16)] += 8
    return x


def test_a_failing_result_survives_the_manifest_round_trip():
    ref = _logits()
    failing = compare(ref, -ref, name="int8", precision="int8")
    r = ArtifactResult("int8", "int8", runtime="onnxruntime", parity=failing,
                       latency=Latency(20, 1, 2.0, 2.5, 3.0, 2.1, 0.2), slower_than_fp32=1.4)
    back = ArtifactResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.parity is not None and not back.parity.passed and back.parity.cosine == failing.cosine
    assert back.parity.tolerance == Tolerance.for_precision("int8") and back.parity.failures == failing.failures
    assert back.latency == r.latency and back.slower_than_fp32 == 1.4 and not back.ok and back.verdict == "FAIL"


def test_the_pass_rule():
    ref = _logits()
    good = compare(ref, ref, precision="fp32")
    bad = compare(ref, ref + 1.0, precision="fp32")
    assert ArtifactResult("a", "fp32", parity=good).ok
    assert not ArtifactResult("a", "fp32", parity=bad).ok
    noisy = ref + np.random.default_rng(1).normal(0, 1.5, ref.shape)  # a random init's int8: close, not within
    assert FLOOR_COSINE < compare(ref, noisy).cosine < 0.98
    advisory = ArtifactResult("q", "int8", parity=compare(ref, noisy, precision="int8"), advisory="random weights")
    assert advisory.ok and advisory.verdict == "advisory"
    garbage = ArtifactResult("q", "int8", parity=compare(ref, -ref, precision="int8"), advisory="random weights")
    assert not garbage.ok and garbage.verdict == "FAIL"  # the label never passes garbage
    deployed = ArtifactResult("q", "int8", parity=compare(ref, noisy, precision="int8"), advisory="random weights",
                              deployed=True)
    assert not deployed.ok and deployed.verdict == "FAIL"  # what a user deploys: its full tolerance
    broken = ArtifactResult("q", "int8", error="could not compile", advisory="random weights")
    assert not broken.ok and broken.verdict == "failed"  # never hides behind "advisory"
    loser = ArtifactResult("route", "int8", parity=bad, alternative=True)
    assert loser.verdict == "FAIL" and not all_pass([ArtifactResult("a", "fp32", parity=good), loser])
    assert not all_pass([ArtifactResult("a", "fp32", parity=good), ArtifactResult("b", "fp32", parity=bad)])
    assert not all_pass([ArtifactResult("stage", "fp16", error="could not build")])
    other = ArtifactResult("int8-tensorrt", "int8", parity=compare(ref, noisy, precision="int8"),
                           not_judged="made for TensorRT")
    assert other.ok and other.verdict == "not judged" and not other.judged
    assert not all_pass([other]) and all_pass([ArtifactResult("a", "fp32", parity=good), other])
    other.parity = compare(ref, -ref, precision="int8")
    assert not other.ok and other.verdict == "FAIL"


def test_a_result_without_parity_or_latency_round_trips():
    r = ArtifactResult.failed("openvino-int8-qdq", "int8", "could not compile", runtime="openvino", parent="int8",
                              info={"threads": 2})
    assert (r.artifact, r.precision, r.error, r.runtime, r.parent, r.info) == (
        "openvino-int8-qdq", "int8", "could not compile", "openvino", "int8", {"threads": 2})
    d = r.to_dict()
    assert d["parity"] is None and d["latency"] is None and d["ok"] is False and d["error"] == "could not compile"
    back = ArtifactResult.from_dict({**json.loads(json.dumps(d)), "verdict": "failed", "from_the_future": 1})
    assert back == r
    measured = ArtifactResult("simplify", "fp32", parity=compare(_logits(), _logits()), speedup=2.0, batch=4,
                              latency=Latency(20, 4, 2.0, 2.5, 3.0, 2.1, 0.2))
    d = measured.to_dict()
    assert set(d) == set(ArtifactResult.__dataclass_fields__) | {"ok"}
    assert d["latency"] == measured.latency.to_dict() and d["latency"]["throughput_ips"] == 2000.0
    assert d["ok"] is True and d["parity"]["passed"] is True and d["speedup"] == 2.0 and d["batch"] == 4
    assert ArtifactResult.from_dict(json.loads(json.dumps(d))) == measured


def test_all_pass_of_nothing_and_of_alternatives_only():
    """Old rule: a losing alternative did not count, and a pass over nothing was a pass. Both were false passes."""
    ref = _logits()
    bad = ArtifactResult("b", "fp32", parity=compare(ref, -ref), alternative=True)
    assert not all_pass([]) and not all_pass([bad])
    bad.alternative = False
    assert not all_pass([bad])


def test_a_throughput_result_round_trips():
    from edgecnn.timing import Throughput

    lat = Latency(20, 2, 4.0, 5.0, 6.0, 4.2, 0.3)
    r = ArtifactResult("int8", "int8", runtime="openvino", latency=lat, throughput=Throughput(480.0, 96, 4, 0.4, lat))
    d = r.to_dict()
    assert d["throughput"] == {"images_per_s": 480.0, "requests": 96, "streams": 4, "duration_s": 0.4,
                               "latency": lat.to_dict()}
    back = ArtifactResult.from_dict(json.loads(json.dumps(d)))
    assert back == r and isinstance(back.throughput, Throughput) and back.throughput.latency == lat
    assert ArtifactResult.from_dict({**d, "throughput": None}).throughput is None
    assert ArtifactResult("a", "fp32").to_dict()["throughput"] is None
