"""The README's commands, as written.

- The walkthrough ("Deploy your own fine-tuned model"): every block marked ``<!-- readme-test -->`` is run
  verbatim, in order, in an empty folder, with this Python's ``python`` and ``edgecnn`` first on PATH; each
  must exit 0, and what the text says of the result is checked (accuracy, int8 within a point, check
  judging on the export's images, predictions, metadata).
- Every ``edgecnn ...`` line anywhere in the README parses with the real argparse (a concrete command in
  full, a synopsis by its option names): an option renamed or removed breaks this test, not a user.
- Every command line of the README is accounted for: run here, run by the slow test, or not run and why.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.cli import build_parser
from edgecnn.manifest import Manifest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-test -->"


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """``(kind, code)`` of each block after a MARKER: a fenced ```python block ('python') or an indented
    block ('shell'), in README order."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        if lines[i].startswith("```python"):
            end = lines.index("```", i + 1)
            blocks.append(("python", "\n".join(lines[i + 1:end]) + "\n"))
            i = end + 1
        elif lines[i].startswith("    "):
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append(("shell", "\n".join(body).strip() + "\n"))
        else:
            raise AssertionError(f"README line {i + 1}: {MARKER} is not followed by a code block")
    return blocks


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _run(kind: str, code: str, cwd: Path, n: int) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "200"}
    if kind == "python":
        script = cwd / f"readme_block_{n}.py"
        script.write_text(code)
        argv = [sys.executable, script.name]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", code]
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, (
        f"README block {n} ({kind}) exited {r.returncode}:\n{code}\n--- stdout\n{r.stdout[-3000:]}\n"
        f"--- stderr\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    text = README.read_text(encoding="utf-8")
    section = _section(text, "Deploy your own fine-tuned model")
    blocks = marked_blocks(section)
    assert len(blocks) == 6, [code.splitlines()[0] for _, code in blocks]  # train, export, check, predict, meta, API
    assert marked_blocks(text) == blocks  # every marked block is in the walkthrough
    cwd = tmp_path_factory.mktemp("readme")
    outputs = [_run(kind, code, cwd, n) for n, (kind, code) in enumerate(blocks)]
    return cwd, section, outputs


def test_walkthrough_export_reads_as_the_readme_says(walkthrough):
    cwd, section, outputs = walkthrough
    export = outputs[1].stdout
    assert "labels: 10 from labels.txt" in export
    m = Manifest.load(cwd / "out" / "lenet5_digits")
    assert m.config["num_classes"] == 10 and m.labels == [str(d) for d in range(10)]
    original = m.evaluation["accuracy"]
    assert m.evaluation["n"] == original["n"] == 450  # the 450 held-out digits, each once
    said = float(re.search(r"the original scores ([\d.]+)% on the\s+450 held-out digits", section).group(1)) / 100
    assert original["top1"] > 0.9 and abs(original["top1"] - said) <= 0.01, (original, said)  # far above chance (10%)
    int8 = [k for k, r in m.results.items() if r.precision == "int8"]
    assert int8, list(m.results)
    for key, res in m.results.items():
        assert res.ok and res.advisory is None, (key, res.verdict)  # trained weights: int8 judged, and passes
        assert abs(res.accuracy["delta_top1"]) <= 0.01, (key, res.accuracy)  # "every artifact ... within a point"
    low, high = (float(v) / 100 for v in re.search(r"\(int8\s+([\d.]+)-([\d.]+)%\)", section).groups())
    assert all(low - 0.01 <= m.results[k].accuracy["top1"] <= high + 0.01 for k in int8)
    agree = re.search(r"on (\d+)-(\d+) of 450\s+confident digits", section).groups()  # "449-450 of 450"
    assert all(int(agree[0]) - 3 <= m.results[k].parity.n_agree <= 450 for k in int8), (
        agree, {k: m.results[k].parity.agreement() for k in int8})
    assert "acc@1" in export


def test_walkthrough_check_judges_on_the_exports_images(walkthrough):
    cwd, _, outputs = walkthrough
    report = json.loads((cwd / "check.json").read_text())
    assert report["passed"] is True and report["n_images"] == 450
    assert report["images"] == str((cwd / "data" / "val").resolve())
    rows = list(csv.DictReader((cwd / "check.csv").open()))
    assert len(rows) == len(report["results"]) and all(
        int(r["n_agree"]) >= 0.97 * int(r["n_confident"]) > 0 and float(r["top1_upper"] or 1) >= 0.97 for r in rows), rows
    assert "bundled photos" not in outputs[2].stdout


def test_walkthrough_predicts_and_shows_its_metadata(walkthrough):
    _, _, outputs = walkthrough
    rows = re.findall(r"data/val/(\d)/0\.png[\s│]+1[\s│]+(\S+)", outputs[3].stdout)  # any table style
    assert rows == [("3", "3"), ("7", "7")], outputs[3].stdout  # each digit's top-1 is its own class
    meta = outputs[4].stdout
    assert "edgecnn.labels" in meta and "edgecnn.preprocessing" in meta and "onnxsim" not in meta


def test_walkthrough_python_api(walkthrough):
    cwd, _, outputs = walkthrough
    lines = outputs[5].stdout.strip().splitlines()
    assert lines[-1] == f"True {(cwd / 'data' / 'val').resolve()}", lines[-3:]
    assert lines[-2].startswith("True {'n': 450, 'top1': "), lines[-3:]


# --- every edgecnn line parses ---------------------------------------------------------------------
def readme_commands(text: str) -> list[tuple[int, str]]:
    """``(line, command)`` for every line of a code block that runs something (continuations joined,
    comments dropped), with the synopsis lines of ``edgecnn CMD [...]`` joined to their bracket lines."""
    out: list[tuple[int, str]] = []
    lines, fence, start, pending = text.splitlines(), None, 0, ""
    for n, line in enumerate(lines, 1):
        if line.startswith("```"):
            fence = None if fence is not None else line.strip()[3:] or "text"
            continue
        if fence is not None and fence not in ("bash", "sh", "shell", "text"):
            continue  # python and other languages: the marked python blocks are run by the walkthrough test
        code = line if fence else line[4:] if line.startswith("    ") else None
        if code is None or (not pending and not code.strip()):
            continue
        if pending and re.match(r"\s+\[", code):  # a synopsis continued on the next line
            pending += " " + code.strip()
            continue
        if pending and not pending.endswith("\\"):
            out.append((start, pending))
            pending = ""
        body = code.split("  #")[0].rstrip() if not code.lstrip().startswith("#") else ""
        if pending:
            pending = pending[:-1] + " " + body.strip()
        elif re.match(r"(edgecnn|python3?|pip|uv|nice) ", body.strip()):
            start, pending = n, body.strip()
    if pending:
        out.append((start, pending))
    return out


def _subparsers() -> dict:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def _edgecnn_parts(command: str) -> list[list[str]]:
    """The ``edgecnn ...`` invocations inside one command line (after ``&&`` too)."""
    parts = []
    for piece in re.split(r"&&|;", command):
        if piece.strip().startswith("edgecnn "):
            parts.append(shlex.split(piece.strip())[1:])
    return parts


def test_every_edgecnn_line_of_the_readme_parses():
    parsers, seen = _subparsers(), 0
    for line, command in readme_commands(README.read_text(encoding="utf-8")):
        for words in _edgecnn_parts(command):
            seen += 1
            sub = parsers[words[0]]
            options = {o for a in sub._actions for o in a.option_strings}
            used = {w.split("=")[0] for w in re.findall(r"--[a-z0-9][a-z0-9-]*", " ".join(words))}
            assert used <= options, f"README line {line}: `edgecnn {words[0]}` has no {sorted(used - options)}"
            if "[" in command or "..." in command or "<" in command:
                continue  # a synopsis or a fragment: its option names are checked, not its values
            try:
                sub.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"README line {line}: `edgecnn {' '.join(words)}` does not parse")
    assert seen >= 20, seen


# --- every command line is accounted for -----------------------------------------------------------
WALKTHROUGH = "run verbatim by test_walkthrough_* (marked <!-- readme-test -->)"
SLOW = "run verbatim by test_cpu_commands_of_the_readme (slow)"
NOT_RUN = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0": "a fresh-machine install",
    "pip install torch==2.13.0 --index-url": "installs torch (PyTorch's CPU index: not reachable from CI)",
    "pip install -e '.[openvino,test,mutation]'": "mutation testing: half an hour",
    "edgecnn export MODEL": "a synopsis (parsed above)",
    "edgecnn list [": "a synopsis (parsed above)",
    "edgecnn info NAME": "a synopsis (parsed above)",
    "edgecnn check OUT_DIR": "a synopsis (parsed above)",
    "edgecnn predict OUT_DIR": "a synopsis (parsed above)",
    "edgecnn bench OUT_DIR": "a synopsis (parsed above)",
    "edgecnn report RESULTS.json": "a synopsis (parsed above)",
    "edgecnn export heads.py:build": "needs the user's heads.py and head.pth (tests/test_own_models.py runs one)",
    "edgecnn export timm:create_model": "needs timm and the user's checkpoint (tests/test_own_models.py)",
    "edgecnn export model.pt2 ...": "a fragment",
    "edgecnn export model.onnx ...": "a fragment",
    "edgecnn export mobilenet_v2 --fp16 --int8 --targets onnxruntime,tensorrt": "needs an NVIDIA GPU",
    "edgecnn bench edgecnn_out/mobilenet_v2 --label \"RTX": "needs an NVIDIA GPU",
    "edgecnn export mobilenet_v2 --int8 --fp16 --targets onnxruntime,tensorrt": "needs a Jetson",
    "edgecnn bench edgecnn_out/mobilenet_v2 --label \"Jetson": "needs a Jetson",
    "python3 -m venv --system-site-packages": "a Jetson install",
    "pip install <NVIDIA's torch wheel": "a Jetson install",
    "python benchmarks/validate_tensorrt.py": "needs TensorRT",
    "edgecnn check edgecnn_out/mobilenet_v2 --emulate": "qemu-aarch64 and a sysroot build (tests/test_arm_kernels.py "
                                                        "runs check --emulate on a 64 px export)",
    "python benchmarks/train_proxies.py --out proxies": "trains a proxy: minutes (tests/test_proxies.py trains the "
                                                         "same one through edgecnn.models.proxies)",
    "edgecnn export mobilenet_v3_small --weights proxies/": "tests/test_proxies.py runs this export on the proxy it "
                                                            "trained",
    "edgecnn sweep MODEL": "a synopsis (parsed above)",
    "pip install 'edgecnn[sweep]'": "installs Ray (the test extra has it: tests/test_sweep.py runs real Ray)",
    "edgecnn sweep mobilenet_v2 mobilenet_v3_small": "a synopsis; tests/test_sweep.py sweeps on local Ray and a cluster",
    "edgecnn sweep --matrix matrix.toml": "needs the user's matrix file (tests/test_sweep.py reads one)",
    "edgecnn report sweep_out/sweep.json": "a synopsis; tests/test_sweep.py reports a sweep with its plot",
}
SLOW_COMMANDS = (
    "edgecnn export mobilenet_v2 --int8 --fp16",
    "edgecnn bench edgecnn_out/mobilenet_v2 --threads 4 --duration 10 --json laptop.json --plot laptop.png",
    "edgecnn check edgecnn_out/mobilenet_v2",
)


def test_every_readme_command_is_run_or_says_why_not():
    text = README.read_text(encoding="utf-8")
    walk = {" ".join(code.replace("\\\n", " ").split()) for kind, code in marked_blocks(text) if kind == "shell"}
    unaccounted = []
    for line, command in readme_commands(text):
        flat = " ".join(command.split())
        if flat in walk or flat in SLOW_COMMANDS:
            continue
        if not any(flat.startswith(prefix) for prefix in NOT_RUN):
            unaccounted.append(f"line {line}: {flat}")
    assert not unaccounted, "README commands neither run by a test nor listed in NOT_RUN:\n" + "\n".join(unaccounted)
    for prefix in NOT_RUN:  # no stale entry
        assert any(" ".join(c.split()).startswith(prefix) for _, c in readme_commands(text)), prefix
    for command in SLOW_COMMANDS:
        assert any(" ".join(c.split()) == command for _, c in readme_commands(text)), command


@pytest.mark.slow
def test_cpu_commands_of_the_readme(tmp_path):
    """The laptop benchmark and the check that follows an export, as written (MobileNetV2: minutes on 2 cores)."""
    for n, command in enumerate(SLOW_COMMANDS):
        _run("shell", command, tmp_path, n)
    bench = json.loads((tmp_path / "laptop.json").read_text())
    assert bench and (tmp_path / "laptop.png").stat().st_size > 0
