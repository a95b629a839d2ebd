"""int8 fidelity and speed of every preset, on ONNX Runtime and OpenVINO, with real weights and photos.

    python benchmarks/int8_fidelity.py [--calib 200] [--eval 200] [--threads 2] [--no-fallback] [--no-variants]

EfficientNet-Lite0 (ImageNet weights), calibration crops from ``calibration_batch``, held-out crops
from ``evaluation_batch``. Per row: logit cosine and top-1 agreement on confident crops (original max
prob > 0.4) against the PyTorch original, latency p50 (batch 1), and that latency over fp32's on the
same runtime. Every preset has bias correction on (the default); the variant rows switch it off,
add cross-layer equalisation, change the calibration method or use per-tensor weights. For U8S8
models, the cosine / agreement that an AVX2 CPU without VNNI would give is *emulated*
(edgecnn.exporters.saturation), since a VNNI machine cannot show it.
Writes benchmarks/results/int8_fidelity.json and .md (atomically) and prints the table.
Latency: every model is loaded, then timed in interleaved rounds; other load on the machine still makes
absolute figures noisy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("NNCF_CI", "1")  # no NNCF telemetry
os.environ.setdefault("CI", "true")

from _results import RESULTS, save  # noqa: E402  (benchmarks/_results.py)

ONNX_PRESETS = ("u8s8", "u8s8-saturation-aware", "u8s8-reduce-range", "s8s8")
# (label, preset, Int8Recipe changes): what each optional pass and calibration method does, on ONNX Runtime
VARIANTS = (
    ("u8s8, no bias correction", "u8s8", {"bias_correction": False}),
    ("u8s8-reduce-range, no bias correction", "u8s8-reduce-range", {"bias_correction": False}),
    ("u8s8 + CLE", "u8s8", {"equalize": True}),
    ("u8s8, percentile calibration", "u8s8", {"calibration": "percentile"}),
    ("u8s8, entropy calibration", "u8s8", {"calibration": "entropy"}),
    ("u8s8 per-tensor weights", "u8s8", {"per_channel": False}),
    ("u8s8 per-tensor weights, no bias correction", "u8s8", {"per_channel": False, "bias_correction": False}),
    ("u8s8 per-tensor weights + CLE", "u8s8", {"per_channel": False, "equalize": True}),
)


def fidelity(path: Path, runtime: str, precision: str, x: np.ndarray, ref: np.ndarray, threads: int) -> dict:
    from edgecnn import runtimes
    from edgecnn.harness.common import run_batched
    from edgecnn.parity import compare

    with runtimes.load(path, runtime=runtime, threads=threads, precision=precision) as rt:
        out = run_batched(rt, x, 1)
    p = compare(ref, out, precision="int8" if precision == "int8" else "fp32")
    return {"cosine": p.cosine, "top1_confident": p.top1_confident, "n_confident": p.n_confident, "top1": p.top1}


def latencies(rows: list[dict], x1: np.ndarray, threads: int, rounds: int, iterations: int) -> None:
    """Interleaved rounds (every model once per round), so background load hits all models alike.

    ``p50_ms``: the lowest per-round median (the least disturbed round); ``p50_all_ms``: the median of all."""
    from edgecnn import runtimes

    loaded = [runtimes.load(r["path"], runtime=r["runtime"], threads=threads, precision=r["precision"]) for r in rows]
    try:
        for rt in loaded:
            for _ in range(10):
                rt.run(x1)
        per_round = [[] for _ in rows]
        times = [[] for _ in rows]
        for _ in range(rounds):
            for i, rt in enumerate(loaded):
                t = []
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    rt.run(x1)
                    t.append((time.perf_counter() - t0) * 1e3)
                per_round[i].append(float(np.median(t)))
                times[i] += t
    finally:
        for rt in loaded:
            rt.close()
    fp32 = {r["runtime"]: min(pr) for r, pr in zip(rows, per_round) if r["precision"] == "fp32"}
    for r, pr, t in zip(rows, per_round, times):
        r.update(p50_ms=min(pr), p50_all_ms=float(np.median(t)), round_p50_ms=pr, vs_fp32=min(pr) / fp32[r["runtime"]])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--iterations", type=int, default=60, help="timed runs per model per round")
    ap.add_argument("--no-fallback", action="store_true", help="skip the sensitivity-fallback row")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the rows for optional passes (bias correction, CLE) and calibration methods")
    ap.add_argument("--max-drop", type=float, default=0.003, help="budget (1 - cosine) for the fallback row")
    args = ap.parse_args(argv)

    import edgecnn
    from edgecnn import hostinfo
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.models import preprocessing
    from edgecnn.exporters.int8 import default_preset, get_preset, quantize_int8
    from edgecnn.exporters.openvino import convert_ir, quantize_nncf
    from edgecnn.exporters.saturation import emulated_logits
    from edgecnn.exporters.simplify import simplify_onnx
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.runtimes.torch import reference_logits
    from edgecnn.parity import compare

    t_start = time.time()
    model = edgecnn.create_model(args.model, weights="imagenet")
    prep = preprocessing(model.edgecnn_spec, weights="imagenet")
    calib = calibration_batch(prep, args.calib)
    x = evaluation_batch(prep, args.eval)
    ref = reference_logits(model, x)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-bench-") as work:
        work = Path(work)
        fp32 = export_onnx(model, work / "model.onnx", input_shape=(1, 3, prep.resolution, prep.resolution))
        sim, _ = simplify_onnx(fp32, work / "model.sim.onnx")
        base = sim or fp32
        ir_fp32 = convert_ir(base, work / "ov" / "model.fp32.xml", precision="fp32")

        def add(recipe: str, runtime: str, path: Path, precision: str = "int8", **extra) -> None:
            r = fidelity(path, runtime, precision, x, ref, args.threads)
            r.update(recipe=recipe, runtime=runtime, path=str(path), precision=precision, **extra)
            rows.append(r)
            print(f"  {recipe} @ {runtime}: cosine {r['cosine']:.4f}, top-1 conf {r['top1_confident']:.1%}",
                  file=sys.stderr, flush=True)

        add("fp32", "onnxruntime", base.path, "fp32")
        add("fp32", "openvino", ir_fp32.path, "fp32")
        def quantized(label: str, recipe, runtimes: tuple[str, ...]) -> None:
            t0 = time.time()
            art = quantize_int8(base, work / f"{len(rows)}.onnx", calib, recipe=recipe, opset=17, progress=False)
            extra = {"quantize_s": time.time() - t0, "notes": art.notes, "int8_recipe": recipe.to_dict()}
            for runtime in runtimes:  # OpenVINO reads the QDQ ONNX directly
                emulated = {}
                if recipe.u8s8 and runtime == "onnxruntime":  # the emulation models ORT's MLAS kernels only
                    p = compare(ref, emulated_logits(art.path, x, threads=args.threads), precision="int8")
                    emulated = {"avx2_emulated_cosine": p.cosine, "avx2_emulated_top1_confident": p.top1_confident}
                add(label, runtime, art.path, **extra, **emulated)

        for name in ONNX_PRESETS:
            quantized(name, get_preset(name), ("onnxruntime", "openvino"))
        if not args.no_variants:
            for label, name, changes in VARIANTS:
                quantized(label, replace(get_preset(name), **changes), ("onnxruntime",))
        for tag, kwargs in (("nncf, NNCF defaults", {"per_tensor_activations": False}),
                            ("nncf overflow-fix, NNCF defaults", {"per_tensor_activations": False,
                                                                  "overflow_fix": "enable"}),
                            ("nncf per-tensor activations (edgecnn's route)", {})):
            t0 = time.time()
            art = quantize_nncf(ir_fp32, work / "ov" / f"nncf-{len(rows)}.xml", calib, **kwargs)
            add(tag, "openvino", art.path, quantize_s=time.time() - t0, notes=art.notes)
        if not args.no_fallback:
            from edgecnn.exporters.sensitivity import fallback_for_budget

            sel = calibration_batch(prep, 64, seed=7)  # as the pipeline does: never the held-out crops
            dest = work / "fallback.onnx"
            excluded, meas = fallback_for_budget(base.path, calib, sel, reference_logits(model, sel),
                                                 recipe=get_preset("u8s8-reduce-range"), max_drop=args.max_drop,
                                                 threads=args.threads, dest=dest)
            label = f"u8s8-reduce-range + fallback (max drop {args.max_drop:g}, {len(excluded)} float)"
            extra = {"excluded": excluded, "fallback": {k: v for k, v in meas.items() if k != "candidates"},
                     "note": "layers chosen on 64 other crops of the calibration photos (seed 7)"}
            p = compare(ref, emulated_logits(dest, x, threads=args.threads), precision="int8")
            extra.update(avx2_emulated_cosine=p.cosine, avx2_emulated_top1_confident=p.top1_confident)
            add(label, "onnxruntime", dest, **extra)
            add(label, "openvino", dest)
        print("  latency: interleaved rounds...", file=sys.stderr, flush=True)
        latencies(rows, x[:1], args.threads, args.rounds, args.iterations)
        for r in rows:
            del r["path"]
    result = {"model": args.model, "weights": "imagenet", "calibration": len(calib), "evaluation": len(x),
              "threads": args.threads, "batch": 1, "host": hostinfo.host(), "versions": hostinfo.versions(),
              "default_preset_here": default_preset(), "seconds": time.time() - t_start, "rows": rows,
              "notes": ["latency p50: lowest per-round median over interleaved rounds (every model once a round); "
                        "other processes load this machine, so absolute figures are noisy; p50_all_ms: all runs",
                        "avx2_emulated_*: U8S8 int16 pair saturation emulated (this host has VNNI); see "
                        "edgecnn/exporters/saturation.py"]}
    table = markdown(result)
    save(RESULTS / "int8_fidelity", result, table)
    print(table)
    return result


def markdown(result: dict) -> str:
    cpu = result["host"]["cpu"]
    lines = [f"# int8 fidelity: {result['model']} (ImageNet weights)", "",
             f"{result['evaluation']} held-out crops, {result['calibration']} calibration crops; batch 1, "
             f"{result['threads']} threads; {cpu['model']} ({', '.join(cpu['isa'])}). p50: the lowest per-round median "
             "of interleaved rounds; the machine is shared, so latencies are noisy. 'AVX2 emulated': the same QDQ "
             "model with int16 pair saturation emulated (this host has VNNI).", "",
             "| recipe | runtime | cosine | top-1 (confident) | AVX2 emulated cosine / top-1 | p50 ms | vs fp32 |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        emu = (f"{r['avx2_emulated_cosine']:.4f} / {r['avx2_emulated_top1_confident']:.1%}"
               if "avx2_emulated_cosine" in r else "-")
        lines.append(f"| {r['recipe']} | {r['runtime']} | {r['cosine']:.4f} | {r['top1_confident']:.1%} "
                     f"(n={r['n_confident']}) | {emu} | {r['p50_ms']:.2f} "
                     f"| {r['vs_fp32']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
