"""int8 and fp32 fidelity on ARM's real kernels: ONNX Runtime and OpenVINO aarch64 wheels under QEMU user mode.

    python benchmarks/arm_fidelity.py [--models efficientnet_lite0,mobilenet_v2,...] [--eval 4] [--calib 32]
                                      [--cpus cortex-a72,cortex-a76,max,sve=off] [--resolution 224]

The sibling of int8_fidelity.py (its x86 AVX2 / VNNI tables): the same held-out crops
(``evaluation_batch``) and calibration crops (``calibration_batch``), the same metrics (logit cosine and
top-1 agreement on confident crops against the PyTorch original), on the aarch64 kernels that
``qemu-aarch64 -cpu CPU`` makes the wheels dispatch (edgecnn.qemu_arm: the real PyPI wheels on a Debian
arm64 sysroot, nothing built from source). Emulation is ~150x slower than native, so few crops: a row's
exactness (``vs x86``: against this host's own ONNX Runtime, int32 accumulation with VNNI; ``vs emulator``:
against edgecnn's emulator of the QDQ graph with int32 accumulation) says more than its cosine vs PyTorch.
QEMU timings mean nothing and none is reported. Models without installed or cached ImageNet weights run with
random weights (said per row): their kernels' exactness is measured all the same.
OpenVINO rows: fp32 with INFERENCE_PRECISION_HINT f32 (what edgecnn's runtime sets), the int8 routes as IR,
with the convolutions counted by the precision the plugin ran them in (its runtime model).
Writes benchmarks/results/arm_fidelity.json and .md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NNCF_CI", "1")
os.environ.setdefault("CI", "true")

from _results import RESULTS, save  # noqa: E402  (benchmarks/_results.py)

# the cheap random-weight ones first: the table is saved after each model
MODELS = ("mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0", "mobilenet_v3_large", "efficientnet_lite0")
CPUS = ("cortex-a72", "cortex-a76", "max,sve=off")
KERNELS = {"cortex-a72": "Cortex-A72 (Raspberry Pi 4): no dot-product; ORT int8: S8S8 NEON (int16 pair sums)",
           "cortex-a76": "Cortex-A76 (stand-in for the Jetson Orin's A78AE): dot-product + fp16; ORT int8: UDOT/SDOT",
           "max,sve=off": "QEMU max without SVE (Apple-silicon-like): dot-product + i8mm + bf16; ORT int8: UMMLA/SMMLA"}
ONNX = ("fp32", "u8s8", "s8s8")


def metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    from edgecnn.parity import compare

    p = compare(ref, out, precision="int8")
    return {"cosine": p.cosine, "top1_confident": p.top1_confident, "n_confident": p.n_confident, "top1": p.top1}


def convs(exec_: dict) -> dict:
    """Convolutions / FullyConnected by runtime precision, and how many ran on reference kernels."""
    out: dict[str, int] = {}
    for layer in ("Convolution", "FullyConnected", "MatMul"):
        for key, n in (exec_ or {}).get(layer, {}).items():
            primitive, precision = key.rsplit("/", 1)
            p = {"u8": "int8", "i8": "int8"}.get(precision, precision)
            out[p] = out.get(p, 0) + n
            if primitive.startswith("ref"):
                out["ref"] = out.get("ref", 0) + n
    return out


def one_model(name: str, args, work: Path) -> list[dict]:
    import edgecnn
    from edgecnn import qemu_arm
    from edgecnn.artifact import describe
    from edgecnn.data import calibration_batch, evaluation_batch
    from edgecnn.exporters.int8 import get_preset, quantize_int8
    from edgecnn.exporters.openvino import convert_ir
    from edgecnn.exporters.saturation import emulated_logits
    from edgecnn.exporters.torch_onnx import export_onnx
    from edgecnn.models import preprocessing
    from edgecnn.runtimes import load
    from edgecnn.runtimes.torch import reference_logits

    try:
        model, weights = edgecnn.create_model(name, weights="imagenet"), "imagenet"
    except Exception as e:  # noqa: BLE001 - offline and not cached: random init, said per row
        print(f"{name}: {str(e).splitlines()[0][:160]}; random weights", file=sys.stderr)
        model, weights = edgecnn.create_model(name, weights="random"), "random"
    res = args.resolution or (224 if weights == "imagenet" else 96)
    prep = preprocessing(model.edgecnn_spec, weights=weights if weights == "imagenet" else None, resolution=res)
    x, calib = evaluation_batch(prep, args.eval), calibration_batch(prep, args.calib)
    ref = reference_logits(model, x)
    d = work / name
    fp32 = export_onnx(model, d / "model.onnx", input_shape=(1, 3, prep.resolution, prep.resolution))
    onnx = {"fp32": fp32.path}
    for preset in ONNX[1:]:
        onnx[preset] = quantize_int8(fp32, d / f"model.{preset}.onnx", calib, recipe=get_preset(preset), opset=17,
                                     progress=False).path
    irs = {k: convert_ir(describe(p, stage=k, precision="fp32" if k == "fp32" else "int8", parent=None),
                         d / f"ov.{k}.xml", precision="fp32" if k == "fp32" else "int8").path for k, p in onnx.items()}
    exact = {k: emulated_logits(p, x, saturate=False) for k, p in onnx.items() if k != "fp32"}
    host = {}
    for k, p in onnx.items():
        with load(p, runtime="onnxruntime", threads=1, precision="fp32" if k == "fp32" else "int8") as rt:
            host[k] = np.concatenate([rt.run(x[i:i + 1]) for i in range(len(x))])
    rows = []
    for k in onnx:
        rows.append({"model": name, "weights": weights, "resolution": res, "cpu": "x86 host", "runtime": "onnxruntime",
                     "artifact": k, **metrics(ref, host[k]),
                     "vs_exact_max_abs": float(np.abs(host[k] - exact[k]).max()) if k in exact else None})
    for cpu in args.cpus:
        t0 = time.time()
        outs, seen = qemu_arm.ort_outputs([onnx[k] for k in onnx], x, cpu=cpu, timeout=7200)
        for k, out in zip(onnx, outs):
            rows.append({"model": name, "weights": weights, "resolution": res, "cpu": cpu, "runtime": "onnxruntime",
                         "artifact": k, **metrics(ref, out),
                         "vs_exact_max_abs": float(np.abs(out - exact[k]).max()) if k in exact else None,
                         "vs_x86_max_abs": float(np.abs(out - host[k]).max()),
                         "isa_process": seen.get("cpu", {}).get("isa_process"), "qemu": seen.get("qemu")})
        if not args.ov_eval:
            print(f"{name} on {cpu}: {time.time() - t0:.0f} s (no OpenVINO)", file=sys.stderr, flush=True)
            continue
        outs, seen = qemu_arm.ov_outputs([irs[k] for k in irs], x[: args.ov_eval], cpu=cpu, hint="f32", timeout=7200)
        for k, out, run in zip(irs, outs, seen.get("runs", [{}] * len(irs))):
            row = {"model": name, "weights": weights, "resolution": res, "cpu": cpu, "runtime": "openvino",
                   "artifact": k if k == "fp32" else f"{k} QDQ IR", "n": args.ov_eval, "error": run.get("error"),
                   "inference_precision": run.get("inference_precision"), "convs": convs(run.get("exec"))}
            if out is not None:
                row.update(metrics(ref[: args.ov_eval], out))
                if k in exact:
                    row["vs_exact_max_abs"] = float(np.abs(out - exact[k][: args.ov_eval]).max())
            rows.append(row)
        print(f"{name} on {cpu}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# int8 and fp32 on ARM's real kernels (QEMU user mode, the real aarch64 wheels)", "",
             result["setup"], "", "| CPU model | what it stands for | ISA the process saw (HWCAP) |", "|---|---|---|"]
    isa = {r["cpu"]: r.get("isa_process") for r in result["rows"] if r.get("isa_process")}
    lines += [f"| `{c}` | {KERNELS.get(c, c)} | {', '.join(isa.get(c) or []) or '-'} |" for c in result["cpus"]]
    lines += ["", "## ONNX Runtime", "",
              "'vs emulator': largest logit difference from edgecnn's emulator of the same QDQ graph with int32 "
              "accumulation (exporters/saturation.py, no saturation; the logits are themselves quantized, so one "
              "output step is the smallest difference there is); 'vs x86': from this host's own ONNX Runtime "
              "(AVX-512 VNNI: int32 accumulation), 0 = bit-identical.", "",
              "| model (weights, px) | CPU | artifact | cosine / top-1 confident / top-1 all | vs emulator | vs x86 |",
              "|---|---|---|---|---|---|"]

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    def fid(r):
        conf = f"{r['top1_confident']:.0%} (n={r['n_confident']})" if r["n_confident"] else "- (n=0)"
        return f"{r['cosine']:.4f} / {conf} / {r['top1']:.0%}"

    for r in result["rows"]:
        if r["runtime"] != "onnxruntime":
            continue
        lines.append(f"| {r['model']} ({r['weights']}, {r['resolution']}) | {r['cpu']} | {r['artifact']} | "
                     f"{fid(r)} | {f(r.get('vs_exact_max_abs'), '.3g')} | {f(r.get('vs_x86_max_abs'), '.3g')} |")
    lines += ["", "## OpenVINO", "", "convs: convolutions and fully connected layers by the precision the plugin ran "
              "them in (its runtime model); ref: on reference kernels.", "",
              "| model | CPU | artifact | compiles | inference precision | convs | cosine / top-1 conf. / all | vs emulator |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["runtime"] != "openvino":
            continue
        ok = "no: " + r["error"][-80:] if r.get("error") else "yes"
        lines.append(f"| {r['model']} | {r['cpu']} | {r['artifact']} | {ok} | {r.get('inference_precision') or '-'} | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(r['convs'].items())) or '-'} | "
                     + (fid(r) if "cosine" in r
                        else "-") + f" | {f(r.get('vs_exact_max_abs'), '.3g')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cpus", default=";".join(CPUS), help="';'-separated QEMU CPU models")
    ap.add_argument("--eval", type=int, default=2, help="held-out crops (ONNX Runtime)")
    ap.add_argument("--ov-eval", type=int, default=1, help="of those, run on OpenVINO (3-10x slower; 0: ONNX Runtime only)")
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=None,
                    help="default: 224 with ImageNet weights, 96 with random ones (emulation time)")
    ap.add_argument("--out", default=str(RESULTS / "arm_fidelity"))
    ap.add_argument("--merge", nargs="+", help="JSON files of earlier runs (e.g. one per CPU, run in parallel): "
                    "their rows in one table, nothing run")
    args = ap.parse_args(argv)
    if args.merge:
        import json

        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        seen, rows = set(), []
        for part in parts:
            for r in part["rows"]:
                key = (r["model"], r["cpu"], r["runtime"], r["artifact"])
                if key not in seen:
                    seen.add(key)
                    rows.append(r)
        rows.sort(key=lambda r: (r["runtime"], r["model"], r["cpu"] != "x86 host", r["cpu"]))
        result = {"setup": " | ".join(dict.fromkeys(p["setup"] for p in parts)),
                  "cpus": list(dict.fromkeys(c for p in parts for c in p["cpus"])), "rows": rows}
        save(args.out, result, markdown(result))
        print(markdown(result))
        return result
    args.cpus = [c for c in args.cpus.split(";") if c]
    from edgecnn import qemu_arm

    reason = qemu_arm.unavailable()
    if reason:
        sys.exit(f"arm_fidelity: {reason}")
    t0, load0 = time.time(), os.getloadavg()[0]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-arm-fidelity-") as work:
        for name in [m for m in args.models.split(",") if m]:
            rows += one_model(name, args, Path(work))
            result = summary(args, rows, t0, load0)
            save(args.out, result, markdown(result))
    print(markdown(result))
    return result


def summary(args, rows: list[dict], t0: float, load0: float) -> dict:
    from edgecnn import hostinfo

    cpu = hostinfo.cpu_info()
    qemu = next((r.get("qemu") for r in rows if r.get("qemu")), "qemu-aarch64")
    versions = hostinfo.versions()
    setup = (f"{args.eval} held-out crops (OpenVINO: the first {args.ov_eval}), {args.calib} calibration crops, batch 1, "
             f"1 thread; host {cpu.get('model')} (ISA {', '.join(cpu.get('isa_process') or cpu.get('isa') or [])}); "
             f"ONNX Runtime {versions.get('onnxruntime')}, OpenVINO {versions.get('openvino')} (the same versions' "
             f"aarch64 wheels under {qemu}); "
             f"int8: QDQ, per-channel weights, bias correction, from the unsimplified ONNX; machine load "
             f"(1-minute average) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {time.time() - t0:.0f} s")
    return {"setup": setup, "cpus": args.cpus, "rows": rows}


if __name__ == "__main__":
    main()
