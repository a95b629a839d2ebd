"""What `edgecnn export MODEL --int8` costs on top of the bare library calls it wraps.

Bare: torch.onnx.export + onnxsim.simplify + onnxruntime quantize_static + openvino convert_model/
save_model of the fp32 and QDQ models + nncf.quantize of the fp32 IR (the second int8 route edgecnn
builds) + compile_model of the three IRs (same calibration inputs, in-process, no checks).
edgecnn: run_export(int8, targets onnxruntime+openvino): the same calls plus model creation,
held-out parity on every artifact, quick latency, hashes and the manifest.
Both run in one process, one after another, warm (a first throwaway run loads the libraries).

    python benchmarks/export_overhead.py [MODEL] [--repeat N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _results import save_json  # benchmarks/_results.py


def bare(model_name: str, work: Path, calib: np.ndarray) -> float:
    import nncf
    import onnx
    import onnxsim
    import openvino as ov
    import torch
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    import edgecnn

    model = edgecnn.create_model(model_name)  # not timed: both sides need the model
    spec = model.edgecnn_spec

    class Reader:
        def __init__(self):
            self.it = iter(calib[i: i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, spec.resolution, spec.resolution),), str(work / "m.onnx"),
                          dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"])
    with contextlib.redirect_stdout(io.StringIO()):
        sim, _ = onnxsim.simplify(onnx.load(str(work / "m.onnx")))
    onnx.save(sim, str(work / "m.sim.onnx"))
    quantize_static(str(work / "m.sim.onnx"), str(work / "m.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    for src, dst in (("m.sim.onnx", "m.xml"), ("m.int8.onnx", "m.int8.xml")):
        ov.save_model(ov.convert_model(str(work / src)), str(work / dst), compress_to_fp16=False)
    core = ov.Core()
    quantized = nncf.quantize(core.read_model(str(work / "m.xml")), nncf.Dataset([calib[i: i + 1] for i in range(len(calib))]),
                              subset_size=len(calib))
    ov.save_model(quantized, str(work / "m.nncf.xml"), compress_to_fp16=False)
    for xml in ("m.xml", "m.int8.xml", "m.nncf.xml"):
        core.compile_model(str(work / xml), "CPU")
    return time.perf_counter() - t0


def wrapped(model_name: str, work: Path, calib_size: int) -> float:
    from edgecnn.pipeline import ExportConfig, run_export

    t0 = time.perf_counter()
    run_export(ExportConfig(model=model_name, int8=True, calib_size=calib_size, targets=("onnxruntime", "openvino"),
                            out=str(work / "edgecnn"), force=True, progress=False, threads=2), log=lambda _m: None)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="mobilenet_v2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--json", default="benchmarks/results/export_overhead.json")
    args = ap.parse_args()

    from edgecnn import hostinfo
    from edgecnn.data import calibration_batch
    from edgecnn.models import get_spec, preprocessing

    calib = calibration_batch(preprocessing(get_spec(args.model)), args.calib_size)
    bare_s, ours_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bare(args.model, work, calib)  # warm-up: library imports and first-call costs
        for _ in range(args.repeat):
            bare_s.append(bare(args.model, work, calib))
            ours_s.append(wrapped(args.model, work, args.calib_size))
    b, o = float(np.median(bare_s)), float(np.median(ours_s))
    result = {"model": args.model, "calib_size": args.calib_size, "repeat": args.repeat, "bare_s": bare_s,
              "edgecnn_s": ours_s, "bare_median_s": b, "edgecnn_median_s": o, "ratio": o / b,
              "host": hostinfo.host()["cpu"], "versions": hostinfo.versions()}
    print(f"{args.model}: bare library calls {b:.1f} s, edgecnn export --int8 {o:.1f} s, ratio {o / b:.2f}x "
          f"(median of {args.repeat}; {result['host']['model']}, {result['host']['cores']} cores)")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
