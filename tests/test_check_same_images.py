"""check judges on what export judged on: the images recorded in the manifest (folder, each file's sha256),
read back only while every file is still there with its hash; else the bundled photos, said in one line.
And every option a message suggests exists on the command that prints it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.cli import build_parser
from edgecnn.harness.check import check_dir
from edgecnn.harness.evalset import KEY
from edgecnn.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGECNN_OFFLINE": "1", "COLUMNS": "200"})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """LeNet-5 (fp32 only, ONNX Runtime) exported with --images an ImageFolder of 3 classes x 4 digits."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("same")
    digits = load_digits()
    for label in range(3):
        (root / "val" / str(label)).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(digits.target == label)[:4]):
            Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8)).save(root / "val" / str(label) / f"{n}.png")
    (root / "labels.txt").write_text("0\n1\n2\n")
    r = _cli("export", "lenet5", "--weights", "random", "--num-classes", "3", "--labels", str(root / "labels.txt"),
             "--images", str(root / "val"), "--targets", "onnxruntime", "--out", str(root / "out"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return root


def test_export_records_its_images(exported):
    m = Manifest.load(exported / "out")
    rec = m.evaluation[KEY]
    assert rec["folder"] == str((exported / "val").resolve()) and rec["n_files"] == 12 and len(rec["files"]) == 12
    assert {f["path"] for f in rec["files"]} == {f"{c}/{n}.png" for c in range(3) for n in range(4)}
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in rec["files"])


def test_check_without_images_judges_on_the_exports_images(exported):
    m = Manifest.load(exported / "out")
    report = check_dir(exported / "out", runtimes=("onnxruntime",))
    assert report.images == str((exported / "val").resolve()) and report.n_images == m.evaluation["n"] == 12
    assert report.original == {k: v for k, v in m.evaluation["accuracy"].items()}  # the same images, same labels
    by_key = {r.artifact: r for r in report.results}
    for key, res in m.results.items():  # the same figures, the same verdict
        assert by_key[key].parity.cosine == pytest.approx(res.parity.cosine, abs=1e-6)
        assert by_key[key].ok == res.ok
    assert report.passed == m.passed()
    assert any("sha256 matches" in n for n in report.notes)
    r = _cli("check", str(exported / "out"), "--runtimes", "onnxruntime")
    assert r.returncode == 0 and "bundled photos" not in r.stdout and "12 images" in r.stdout, r.stdout + r.stderr


def _fallback(out: Path) -> str:
    report = check_dir(out, runtimes=("onnxruntime",))
    assert report.images == "bundled held-out photos"
    lines = [n for n in report.notes if "judged on the bundled photos instead" in n]
    assert len(lines) == 1 and "\n" not in lines[0], report.notes
    return lines[0]


def test_moved_changed_or_added_images_fall_back_in_one_line(exported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported / "out", out)
    val = exported / "val"
    moved = tmp_path / "moved"
    shutil.move(val, moved)
    try:
        assert "the folder is gone" in _fallback(out)
        r = _cli("check", str(out), "--runtimes", "onnxruntime")
        assert r.returncode == 0 and "judged on the bundled photos instead" in r.stdout, r.stdout + r.stderr
    finally:
        shutil.move(moved, val)
    one = val / "1" / "0.png"
    original = one.read_bytes()
    try:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(one)
        assert "1/0.png changed since the export" in _fallback(out)
    finally:
        one.write_bytes(original)
    extra = val / "2" / "extra.png"
    shutil.copy(one, extra)
    try:
        assert "1 image(s) added" in _fallback(out)
    finally:
        extra.unlink()
    assert check_dir(out, runtimes=("onnxruntime",)).images == str(val.resolve())  # all back: used again


def _forge(out: Path, edit) -> None:
    path = out / "manifest.json"
    data = json.loads(path.read_text())
    edit(data["evaluation"][KEY])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit, why", [
    (lambda rec: rec["files"][0].update(path="../../etc/passwd"), "outside the folder"),
    (lambda rec: rec.update(folder="relative/path"), "malformed"),
    (lambda rec: rec.update(files="not a list"), "malformed"),
    (lambda rec: rec.pop("files"), "cannot be read"),
])
def test_a_received_record_never_makes_check_read_elsewhere(exported, tmp_path, edit, why):
    out = tmp_path / "out"
    shutil.copytree(exported / "out", out)
    _forge(out, edit)
    assert why in _fallback(out)


def test_a_record_pointing_at_other_files_is_not_read(exported, tmp_path):
    """A received manifest naming a folder of this machine: its files' hashes do not match, nothing is decoded."""
    out = tmp_path / "out"
    shutil.copytree(exported / "out", out)
    other = tmp_path / "other"
    shutil.copytree(exported / "val", other)
    for f in other.rglob("*.png"):
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(f)
    _forge(out, lambda rec: rec.update(folder=str(other)))
    assert "changed since the export (sha256 differs)" in _fallback(out)


# --- every option a message suggests exists on the command that prints it -----------------------------
SUGGESTION = re.compile(r"\b(?:pass|use|with|add|set|re-export with|try)\s+(--[a-z0-9][a-z0-9-]*)")
# Which command prints the messages of a module (the rest may be printed by several: any command will do).
COMMAND_OF = {"edgecnn/harness/check.py": "check", "edgecnn/harness/evalset.py": "check",
              "edgecnn/harness/predict.py": "predict", "edgecnn/pipeline/": "export"}
REEXPORT = "re-export with"


def _options() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def test_every_suggested_option_exists():
    options = _options()
    every = set().union(*options.values())
    found = []
    for path in sorted((ROOT / "edgecnn").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        command = next((c for prefix, c in COMMAND_OF.items() if rel.startswith(prefix)), None)
        for m in SUGGESTION.finditer(path.read_text(encoding="utf-8")):
            option = m.group(1)
            found.append((rel, option))
            if REEXPORT in m.group(0):  # "re-export with --x": an export option, whoever prints it
                assert option in options["export"], (rel, m.group(0))
            elif command is not None:
                assert option in options[command], f"{rel} suggests {m.group(0)!r}: `edgecnn {command}` has no {option}"
            else:
                assert option in every, f"{rel} suggests {m.group(0)!r}: no edgecnn command has {option}"
    assert len(found) > 10 and ("edgecnn/harness/common.py", "--trust-source") in found  # the scan does find them


def test_check_names_an_option_it_has_when_folders_and_outputs_disagree(exported, tmp_path):
    """The message that said 'pass --labels' (check has none): a 2-class folder on a 3-output model without labels."""
    out = tmp_path / "out"
    shutil.copytree(exported / "out", out)
    data = json.loads((out / "manifest.json").read_text())
    data["labels"] = None
    (out / "manifest.json").write_text(json.dumps(data))
    two = tmp_path / "two"
    for c in ("0", "1"):
        shutil.copytree(exported / "val" / c, two / c)
    r = _cli("check", str(out), "--images", str(two), "--runtimes", "onnxruntime")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    suggested = re.findall(r"--[a-z0-9-]+", r.stderr)
    assert suggested == ["--labels"] and "re-export with --labels" in r.stderr, r.stderr
