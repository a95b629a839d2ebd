"""Issue 17's ten deliberate bugs: apply each to the code, run the fast tests that should notice, put the code back.

    python benchmarks/deliberate_bugs.py          # all ten (a few minutes on 2 cores)
    python benchmarks/deliberate_bugs.py 0 4      # by index

Each bug is one text replacement in one file (checked to match exactly once, so a refactor that moves the code
is reported, not silently skipped); the file's original text is written back whatever happens. A bug is
*noticed* when at least one test fails. Writes benchmarks/results/deliberate_bugs.json, which
benchmarks/mutation.py shows in mutation.md under "The issue's ten deliberate bugs" (run
``python benchmarks/mutation.py --report`` after this to refresh the table). Not part of CI (.ci/run).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _results import RESULTS, save_json  # noqa: E402  (benchmarks/_results.py)

ROOT = Path(__file__).resolve().parent.parent
FAST = ["tests/test_blind_spots.py", "tests/test_parity_metrics.py", "tests/test_int8_recipes.py",
        "tests/test_pipeline_decisions.py", "tests/test_onnxruntime_options.py", "tests/test_model_fingerprints.py",
        "tests/test_model_options.py", "tests/test_failed_artifacts.py"]
# (the bug as the issue names it, file, original text, buggy text, extra tests to run)
BUGS = [
    ("the cosine threshold is never checked", "edgecnn/parity.py",
     "    if tol.cosine is not None and r.cosine < tol.cosine:",
     "    if False and tol.cosine is not None and r.cosine < tol.cosine:", []),
    ("cosine computed over the wrong axis", "edgecnn/parity.py",
     "cos = np.sum(ref * out, 1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-30)",
     "cos = np.sum(ref * out, 0) / np.maximum(np.linalg.norm(ref, axis=0) * np.linalg.norm(out, axis=0), 1e-30)", []),
    ("cosine always 1.0", "edgecnn/parity.py", "cosine=float(cos.mean())", "cosine=1.0", []),
    ("int8 tolerances loosened to 0.5", "edgecnn/parity.py",
     '"int8": cls(cosine=0.98, top1_confident=0.97)', '"int8": cls(cosine=0.5, top1_confident=0.5)', []),
    ("--int8-preset ignored (always u8s8)", "edgecnn/cli.py", "recipe_for(args.int8_preset,", 'recipe_for("u8s8",', []),
    ("--max-drop fallback computed but not applied", "edgecnn/pipeline/run.py",
     "                r, note = self.sensitivity_fallback(base, stage, recipe, note)",
     "                _, note = self.sensitivity_fallback(base, stage, recipe, note)",
     ["tests/test_export.py::test_max_drop_fallback_keeps_the_chosen_layer_in_float"]),
    ("OpenVINO int8 default = always the first route", "edgecnn/pipeline/select.py",
     "return max(ok, key=score)[0] if ok else None", "return ok[0][0] if ok else None", []),
    ("ONNX Runtime ignores threads", "edgecnn/backends/onnxruntime.py",
     "        opts.intra_op_num_threads = threads\n", "        pass\n", []),
    ("ONNX Runtime ignores the requested provider/device", "edgecnn/runtimes/onnxruntime.py",
     "providers=wanted)", 'providers=PROVIDERS["cpu"])', []),
    ("ShuffleNet v1 channel shuffle is a no-op", "edgecnn/models/shufflenet_v1.py",
     "    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)\n    return x.reshape(b, c, h, w)",
     "    return x", []),
]


def run(index: int) -> dict:
    bug, path, old, new, extra = BUGS[index]
    file = ROOT / path
    text = file.read_text()
    if text.count(old) != 1:
        return {"bug": bug, "where": path, "noticed": None, "failed": [], "why": "the original text is not there once"}
    try:
        file.write_text(text.replace(old, new))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-rf",
                            *FAST, *extra], cwd=ROOT, capture_output=True, text=True)
    finally:
        file.write_text(text)
    failed = [line.split(" ")[1] for line in r.stdout.splitlines() if line.startswith("FAILED ")]
    return {"bug": bug, "where": path, "change": f"{old.strip()} -> {new.strip()}", "noticed": bool(failed),
            "failed": failed, "summary": (r.stdout.strip().splitlines() or [""])[-1]}


def main() -> int:
    wanted = [int(a) for a in sys.argv[1:]] or range(len(BUGS))
    rows = []
    for i in wanted:
        rows.append(run(i))
        print(f"{rows[-1]['bug']}: {'noticed by ' + str(len(rows[-1]['failed'])) + ' test(s)' if rows[-1]['noticed'] else 'NOT noticed'}",
              flush=True)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tests": FAST, "bugs": rows}
    save_json(RESULTS / "deliberate_bugs.json", out)
    return 0 if all(r["noticed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
