"""int8 fidelity and speed of every preset, on ONNX Runtime and OpenVINO, with real weights and photos.

    python benchmarks/int8_fidelity.py [--calib 200] [--eval 200] [--qemu-crops N] [--threads 2]
                                       [--no-fallback] [--no-variants]

EfficientNet-Lite0 (ImageNet weights), calibration crops from ``calibration_batch``, held-out crops
from ``evaluation_batch`` (photos the calibration never sees). Per row: logit cosine and top-1 agreement
on confident crops (original max prob > 0.4) against the PyTorch original, latency p50 (batch 1), and
that latency over fp32's on the same runtime. Every preset has bias correction on (the default); the
variant rows switch it off, add cross-layer equalisation, change the calibration method or use
per-tensor weights.

U8S8 models are also judged as an AVX2 CPU without VNNI runs them (u8 x s8 pairs added into a saturating
int16) and as VNNI / AMX / ARM run them (int32 accumulation), whatever this host is:
- real AVX2 kernels under QEMU: ONNX Runtime run under ``qemu-x86_64 -cpu Haswell`` (edgecnn.qemu) on
  the first ``--qemu-crops`` crops (default: all; about 1 s a crop), for the three u8s8 presets;
- this host's own kernels: real AVX2 kernels where the process sees AVX2 without VNNI, int32 elsewhere;
- edgecnn's emulator (edgecnn.exporters.saturation) with and without saturation.
OpenVINO rows of QDQ models say which of the two emulations OpenVINO's CPU plugin matches here.
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
QEMU_PRESETS = ("u8s8", "u8s8-saturation-aware", "u8s8-reduce-range")  # run on real AVX2 kernels under QEMU
# (label, quantize_nncf options): NNCF's defaults, edgecnn's per-tensor activations, and the overflow fix
# (7-bit weights: in the first layer, NNCF's default; everywhere; nowhere)
NNCF_ROWS = (
    ("nncf, NNCF defaults", {"per_tensor_activations": False, "overflow_fix": "first_layer_only"}),
    ("nncf, NNCF defaults + overflow fix everywhere", {"per_tensor_activations": False, "overflow_fix": "enable"}),
    ("nncf per-tensor activations, overflow fix off", {"overflow_fix": "disable"}),
    ("nncf per-tensor activations, overflow fix first layer", {"overflow_fix": "first_layer_only"}),
    ("nncf per-tensor activations, overflow fix everywhere", {"overflow_fix": "enable"}),
)
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


def metrics(ref: np.ndarray, out: np.ndarray, prefix: str = "", precision: str = "int8") -> dict:
    from edgecnn.parity import compare

    p = compare(ref, out, precision=precision)
    return {f"{prefix}cosine": p.cosine, f"{prefix}top1_confident": p.top1_confident,
            f"{prefix}n_confident": p.n_confident, f"{prefix}top1": p.top1}


def crop_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def fidelity(path: Path, runtime: str, precision: str, x: np.ndarray, ref: np.ndarray,
             threads: int) -> tuple[dict, np.ndarray]:
    from edgecnn import runtimes
    from edgecnn.harness.common import run_batched

    with runtimes.load(path, runtime=runtime, threads=threads, precision=precision) as rt:
        out = run_batched(rt, x, 1)
    return metrics(ref, out, precision="int8" if precision == "int8" else "fp32"), out


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


def real_avx2_under_qemu(rows: list[dict], outputs: dict, emulated: dict, x: np.ndarray, ref: np.ndarray,
                         crops: int | None) -> dict | None:
    """Run the QEMU_PRESETS QDQ models on ONNX Runtime under qemu-x86_64 -cpu Haswell (real AVX2 kernels) on
    the first ``crops`` crops; add avx2_qemu_* metrics to their ONNX Runtime rows and how they compare with
    this host's kernels and the emulator. Returns what the emulated process saw, or None without QEMU."""
    from edgecnn import qemu

    reason = qemu.unavailable()
    if reason:
        print(f"  QEMU: skipped ({reason})", file=sys.stderr, flush=True)
        return None
    chosen = [r for r in rows if r["recipe"] in QEMU_PRESETS and r["runtime"] == "onnxruntime"]
    n = min(crops or len(x), len(x))
    t0 = time.time()
    outs, seen = qemu.ort_outputs([r["path"] for r in chosen], x[:n], timeout=3600)
    print(f"  QEMU Haswell: {len(chosen)} models x {n} crops in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for r, out in zip(chosen, outs):
        emu, native = emulated[r["path"]][True][:n], outputs[id(r)][:n]
        real_c, emu_c = crop_cosines(out, ref[:n]), crop_cosines(emu, ref[:n])
        r.update(metrics(ref[:n], out, "avx2_qemu_"), avx2_qemu_n=n,
                 qemu_vs_native_max_abs=float(np.abs(out - native).max()),
                 qemu_vs_emulated_min_crop_cosine=float(crop_cosines(out, emu).min()),
                 qemu_vs_emulated_crop_fidelity_corr=float(np.corrcoef(real_c, emu_c)[0, 1]))
        if n < len(x):  # like for like: this host and the emulator on the same crops
            r.update(metrics(ref[:n], native, "subset_"), **metrics(ref[:n], emu, "subset_avx2_emulated_"),
                     **metrics(ref[:n], emulated[r["path"]][False][:n], "subset_int32_emulated_"))
    return seen


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--qemu-crops", type=int, default=None,
                    help="held-out crops run under qemu-x86_64 -cpu Haswell (default: all; 0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--iterations", type=int, default=60, help="timed runs per model per round")
    ap.add_argument("--no-fallback", action="store_true", help="skip the sensitivity-fallback row")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the rows for optional passes (bias correction, CLE) and calibration methods")
    ap.add_argument("--max-drop", type=float, default=0.003, help="budget (1 - cosine) for the fallback row")
    args = ap.parse_args(argv)

    import edgecnn
    from edgecnn import hostinfo, qemu
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.models import preprocessing
    from edgecnn.exporters.int8 import default_preset, get_preset, quantize_int8
    from edgecnn.exporters.openvino import convert_ir, default_overflow_fix, quantize_nncf
    from edgecnn.exporters.saturation import emulated_logits
    from edgecnn.exporters.simplify import simplify_onnx
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.runtimes.torch import reference_logits
    from edgecnn.parity import compare

    t_start, load_start = time.time(), os.getloadavg()[0]
    model = edgecnn.create_model(args.model, weights="imagenet")
    prep = preprocessing(model.edgecnn_spec, weights="imagenet")
    calib = calibration_batch(prep, args.calib)
    x = evaluation_batch(prep, args.eval)
    ref = reference_logits(model, x)
    rows: list[dict] = []
    outputs: dict[int, np.ndarray] = {}  # id(row) -> its logits
    emulated: dict[str, dict[bool, np.ndarray]] = {}  # QDQ path -> {saturate: logits}
    native_avx2 = hostinfo.saturates_u8s8()
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-bench-") as work:
        work = Path(work)
        fp32 = export_onnx(model, work / "model.onnx", input_shape=(1, 3, prep.resolution, prep.resolution))
        sim, _ = simplify_onnx(fp32, work / "model.sim.onnx")
        base = sim or fp32
        ir_fp32 = convert_ir(base, work / "ov" / "model.fp32.xml", precision="fp32")

        def add(recipe: str, runtime: str, path: Path, precision: str = "int8", **extra) -> dict:
            r, out = fidelity(path, runtime, precision, x, ref, args.threads)
            r.update(recipe=recipe, runtime=runtime, path=str(path), precision=precision, **extra)
            rows.append(r)
            outputs[id(r)] = out
            print(f"  {recipe} @ {runtime}: cosine {r['cosine']:.4f}, top-1 conf {r['top1_confident']:.1%}",
                  file=sys.stderr, flush=True)
            return r

        def emulations(path: Path) -> dict:
            """U8S8 on AVX2 without VNNI (saturating) and with int32 accumulation (VNNI, AMX, ARM), emulated."""
            emulated[str(path)] = {s: emulated_logits(path, x, saturate=s, threads=args.threads) for s in (True, False)}
            return {**metrics(ref, emulated[str(path)][True], "avx2_emulated_"),
                    **metrics(ref, emulated[str(path)][False], "int32_emulated_")}

        add("fp32", "onnxruntime", base.path, "fp32")
        add("fp32", "openvino", ir_fp32.path, "fp32")
        def quantized(label: str, recipe, runtimes: tuple[str, ...]) -> None:
            t0 = time.time()
            art = quantize_int8(base, work / f"{len(rows)}.onnx", calib, recipe=recipe, opset=17, progress=False)
            extra = {"quantize_s": time.time() - t0, "notes": art.notes, "int8_recipe": recipe.to_dict()}
            for runtime in runtimes:  # OpenVINO reads the QDQ ONNX directly
                emu = emulations(art.path) if recipe.u8s8 and runtime == "onnxruntime" else {}
                r = add(label, runtime, art.path, **extra, **emu)
                if recipe.u8s8 and runtime == "openvino" and str(art.path) in emulated:
                    # which arithmetic does OpenVINO's CPU plugin do here: saturating pairs or int32?
                    r.update({f"vs_{k}_emulation_cosine": float(crop_cosines(outputs[id(r)], v).mean())
                              for k, v in (("avx2", emulated[str(art.path)][True]),
                                           ("int32", emulated[str(art.path)][False]))})

        for name in ONNX_PRESETS:
            quantized(name, get_preset(name), ("onnxruntime", "openvino"))
        seen = real_avx2_under_qemu(rows, outputs, emulated, x, ref, args.qemu_crops) if args.qemu_crops != 0 else None
        if not args.no_variants:
            for label, name, changes in VARIANTS:
                quantized(label, replace(get_preset(name), **changes), ("onnxruntime",))
        for tag, kwargs in NNCF_ROWS:
            t0 = time.time()
            art = quantize_nncf(ir_fp32, work / "ov" / f"nncf-{len(rows)}.xml", calib, **kwargs)
            add(tag, "openvino", art.path, quantize_s=time.time() - t0, notes=art.notes,
                nncf_overflow_fix=kwargs["overflow_fix"],
                per_tensor_activations=kwargs.get("per_tensor_activations", True))
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
            add(label, "onnxruntime", dest, **extra, **emulations(dest))
            add(label, "openvino", dest)
        print("  latency: interleaved rounds...", file=sys.stderr, flush=True)
        latencies(rows, x[:1], args.threads, args.rounds, args.iterations)
        for r in rows:
            del r["path"]
    result = {"model": args.model, "weights": "imagenet", "calibration": len(calib), "evaluation": len(x),
              "threads": args.threads, "batch": 1, "host": hostinfo.host(), "versions": hostinfo.versions(),
              "default_preset_here": default_preset(), "nncf_overflow_fix_here": default_overflow_fix(),
              "native_kernels": ("real AVX2 kernels, u8 x s8 pairs saturate in int16" if native_avx2
                                 else "int32 accumulation (VNNI / AMX / ARM dot-product)"),
              "qemu": seen, "seconds": time.time() - t_start, "rows": rows,
              "load_average": {"start": load_start, "end": os.getloadavg()[0]},
              "notes": ["latency p50: lowest per-round median over interleaved rounds (every model once a round); "
                        "other processes load this machine, so absolute figures are noisy; p50_all_ms: all runs",
                        "avx2_emulated_* / int32_emulated_*: the QDQ model run in float with U8S8 int16 pair "
                        "saturation emulated / with exact int32 accumulation (edgecnn/exporters/saturation.py)",
                        "avx2_qemu_*: ONNX Runtime's real AVX2 kernels under qemu-x86_64 -cpu Haswell "
                        "(edgecnn/qemu.py) "
                        "on the first avx2_qemu_n crops; subset_*: this host's kernels and the emulator on those crops",
                        "vs_avx2_emulation_cosine / vs_int32_emulation_cosine (OpenVINO rows): mean per-crop cosine "
                        "of OpenVINO's logits to each emulation of the same QDQ model"]}
    table = markdown(result)
    save(RESULTS / "int8_fidelity", result, table)
    print(table)
    return result


def markdown(result: dict) -> str:
    cpu = result["host"]["cpu"]
    isa = ", ".join(cpu["isa"]) or "-"

    def fmt(r: dict, p: str = "") -> str:
        if p + "cosine" not in r:
            return "-"
        return f"{r[p + 'cosine']:.4f} / {r[p + 'top1_confident']:.1%} (n={r[p + 'n_confident']})"

    lines = [f"# int8 fidelity: {result['model']} (ImageNet weights)", "",
             f"{result['evaluation']} held-out crops (photos the calibration never sees), {result['calibration']} "
             f"calibration crops; batch 1, {result['threads']} threads; {cpu['model']} "
             f"(ISA seen by the process: {isa}; "
             f"int8 kernels here: {result['native_kernels']}). Cosine / top-1 agreement on confident crops (n) "
             "against PyTorch.", ""]
    if "load_average" in result:
        load = result["load_average"]
        lines += [f"Machine load (1-minute average, {cpu['cores']} cores) at the start and end of the run: "
                  f"{load['start']:.1f}, {load['end']:.1f}" + (f"; {load['note']}" if load.get("note") else "")
                  + ". Fidelity does not depend on load; latencies do.", ""]
    seen = result.get("qemu")
    real = [r for r in result["rows"] if "avx2_qemu_cosine" in r]
    if real:
        n = real[0]["avx2_qemu_n"]
        lines += ["## AVX2 without VNNI: real kernels and the emulator", "",
                  f"Real AVX2 kernels under QEMU: ONNX Runtime {seen['onnxruntime']} run by {seen['qemu']} with "
                  f"`-cpu {seen['qemu_cpu']}` (the process saw: {', '.join(seen['cpu']['isa'])}), first {n} crops. "
                  "'int32 accumulation' is what VNNI, AMX and ARM dot-product compute (the QDQ model in float, exact).",
                  "", "| preset | this CPU | real AVX2 kernels (QEMU Haswell) "
                  "| emulator (AVX2) | int32 accumulation | QEMU vs this CPU, max abs | QEMU vs emulator, per-crop |",
                  "|---|---|---|---|---|---|---|"]
        for r in real:
            sub = "subset_" if "subset_cosine" in r else ""
            lines.append(f"| {r['recipe']} | {fmt(r, sub)} | {fmt(r, 'avx2_qemu_')} "
                         f"| {fmt(r, sub + 'avx2_emulated_')} | {fmt(r, sub + 'int32_emulated_')} "
                         f"| {r['qemu_vs_native_max_abs']:.3g} "
                         f"| cosine >= {r['qemu_vs_emulated_min_crop_cosine']:.4f}, "
                         f"fidelity corr. {r['qemu_vs_emulated_crop_fidelity_corr']:.4f} |")
        lines.append("")
    ov = [r for r in result["rows"] if "vs_avx2_emulation_cosine" in r]
    if ov:
        lines += ["## OpenVINO's CPU plugin on the same QDQ models: which arithmetic does it do here?", "",
                  "| QDQ model | OpenVINO vs PyTorch | OpenVINO vs AVX2 emulation | OpenVINO vs int32 emulation |",
                  "|---|---|---|---|"]
        lines += [f"| {r['recipe']} | {fmt(r)} | {r['vs_avx2_emulation_cosine']:.5f} "
                  f"| {r['vs_int32_emulation_cosine']:.5f} |"
                  for r in ov]
        lines.append("")
    lines += ["## Every recipe", "",
              "p50: the lowest per-round median of interleaved rounds; the machine is shared with other work, so "
              "latencies are noisy. 'AVX2 emulated' / 'int32': the same QDQ model with int16 pair saturation "
              "emulated / "
              "with exact int32 accumulation.", "",
              "| recipe | runtime | cosine / top-1 (confident) | AVX2 emulated | int32 | p50 ms | vs fp32 |",
              "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['recipe']} | {r['runtime']} | {fmt(r)} | {fmt(r, 'avx2_emulated_')} "
                     f"| {fmt(r, 'int32_emulated_')} | {r['p50_ms']:.2f} | {r['vs_fp32']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
