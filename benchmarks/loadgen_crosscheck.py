"""Cross-check bench's early-stopping statistics against the real MLPerf loadgen (mlcommons-loadgen from PyPI).

For each query count N, loadgen runs SingleStream (p90) and MultiStream (p99, 8 samples per query) on a SUT that
answers at once, exactly N queries, and its summary says how many of the slowest queries early stopping would
discard (or that it needs more queries). edgecnn.timing.early_stopping must say the same for N latencies: both
depend only on N, the percentile and the confidence, not on the latencies. The percentile estimate itself is the
(discarded + 1)-th slowest latency in both (loadgen's sample latencies are not exported, so it is not compared).

    pip install mlcommons-loadgen   # or: pip install --target DIR mlcommons-loadgen; PYTHONPATH=DIR
    python benchmarks/loadgen_crosscheck.py [--json benchmarks/results/loadgen_crosscheck.json]

Not part of CI (mlcommons-loadgen is no dependency of edgecnn).
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from edgecnn.timing import early_stopping

COUNTS = {"single-stream": (63, 64, 100, 137, 500, 1024, 4000), "multi-stream": (661, 662, 700, 2000)}


def loadgen_discard(lg, scenario: str, n: int) -> dict:
    def issue(samples):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    s = lg.TestSettings()
    s.scenario = lg.TestScenario.SingleStream if scenario == "single-stream" else lg.TestScenario.MultiStream
    s.mode = lg.TestMode.PerformanceOnly
    s.min_query_count = s.max_query_count = n
    s.min_duration_ms = 0
    if scenario == "multi-stream":
        s.multi_stream_samples_per_query = 8
        s.multi_stream_target_latency_percentile = 0.99
    else:
        s.single_stream_target_latency_percentile = 0.90
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda _s: None, lambda _s: None)
    with tempfile.TemporaryDirectory() as tmp:
        log = lg.LogSettings()
        log.log_output.outdir = tmp
        lg.StartTestWithLogSettings(sut, qsl, s, log)
        summary = (Path(tmp) / "mlperf_log_summary.txt").read_text()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    issued = re.search(r"Processed at least \d+ queries \((\d+)\)", summary) or re.search(r"Only processed (\d+)", summary)
    discard = re.search(r"Would discard (\d+) highest latency queries", summary)
    need = re.search(r"Need to process at least (\d+) queries", summary) or re.search(r"Processed at least (\d+) queries", summary)
    return {"queries": int(issued.group(1)) if issued else None, "discarded": int(discard.group(1)) if discard else None,
            "min_queries": int(need.group(1)) if need else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json")
    args = p.parse_args()
    import mlperf_loadgen as lg

    rows, agree = [], True
    for scenario, counts in COUNTS.items():
        pct = 0.90 if scenario == "single-stream" else 0.99
        for n in counts:
            theirs = loadgen_discard(lg, scenario, n)
            n_run = theirs["queries"] or n
            ours = early_stopping(list(range(n_run)), pct)
            mine = {"queries": n_run, "discarded": ours["discarded"], "min_queries": ours["min_queries"]}
            same = theirs == mine
            agree &= same
            rows.append({"scenario": scenario, "n": n, "loadgen": theirs, "edgecnn": mine, "same": same})
            print(f"{scenario:13} n={n:5}: loadgen {theirs}  edgecnn {mine}  {'same' if same else 'DIFFERENT'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"loadgen": getattr(lg, "__version__", "6.x"), "rows": rows}, indent=1))
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
