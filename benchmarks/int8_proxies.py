"""int8 on trained weights for the emphasis families: the *proxies* of benchmarks/train_proxies.py (each zoo
architecture trained from scratch on the handwritten digits at 64 px), fp32 vs int8 top-1 on the held-out digits
and logit cosine, per preset, on ONNX Runtime and OpenVINO with this machine's kernels, and on ONNX Runtime's real
AVX2 kernels under ``qemu-x86_64 -cpu Haswell`` (edgecnn/qemu.py). ARM kernels: not measured here.

    python benchmarks/int8_proxies.py PROXIES_DIR [PROXIES_DIR ...] [--qemu N] [--calib 128]

Only proxies that reached their target top-1 (proxies.json: reached_target) are judged. Where a preset loses more
than a point of top-1 on a runtime, the sensitivity fallback (edgecnn.exporters.sensitivity, as ``--max-drop 0.01``)
is run and the layers it keeps in float are recorded. Writes benchmarks/results/int8_proxies.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NNCF_CI", "1")
os.environ.setdefault("CI", "true")

from _results import RESULTS, save  # noqa: E402

PRESETS = ("u8s8", "u8s8-saturation-aware", "u8s8-reduce-range")


def judge(ref: np.ndarray, out: np.ndarray, y: np.ndarray, fp32_top1: float) -> dict:
    from edgecnn.parity import compare

    p = compare(ref, out, precision="int8")
    top1 = float((out.argmax(1) == y).mean())
    return {"top1": top1, "delta_top1": top1 - fp32_top1, "cosine": p.cosine, "verdict": "pass" if p else "FAIL"}


def family_rows(record: dict, folder: Path, *, calib_n: int, qemu_n: int, threads: int) -> list[dict]:
    import edgecnn
    from edgecnn import qemu, runtimes
    from edgecnn.data import labelled_batch
    from edgecnn.exporters.int8 import get_preset, quantize_int8
    from edgecnn.exporters.sensitivity import fallback_for_budget
    from edgecnn.exporters.simplify import simplify_onnx
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.harness.common import run_batched
    from edgecnn.models import preprocessing
    from edgecnn.runtimes.torch import reference_logits

    family, name = record["family"], record["model"]
    model = edgecnn.create_model(name, weights=str(folder / f"{family}.proxy.pth"))
    prep = preprocessing(model.edgecnn_spec, record["resolution"])
    x, y, _, _ = labelled_batch(prep, folder / "digits" / "test")
    train, _, _, _ = labelled_batch(prep, folder / "digits" / "train")
    calib = train[np.random.default_rng(0).permutation(len(train))[:calib_n]]
    sel = train[np.random.default_rng(1).permutation(len(train))[:64]]  # fallback's layer choice: never held out
    ref = reference_logits(model, x)
    torch_top1 = float((ref.argmax(1) == y).mean())
    rows, paths = [], {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-proxy-int8-") as work:
        work = Path(work)
        fp32 = export_onnx(model, work / "model.onnx", input_shape=(1, *x.shape[1:]))
        sim, _ = simplify_onnx(fp32, work / "model.sim.onnx")
        base = sim or fp32
        for preset in PRESETS:
            paths[preset] = quantize_int8(base, work / f"{preset}.onnx", calib, recipe=get_preset(preset), opset=17,
                                          progress=False).path
        for runtime in ("onnxruntime", "openvino"):
            if runtimes.availability()[runtime] is not None:
                continue
            outs = {}
            for preset, path in [("fp32", base.path), *paths.items()]:
                with runtimes.load(path, runtime=runtime, threads=threads) as rt:
                    outs[preset] = run_batched(rt, x, 1)
            fp32_top1 = float((outs["fp32"].argmax(1) == y).mean())
            for preset in PRESETS:
                row = {"family": family, "model": name, "preset": preset, "runtime": runtime, "kernels": "native",
                       "n": len(y), "torch_top1": torch_top1, "fp32_top1": fp32_top1,
                       **judge(ref, outs[preset], y, fp32_top1)}
                if row["delta_top1"] < -0.01:
                    dest = work / f"fallback-{preset}.onnx"
                    excluded, _ = fallback_for_budget(base.path, calib, sel, reference_logits(model, sel),
                                                         recipe=get_preset(preset), max_drop=0.01, threads=threads,
                                                         dest=dest)
                    with runtimes.load(dest, runtime=runtime, threads=threads) as rt:
                        fb = judge(ref, run_batched(rt, x, 1), y, fp32_top1)
                    row["fallback"] = {"max_drop": 0.01, "kept_in_float": excluded, **fb}
                rows.append(row)
                print(f"  {family} {preset} @ {runtime}: top-1 {row['fp32_top1']:.2%} -> {row['top1']:.2%}, "
                      f"cosine {row['cosine']:.4f}", file=sys.stderr, flush=True)
        if qemu_n and qemu.unavailable() is None:
            n = min(qemu_n, len(x))
            outs, seen = qemu.ort_outputs([base.path, *paths.values()], x[:n], timeout=3600)
            fp32_top1 = float((outs[0].argmax(1) == y[:n]).mean())
            for preset, out in zip(PRESETS, outs[1:]):
                rows.append({"family": family, "model": name, "preset": preset, "runtime": "onnxruntime",
                             "kernels": f"AVX2 (qemu -cpu {qemu.CPU})", "isa_seen": seen["cpu"]["isa"], "n": n,
                             "torch_top1": float((ref[:n].argmax(1) == y[:n]).mean()), "fp32_top1": fp32_top1,
                             **judge(ref[:n], out, y[:n], fp32_top1)})
                print(f"  {family} {preset} @ AVX2 under QEMU: top-1 {fp32_top1:.2%} -> {rows[-1]['top1']:.2%}",
                      file=sys.stderr, flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# int8 on trained proxies (digits, 64 px): fp32 vs int8 top-1 on held-out digits", "",
             "*Proxies*: zoo architectures trained here from scratch on scikit-learn's handwritten digits "
             "(benchmarks/train_proxies.py), not ImageNet networks.", "",
             f"Machine: {result['host'].get('cpu', {}).get('model', '?')}, native ISA "
             f"{', '.join(result['host'].get('cpu', {}).get('isa', []))} (native u8s8: int32 accumulation where "
             "VNNI is present); load average "
             f"{result['load_average']['start']:.1f} -> {result['load_average']['end']:.1f} (shared machine, "
             "8 busy helpers: training seconds are under that load). ARM kernels: not measured.", "",
             "## Proxies", "", "| family | model | held-out top-1 | epochs | train s (under load) | "
             "depthwise spread (median / max log10 max/median) |", "|---|---|---|---|---|---|"]
    for p in result["proxies"]:
        s = p.get("depthwise_spread", {})
        lines.append(f"| {p['family']} | {p['model']} | {p['top1']:.2%} on {p['held_out']} | {p['epochs']} | "
                     f"{p['train_seconds']:.0f} | {s.get('median_log10_max_over_median', '-')} / "
                     f"{s.get('max_log10_max_over_median', '-')} |")
    d = result.get("distilled")
    if d:
        ref, dig = d["reference_lite0_imagenet"], next((p for p in result["proxies"] if p["family"] == d["family"]), {})
        lines += ["", "## Which recipe gives ImageNet-like weights? (depthwise per-channel range spread, BN folded)",
                  "", "| weights | median / max over layers of log10(max / median channel range) |", "|---|---|",
                  f"| EfficientNet-Lite0, real ImageNet weights (reference) | {ref['median_log10_max_over_median']} / "
                  f"{ref['max_log10_max_over_median']} |"]
        if dig:
            s = dig["depthwise_spread"]
            lines.append(f"| {d['family']} proxy, digits | {s['median_log10_max_over_median']} / "
                         f"{s['max_log10_max_over_median']} |")
        s = d["depthwise_spread"]
        lines.append(f"| {d['family']}, distilled from Lite0 on {d['crops']} bundled-photo crops, {d['epochs']} epochs "
                     f"(train top-1 agreement {d['train_top1_agreement_with_teacher']:.0%}) | "
                     f"{s['median_log10_max_over_median']} / {s['max_log10_max_over_median']} |")
        if d.get("random_init"):
            s = d["random_init"]
            lines.append(f"| {d['family']}, random init | {s['median_log10_max_over_median']} / "
                         f"{s['max_log10_max_over_median']} |")
    lines += ["", "## int8", "", "| family | preset | runtime | kernels | n | fp32 top-1 | int8 top-1 | change | "
              "cosine | verdict | fallback (max drop 0.01) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        fb = r.get("fallback")
        fb_text = (f"{len(fb['kept_in_float'])} float: {', '.join(fb['kept_in_float'][:4])}; top-1 {fb['top1']:.2%}"
                   if fb else "")
        lines.append(f"| {r['family']} | {r['preset']} | {r['runtime']} | {r['kernels']} | {r['n']} | "
                     f"{r['fp32_top1']:.2%} | {r['top1']:.2%} | {r['delta_top1'] * 100:+.1f} pt | {r['cosine']:.4f} | "
                     f"{r['verdict']} | {fb_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("proxies", nargs="+", type=Path, help="folders written by benchmarks/train_proxies.py")
    ap.add_argument("--calib", type=int, default=128, help="calibration digits (train split)")
    ap.add_argument("--qemu", type=int, default=150, help="held-out digits run under QEMU (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--append", action="store_true",
                    help="keep the families already in benchmarks/results/int8_proxies.json that this run does not "
                         "measure (each row says when and under what load it was measured)")
    ap.add_argument("--distilled", type=Path, default=None,
                    help="a distill_spread record (train_proxies.py --distill-compare) to tabulate beside the proxies")
    args = ap.parse_args(argv)
    from edgecnn import hostinfo

    start, load_start = time.time(), os.getloadavg()[0]
    proxies, rows = [], []
    for folder in args.proxies:
        for record in json.loads((folder / "proxies.json").read_text())["proxies"]:
            proxies.append(record)
            if record["reached_target"]:
                measured = family_rows(record, folder, calib_n=args.calib, qemu_n=args.qemu, threads=args.threads)
                stamp = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         "load_average": os.getloadavg()[0]}
                rows += [{**r, **stamp} for r in measured]
    if args.append and (RESULTS / "int8_proxies.json").exists():
        old = json.loads((RESULTS / "int8_proxies.json").read_text())
        mine = {p["family"] for p in proxies}
        proxies = [p for p in old["proxies"] if p["family"] not in mine] + proxies
        rows = [r for r in old["rows"] if r["family"] not in mine] + rows
    result = {"host": hostinfo.host(), "versions": hostinfo.versions(), "proxies": proxies, "rows": rows,
              "seconds": time.time() - start,
              "load_average": {"start": load_start, "end": os.getloadavg()[0]},
              "notes": ["proxies: trained on digits, not ImageNet; held-out digits never trained on",
                        "ARM kernels not measured (no aarch64 worker in this branch)"]}
    if args.distilled:
        result["distilled"] = json.loads(args.distilled.read_text())
    elif args.append and (RESULTS / "int8_proxies.json").exists():
        result["distilled"] = json.loads((RESULTS / "int8_proxies.json").read_text()).get("distilled")
    table = markdown(result)
    save(RESULTS / "int8_proxies", result, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
