"""What precision the int8 artifacts actually ran in: the execution record of each export folder's int8 rows.

Export each model once per preset first (the exports measure and record everything; this only reads them):

    for p in u8s8 u8s8-saturation-aware u8s8-reduce-range s8s8; do
      edgecnn export mobilenet_v2 --int8 --int8-preset $p --targets onnxruntime,openvino --calib-size 32 \\
          --out /tmp/int8x/mobilenet_v2-$p; done
    python benchmarks/int8_executed.py /tmp/int8x/*-*

Writes benchmarks/results/int8_executed.{json,md}: per model, preset and int8 artifact x runtime, the share of
the MACs that ran in int8 (and in float), and what ran off int8, from each folder's manifest.json.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, save  # noqa: E402


def _off(record: dict) -> str:
    counts = Counter(f"{o['op'].split(' -> ')[-1].split(' (')[0]} {o['ran']}" for o in record.get("off_precision", []))
    unmapped = f"{record['unmapped_macs']:.1%} of MACs not found in what ran" if record.get("unmapped_macs") else ""
    return ", ".join([*(f"{n} {k}" for k, n in counts.most_common()), *([unmapped] if unmapped else [])]) or "-"


def main(folders: list[str]) -> None:
    from edgecnn import hostinfo
    from edgecnn.manifest import Manifest

    rows = []
    for folder in folders:
        m = Manifest.load(folder)
        preset = (m.config.get("int8_recipe") or {}).get("preset") or m.config.get("int8_preset") or "?"
        for key, r in m.results.items():
            if r.precision != "int8" or not r.executed or "macs" not in r.executed:
                continue
            rows.append({"model": m.model, "preset": preset, "artifact": key, "runtime": r.runtime,
                         "macs": r.executed["macs"], "total_macs": r.executed.get("total_macs"),
                         "off": _off(r.executed), "source": r.executed.get("source"), "flag": r.low_int8})
    cpu = hostinfo.cpu_info()
    machine = f"{cpu.get('model')}; ISA seen by the process: {', '.join(cpu.get('isa') or [])}"
    lines = ["# int8 artifacts: the share of their multiply-adds that ran in int8", "",
             f"Machine: {machine}. Read back from what each runtime compiled (edgecnn/runtimes/executed.py): ONNX "
             "Runtime's optimized model, OpenVINO's runtime model (inference precision hint f32, as edgecnn "
             "sets it). Random-init weights (the fusions do not depend on the weights), 224 px, batch 1. "
             "Flagged below 90% int8 (edgecnn/results.py MIN_INT8_SHARE). 'off int8': the layers with MACs that "
             "ran in float and, on ONNX Runtime, the zero-MAC operators the QDQ model asked for in int8 (DQ on "
             "their inputs, Q on their output) that were left in float; on OpenVINO only layers with MACs are "
             "classified. `int8` is the ONNX artifact's row on ONNX Runtime; the OpenVINO rows are the IRs of "
             "the two OpenVINO routes.", "",
             "| model | preset | artifact | runtime | int8 | fp32 | bf16 | fp16 | off int8 (operators) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["macs"]
        lines.append(f"| {r['model']} | {r['preset']} | {r['artifact']} | {r['runtime']} | {s['int8']:.1%} | "
                     f"{s['fp32']:.1%} | {s['bf16']:.1%} | {s['fp16']:.1%} | {r['off']} |")
    lines += ["", "Sources: " + "; ".join(sorted({r["source"] for r in rows if r["source"]})), ""]
    save(RESULTS / "int8_executed", {"machine": machine, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
