"""Sweep: models x runtimes x precisions, batch 1, one process, one machine.

For each model: `edgecnn export MODEL --int8 [--fp16]` into a scratch folder, then `bench` every
artifact and PyTorch eager fp32 in the same run (same threads, same input), so speedups are
ratios measured together. Writes JSON and a Markdown table.

    python benchmarks/zoo_sweep.py                       # emphasis families + a few classics
    python benchmarks/zoo_sweep.py --models mobilenet_v2 --threads 2
    python benchmarks/zoo_sweep.py --all                 # the whole zoo (hours on 2 cores)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _results import save  # benchmarks/_results.py

DEFAULT_MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v1_g3",
                  "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet1_0", "efficientnet_lite0", "resnet18", "resnet50")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS))
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--fp16", action="store_true", help="also fp16 artifacts")
    ap.add_argument("--out", default="benchmarks/results/zoo_sweep")
    args = ap.parse_args()

    from edgecnn.pipeline import ExportConfig, run_export
    from edgecnn.harness.bench import bench_dir
    from edgecnn.report import markdown
    from edgecnn.models import list_models

    models = list_models() if args.all else args.models
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            weights = "imagenet" if name == "efficientnet_lite0" else None  # the one checkpoint available offline
            out = Path(tmp) / name
            run_export(ExportConfig(model=name, weights=weights, int8=True, fp16=args.fp16, out=str(out),
                                    threads=args.threads, progress=False, latency=False), log=lambda _m: None)
            res = bench_dir(out, threads=args.threads, iterations=args.iterations, warmup=10, progress=False)
            results.append(res)
            best = min((r for r in res.results if r.latency and r.artifact != "torch-eager"),
                       key=lambda r: r.latency.p50_ms)
            eager = next(r for r in res.results if r.artifact == "torch-eager")
            print(f"{name}: eager {eager.latency.p50_ms:.2f} ms; best {best.artifact}@{best.runtime} "
                  f"{best.latency.p50_ms:.2f} ms ({best.speedup:.1f}x)", flush=True)

    cpu = results[0].host["cpu"] if results else {}
    header = (f"Measured on {cpu.get('model')} ({cpu.get('cores')} cores, ISA {' '.join(cpu.get('isa', []))}), "
              f"{args.threads} threads, batch 1, {args.iterations} iterations after 10 warm-up runs.\n\n")
    save(args.out, [r.to_dict() for r in results], header + markdown(results))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
