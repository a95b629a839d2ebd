"""Cross-check edgecnn's OpenVINO figures against OpenVINO's own benchmark_app, on the same IR files.

For every OpenVINO IR of an export folder (export one first: `edgecnn export mobilenet_v2 --int8`),
in latency mode (one request, LATENCY hint) and throughput mode (THROUGHPUT hint, its own number of
streams and requests), each tool is run in its own block, one after the other, with the same thread
count; then the table gives both medians (latency) or images/s (throughput) and their ratio.

    python benchmarks/vendor_crosscheck.py edgecnn_out/mobilenet_v2 --threads 2 --seconds 10

Writes benchmarks/results/vendor_crosscheck.{json,md}. benchmark_app comes with `pip install openvino`.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import RESULTS, save

PRECISION_HINT = {"fp32": "f32", "fp16": "f32", "int8": "f32"}  # what edgecnn pins (int8 layers run int8 anyway)


def benchmark_app(xml: Path, *, mode: str, threads: int, seconds: float, precision: str, shape: list[int],
                  work: Path) -> dict:
    """benchmark_app with the properties edgecnn's OpenVINO runtime sets: the hint, the thread count and the
    precision go in a -load_config file (its UI refuses -nthreads next to a -hint); a dynamic-batch model
    stays dynamic and is fed edgecnn's input shape (-data_shape), as edgecnn runs it (-shape would compile
    a static model: faster, and not the artifact)."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    config = work / f"benchmark_app.{mode}.json"
    config.write_text(json.dumps({"CPU": {"PERFORMANCE_HINT": mode.upper(), "INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": PRECISION_HINT[precision]}}))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", mode, "-load_config", str(config), "-t", str(max(1, round(seconds))),
           "-data_shape", "[" + ",".join(str(d) for d in shape) + "]"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 120)
    out = run.stdout + run.stderr
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    fps = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    if not (median and fps):
        raise RuntimeError(f"could not read benchmark_app's output for {xml.name}:\n{out[-2000:]}")
    return {"median_ms": float(median.group(1)), "images_per_s": float(fps.group(1)), "command": " ".join(cmd)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10, help="per measurement (benchmark_app takes whole seconds)")
    ap.add_argument("--out", default=str(RESULTS / "vendor_crosscheck"))
    args = ap.parse_args()

    from edgecnn import hostinfo
    from edgecnn.harness.bench import bench_dir
    from edgecnn.manifest import Manifest

    manifest = Manifest.load(args.out_dir)
    irs = [a for a in manifest.artifacts if a.format == "openvino"]
    rows = []
    for mode in ("latency", "throughput"):
        ours = bench_dir(args.out_dir, runtimes=("openvino",), threads=args.threads, mode=mode,
                         iterations=None, duration_s=args.seconds, progress=False)
        for art in irs:
            mine = next(r for r in ours.results if r.artifact == art.key and r.runtime == "openvino")
            with tempfile.TemporaryDirectory() as work:
                theirs = benchmark_app(art.path, mode=mode, threads=args.threads, seconds=args.seconds,
                                       precision=art.precision, shape=[1, *manifest.input_shape[1:]], work=Path(work))
            row = {"artifact": art.key, "mode": mode, "edgecnn_p50_ms": mine.latency.p50_ms,
                   "benchmark_app_median_ms": theirs["median_ms"], "benchmark_app_images_per_s": theirs["images_per_s"],
                   "edgecnn_images_per_s": (mine.throughput.images_per_s if mine.throughput
                                            else 1000.0 * mine.batch / mine.latency.p50_ms),
                   "benchmark_app": theirs["command"]}
            row["ratio"] = (row["edgecnn_images_per_s"] / row["benchmark_app_images_per_s"] if mode == "throughput"
                            else row["edgecnn_p50_ms"] / row["benchmark_app_median_ms"])
            rows.append(row)
            print(f"{mode:10s} {art.key:20s} edgecnn {row['edgecnn_p50_ms']:7.2f} ms {row['edgecnn_images_per_s']:7.1f} "
                  f"img/s | benchmark_app {row['benchmark_app_median_ms']:7.2f} ms "
                  f"{row['benchmark_app_images_per_s']:7.1f} img/s | ratio {row['ratio']:.2f}", flush=True)
    cpu = hostinfo.cpu_info()
    header = (f"Model {manifest.model}; {cpu['model']} ({cpu['cores']} cores, ISA {' '.join(cpu['isa'])}), "
              f"{args.threads} threads, {args.seconds:g} s per measurement; each tool in its own block.\n"
              "ratio: latency = edgecnn p50 / benchmark_app median; throughput = edgecnn img/s / benchmark_app img/s.\n\n"
              "| mode | artifact | edgecnn p50 ms | benchmark_app median ms | edgecnn img/s | benchmark_app img/s | ratio |\n"
              "|---|---|---|---|---|---|---|\n")
    table = "".join(f"| {r['mode']} | {r['artifact']} | {r['edgecnn_p50_ms']:.2f} | {r['benchmark_app_median_ms']:.2f} | "
                    f"{r['edgecnn_images_per_s']:.1f} | {r['benchmark_app_images_per_s']:.1f} | {r['ratio']:.2f} |\n"
                    for r in rows)
    save(args.out, {"model": manifest.model, "host": hostinfo.host(), "threads": args.threads,
                    "seconds": args.seconds, "rows": rows}, header + table)
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
