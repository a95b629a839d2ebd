"""What Ray costs a sweep: the same cells on a local Ray, in-process (the fallback), and as a shell loop of
`edgecnn export` + `edgecnn bench` (not a test; writes benchmarks/results/sweep_overhead.<label>.json/.md).

    python benchmarks/sweep_overhead.py                      # 6 mobile models x fp32,fp16,int8 x onnxruntime,openvino
    python benchmarks/sweep_overhead.py --models mobilenet_v2,squeezenet1_1 --resolution 96 --label under-load

Figures:
- total wall time per engine (Ray includes starting and stopping its local instance);
- Ray's overhead per cell: (Ray wall - in-process wall) / cells, against the mean in-process cell time
  (target: under 5%); negative where Ray's parallel exports win more than it costs;
- timing agreement: each Ray cell's p50 against `edgecnn bench` run alone (a subprocess, afterwards) on the
  very artifact folder that cell timed, same iterations and threads.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._results import RESULTS, save  # noqa: E402

MOBILE = "mobilenet_v2,mobilenet_v3_small,mobilenet_v3_large,shufflenet_v2_x1_0,squeezenet1_1,efficientnet_lite0"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)


def shell_loop(models, precisions, targets, *, resolution, iterations, warmup, root: Path) -> tuple[float, list]:
    t0 = time.perf_counter()
    rows = []
    for m in models:
        for p in precisions:
            for t in targets:
                out = root / f"{m}-{p}-{t}"
                flags = {"fp16": ["--fp16"], "int8": ["--int8"]}.get(p, [])
                res = ["--resolution", str(resolution)] if resolution else []
                e = cli("export", m, "--weights", "random", *res, *flags, "--targets", t, "--out", str(out),
                        "--quiet")
                b = cli("bench", str(out), "--runtimes", t, "--iterations", str(iterations), "--warmup",
                        str(warmup), "--quiet", "--json", str(out / "bench.json")) if e.returncode == 0 else e
                rows.append({"model": m, "precision": p, "runtime": t, "export_rc": e.returncode,
                             "bench_rc": b.returncode})
    return time.perf_counter() - t0, rows


def alone_p50(folder: str, artifact: str, runtime: str, iterations: int, warmup: int) -> float | None:
    with tempfile.TemporaryDirectory() as tmp:
        j = Path(tmp) / "b.json"
        r = cli("bench", folder, "--runtimes", runtime, "--iterations", str(iterations), "--warmup", str(warmup),
                "--quiet", "--json", str(j))
        if r.returncode != 0:
            return None
        data = json.loads(j.read_text())
    row = next((x for x in data["results"] if x["artifact"] == artifact and x["runtime"] == runtime), None)
    return row["latency"]["p50_ms"] if row and row.get("latency") else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MOBILE)
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--targets", default="onnxruntime,openvino")
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--label", default="this-machine")
    ap.add_argument("--skip-shell", action="store_true")
    a = ap.parse_args()
    import edgecnn
    from edgecnn import hostinfo

    models, precisions, targets = a.models.split(","), a.precisions.split(","), a.targets.split(",")
    common = dict(precisions=precisions, targets=targets, weights="random", resolution=a.resolution,
                  iterations=a.iterations, warmup=a.warmup, progress=False)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        on_ray = edgecnn.sweep(models, out=root / "ray", **common)
        ray_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        inline = edgecnn.sweep(models, out=root / "seq", use_ray=False, **common)
        seq_s = time.perf_counter() - t0
        shell_s, shell_rows = (None, []) if a.skip_shell else shell_loop(
            models, precisions, targets, resolution=a.resolution, iterations=a.iterations, warmup=a.warmup,
            root=root / "shell")
        agree = []
        for r in on_ray.rows:
            if r["status"] == "ok" and r.get("folder"):
                alone = alone_p50(r["folder"], r["artifact"], r["runtime"], a.iterations, a.warmup)
                if alone:
                    agree.append({"cell": f"{r['model']} {r['precision']} {r['runtime']}", "sweep_p50_ms": r["p50_ms"],
                                  "bench_alone_p50_ms": alone, "ratio": r["p50_ms"] / alone})
    cells = len(on_ray.rows)
    cell_times = [(r.get("export_s") or 0) + (r.get("bench_s") or 0) for r in inline.rows if r["status"] == "ok"]
    mean_cell = statistics.mean(cell_times) if cell_times else None
    overhead = (ray_s - seq_s) / cells
    cpu = hostinfo.cpu_info()
    data = {"machine": {"cpu": cpu["model"], "isa": cpu["isa"], "cores": cpu["cores"], "os": platform.platform(),
                        "load_before": load_before, "load_after": os.getloadavg(), "label": a.label},
            "matrix": {"models": models, "precisions": precisions, "targets": targets, "resolution": a.resolution,
                       "iterations": a.iterations, "cells": cells},
            "wall_s": {"ray": round(ray_s, 2), "sequential": round(seq_s, 2),
                       "shell_loop": None if shell_s is None else round(shell_s, 2)},
            "statuses": {"ray": [r["status"] for r in on_ray.rows], "sequential": [r["status"] for r in inline.rows],
                         "shell_loop": shell_rows},
            "mean_cell_s_inprocess": mean_cell, "ray_overhead_per_cell_s": round(overhead, 3),
            "ray_overhead_per_cell_fraction": None if not mean_cell else round(overhead / mean_cell, 4),
            "timing_agreement": agree,
            "timing_ratio_median": statistics.median([x["ratio"] for x in agree]) if agree else None}
    md = [f"# sweep overhead ({a.label})", "",
          f"Machine: {cpu['model']}, {cpu['cores']} cores, ISA {' '.join(cpu['isa'])}; load average before "
          f"{load_before[0]:.1f}, after {data['machine']['load_after'][0]:.1f}.",
          f"Matrix: {len(models)} models x {len(precisions)} precisions x {len(targets)} runtimes = {cells} cells, "
          f"resolution {a.resolution or 'native'}, {a.iterations} iterations.", "",
          "| engine | wall (s) |", "|---|---|",
          f"| local Ray | {ray_s:.1f} |", f"| in-process (fallback) | {seq_s:.1f} |",
          f"| shell loop of edgecnn export + bench | {'-' if shell_s is None else f'{shell_s:.1f}'} |", "",
          f"Ray overhead per cell: {overhead:+.2f} s against a mean in-process cell of "
          f"{mean_cell or float('nan'):.2f} s ({(overhead / mean_cell * 100) if mean_cell else float('nan'):+.1f}%).", "",
          "| cell | p50 in the sweep (ms) | p50 `edgecnn bench` alone (ms) | ratio |", "|---|---|---|---|"]
    md += [f"| {x['cell']} | {x['sweep_p50_ms']:.3f} | {x['bench_alone_p50_ms']:.3f} | {x['ratio']:.2f} |"
           for x in agree]
    save(RESULTS / f"sweep_overhead.{a.label}", data, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
