"""What cross-layer equalisation (CLE) and bias correction (BC) do to int8 fidelity, per model family.

    python benchmarks/int8_passes.py [--models mobilenet_v1,...] [--calib 128] [--eval 64] [--threads 2]

For each model: the u8s8 QDQ model (ONNX Runtime) with per-channel and with per-tensor weights,
each without either pass, with CLE, with BC and with both. Columns: logit cosine and top-1 agreement
on confident crops (max prob > 0.4) against the PyTorch original on held-out photos, and the
cosine with AVX2 pair saturation emulated. EfficientNet-Lite0 uses its real ImageNet weights; the
other families have seeded random weights with BatchNorm statistics estimated on real photos, so
their rows show how the passes behave on such weights, not how a trained model would fare.
Writes benchmarks/results/int8_passes.json and .md (atomically) and prints the table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("NNCF_CI", "1")
os.environ.setdefault("CI", "true")

from _results import RESULTS, save  # noqa: E402  (benchmarks/_results.py)

MODELS = ("efficientnet_lite0", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v1_g3",
          "shufflenet_v2_x1_0", "squeezenet1_1")
PASSES = ((False, False), (True, False), (False, True), (True, True))  # (equalize, bias_correction)


def measure(name: str, args) -> list[dict]:
    import edgecnn
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.models import preprocessing
    from edgecnn.exporters.int8 import get_preset, quantize_int8
    from edgecnn.exporters.saturation import emulated_logits
    from edgecnn.exporters.graph import logits
    from edgecnn.exporters.simplify import simplify_onnx
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.runtimes.torch import reference_logits
    from edgecnn.parity import compare

    weights = "imagenet" if name == "efficientnet_lite0" else None
    model = edgecnn.create_model(name, weights=weights)
    prep = preprocessing(model.edgecnn_spec, weights=weights)
    calib, x = calibration_batch(prep, args.calib), evaluation_batch(prep, args.eval)
    ref = reference_logits(model, x)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-passes-") as work:
        work = Path(work)
        fp32 = export_onnx(model, work / "model.onnx", input_shape=(1, 3, prep.resolution, prep.resolution))
        sim, _ = simplify_onnx(fp32, work / "model.sim.onnx")
        for per_channel in (True, False):
            for equalize, bc in PASSES:
                recipe = replace(get_preset("u8s8"), per_channel=per_channel, equalize=equalize, bias_correction=bc)
                t0 = time.time()
                q = quantize_int8(sim or fp32, work / "q.onnx", calib, recipe=recipe, opset=17, progress=False)
                seconds = time.time() - t0
                p = compare(ref, logits(q.path, x, args.threads), precision="int8")
                e = compare(ref, emulated_logits(q.path, x, threads=args.threads), precision="int8")
                rows.append({"model": name, "weights": weights or "random (BN on real photos)",
                             "per_channel": per_channel, "equalize": equalize, "bias_correction": bc,
                             "cosine": p.cosine, "top1_confident": p.top1_confident, "n_confident": p.n_confident,
                             "avx2_emulated_cosine": e.cosine, "quantize_s": seconds, "notes": q.notes})
                print(f"  {name} {'per-channel' if per_channel else 'per-tensor'} cle={equalize} bc={bc}: "
                      f"cosine {p.cosine:.4f}", file=sys.stderr, flush=True)
    return rows


def _top1(r: dict) -> str:
    return f"{r['top1_confident']:.1%} (n={r['n_confident']})" if r["n_confident"] else "- (n=0)"


def markdown(result: dict) -> str:
    cpu = result["host"]["cpu"]
    lines = ["# int8: cross-layer equalisation (CLE) and bias correction (BC), per family", "",
             f"u8s8 QDQ on ONNX Runtime; {result['calibration']} calibration crops, {result['evaluation']} held-out "
             f"crops; {cpu['model']} ({', '.join(cpu['isa'])}). Only efficientnet_lite0 has trained weights; the "
             "others are random with BatchNorm estimated on real photos (their top-1 is near-tied noise; random "
             "SqueezeNet's logits are nearly the same for every photo, cosine >= 0.998 to their mean, so its "
             "cosine near 1 says nothing; random ShuffleNet v1 has no confident crops). "
             "'AVX2 emu': cosine with int16 pair saturation emulated.", "",
             "| model | int8 weights | CLE | BC | cosine | top-1 (confident) | AVX2 emu cosine | quantize s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        trained = " (ImageNet)" if r["weights"] == "imagenet" else ""
        lines.append(f"| {r['model']}{trained} | {'per-channel' if r['per_channel'] else 'per-tensor'} "
                     f"| {'yes' if r['equalize'] else '-'} | {'yes' if r['bias_correction'] else '-'} "
                     f"| {r['cosine']:.4f} | {_top1(r)} "
                     f"| {r['avx2_emulated_cosine']:.4f} | {r['quantize_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--eval", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from edgecnn import hostinfo

    t0 = time.time()
    rows = [r for name in args.models.split(",") for r in measure(name.strip(), args)]
    result = {"calibration": args.calib, "evaluation": args.eval, "threads": args.threads, "host": hostinfo.host(),
              "versions": hostinfo.versions(), "seconds": time.time() - t0, "rows": rows}
    table = markdown(result)
    save(RESULTS / "int8_passes", result, table)
    print(table)
    return result


if __name__ == "__main__":
    main()
