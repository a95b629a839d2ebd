"""A received export folder is untrusted input (issue 14): paths are confined to it, writes never follow
a symlink, only files edgecnn recorded are replaced, a check that checked nothing fails, sizes are bounded
before work, every refusal is one line with the documented exit code, received text is escaped, and a
folder can be verified with ``sha256sum -c``. Ends with a Hypothesis fuzz test of the CLI.

Everything runs the real CLI in this process (``edgecnn.cli.main``: an exception escaping it would be a
traceback for a user) on one small LeNet-5 export, copied per case, so the file stays fast on two cores.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import edgecnn
from edgecnn.cli import build_parser, main
from edgecnn.errors import ArtifactError, ExportError
from edgecnn.fileio import LOCK, locked, sha256_file, writable_dir
from edgecnn.guard import confined, safe_text
from edgecnn.manifest import MANIFEST, SUMS, Manifest

EXIT_CODES = {0, 1, 2}  # README: 0 ok, 1 parity failed, 2 a problem with the input or the machine
MODEL = ("lenet5", "--targets", "onnxruntime", "--quiet")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def edgecnn_cli(*argv: str) -> Run:
    """The CLI in this process; an exception escaping ``main`` fails the test (it would be a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code
    return Run(code, out.getvalue(), err.getvalue())


def one_line(r: Run, *needles: str, code: int = 2) -> str:
    assert r.code == code, (r.code, r.err, r.out[-500:])
    assert "Traceback" not in r.err and len(r.lines) == 1, r.err
    for needle in needles:
        assert needle in r.lines[0], (needle, r.lines[0])
    return r.lines[0]


def edit_manifest(folder: Path, change) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    change(data)
    (folder / MANIFEST).write_text(json.dumps(data))


def snapshot(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``folder``: its kind and content (a link's target), to prove nothing changed."""
    snap = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        snap[rel] = ("link", os.readlink(p).encode()) if p.is_symlink() else \
            ("dir", b"") if p.is_dir() else ("file", p.read_bytes())
    return snap


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    good = root / "good"
    r = edgecnn_cli("export", *MODEL, "--out", good)
    assert r.code == 0, r.err
    sentinel = root / "sentinel"  # files outside every export folder that nothing may touch
    sentinel.mkdir()
    (sentinel / "secret.txt").write_text("do not touch\n")
    (sentinel / "model.fp32.xml").write_text("<not yours/>")
    return root, good, sentinel


@pytest.fixture
def folder(ws, tmp_path) -> Path:
    """A fresh copy of the good export: a received folder (nothing in it is this machine's to replace)."""
    dest = tmp_path / "received"
    shutil.copytree(ws[1], dest)
    return dest


@pytest.fixture
def ours(tmp_path) -> Path:
    """A folder this machine's edgecnn exported into: its local record proves every file (issue 20)."""
    out = tmp_path / "ours"
    r = edgecnn_cli("export", *MODEL, "--out", out)
    assert r.code == 0, r.err
    return out


# --- 1. confinement ---------------------------------------------------------------------------
def test_symlinked_lock_never_truncates_or_creates_its_target(ws, tmp_path):
    _, _, sentinel = ws
    before = snapshot(sentinel)
    for name, target in (("existing", sentinel / "secret.txt"), ("dangling", sentinel / "created.txt")):
        out = tmp_path / name
        out.mkdir()
        (out / LOCK).symlink_to(target)
        one_line(edgecnn_cli("export", *MODEL, "--weights", tmp_path / "missing.pth", "--out", out))
        one_line(edgecnn_cli("export", *MODEL, "--out", out), ".edgecnn.lock", "symbolic link")
        assert snapshot(sentinel) == before


def test_writability_probe_never_follows_a_planted_symlink(ws, tmp_path):
    _, _, sentinel = ws
    out = tmp_path / "out"
    out.mkdir()
    (out / f".write-test-{os.getpid()}").symlink_to(sentinel / "probe-target")  # the name the old probe used
    writable_dir(out)
    assert not (sentinel / "probe-target").exists()


def test_symlinked_openvino_folder_is_refused(ws, ours):
    _, _, sentinel = ws
    folder = ours
    (folder / "openvino").symlink_to(sentinel, target_is_directory=True)
    before = snapshot(sentinel)
    from edgecnn import runtimes

    if runtimes.availability()["openvino"] is None:
        one_line(edgecnn_cli("export", "lenet5", "--targets", "onnxruntime,openvino", "--quiet", "--out", folder),
                 "openvino", "symbolic link")
    else:  # without OpenVINO the stage is never reached: the folder rule itself
        from edgecnn.guard import own_dir

        with pytest.raises(ArtifactError, match="symbolic link"):
            own_dir(folder, "openvino")
    assert snapshot(sentinel) == before


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-out", "directory", "fifo"])
def test_manifest_paths_outside_the_folder_or_not_files_are_refused(ws, folder, how):
    _, good, sentinel = ws
    outside = sentinel / "stolen.onnx"  # a loadable model outside the folder: only confinement refuses it
    if not outside.exists():
        shutil.copy(good / "model.onnx", outside)
    if how == "dotdot":
        path = os.path.relpath(outside, folder)
    elif how == "absolute":
        path = str(outside)
    elif how == "symlink-out":
        (folder / "evil.onnx").symlink_to(outside)
        path = "evil.onnx"
    elif how == "directory":
        (folder / "dir.onnx").mkdir()
        path = "dir.onnx"
    else:
        os.mkfifo(folder / "pipe.onnx")  # hashing it would block forever
        path = "pipe.onnx"
    edit_manifest(folder, lambda d: d["artifacts"][0].update(path=path, files=[]))
    before = snapshot(sentinel)
    for cmd in (("check",), ("bench", "--iterations", "1"), ("predict",)):
        extra = ("x.jpg",) if cmd == ("predict",) else ()
        one_line(edgecnn_cli(cmd[0], folder, *cmd[1:], *extra), "artifact export", "; refused")
    assert snapshot(sentinel) == before


def test_ir_bin_outside_is_refused(ws, folder):
    _, _, sentinel = ws
    (folder / "model.fp32.xml").write_text("<net/>")
    (folder / "model.fp32.bin").symlink_to(sentinel / "secret.txt")
    edit_manifest(folder, lambda d: d["artifacts"].append({**d["artifacts"][0], "stage": "openvino-fp32",
                                                           "format": "openvino", "path": "model.fp32.xml",
                                                           "files": []}))
    one_line(edgecnn_cli("check", folder), "openvino-fp32", "leads outside", "; refused")


def test_received_weights_resolve_from_the_manifest_folder_and_match_their_hash(ws, tmp_path, monkeypatch):
    root = ws[0]
    ckpt = tmp_path / "ckpt.pth"
    torch.save(edgecnn.create_model("lenet5", seed=3).state_dict(), ckpt)
    out = tmp_path / "trained"
    assert edgecnn_cli("export", *MODEL, "--weights", ckpt, "--out", out).code == 0
    assert Path(Manifest.load(out).config["weights"]).is_absolute()  # recorded absolute at export time
    # As received: the checkpoint travels inside the folder, named relative to it.
    shutil.move(ckpt, out / "ckpt.pth")
    edit_manifest(out, lambda d: d["config"].update(weights="ckpt.pth"))
    monkeypatch.chdir(root)  # not the folder: the path is the manifest's, not the current directory's
    assert edgecnn_cli("check", out).code == 0
    torch.save(edgecnn.create_model("lenet5", seed=4).state_dict(), out / "ckpt.pth")  # same name, other weights
    one_line(edgecnn_cli("check", out), "ckpt.pth", "not the one this export was made from")


def test_received_manifest_never_downloads(folder, monkeypatch):
    import edgecnn.weights as W

    def no_download(*_a, **_k):
        raise AssertionError("a received manifest started a download")

    monkeypatch.setattr(W, "download", no_download)
    edit_manifest(folder, lambda d: (d["config"].update(weights="imagenet", num_classes=1000),
                                     d["source"].update(ref="squeezenet1_1", name="squeezenet1_1"),
                                     d.update(model="squeezenet1_1")))
    one_line(edgecnn_cli("check", folder), "never starts a download")


def test_received_manifest_never_runs_the_code_it_names(ws, folder, tmp_path):
    pwned = tmp_path / "pwned"
    edit_manifest(folder, lambda d: d.update(source={"kind": "factory", "ref": "os:system", "name": "system",
                                                     "args": {"command": f"touch {pwned}"}, "sha256": None}))
    r = edgecnn_cli("check", folder)
    assert not pwned.exists(), "a factory named by a received manifest ran"
    assert r.code == 0 and "run only with --trust-source" in " ".join(r.out.split()), r.out + r.err


# --- 2. ownership -----------------------------------------------------------------------------
def test_export_never_deletes_a_file_a_manifest_merely_lists(ours):
    """A manifest edited to list the user's notes (with their true sha256) is no longer the bytes edgecnn wrote:
    the export stops before any work, with or without --force, and the notes stay."""
    notes = ours / "notes.txt"
    notes.write_text("my notes")
    edit_manifest(ours, lambda d: d["artifacts"].append(
        {**d["artifacts"][0], "stage": "notes", "path": "notes.txt", "sha256": sha256_file(notes),
         "bytes": notes.stat().st_size, "files": []}))
    one_line(edgecnn_cli("export", *MODEL, "--out", ours), MANIFEST, "is in the way")
    one_line(edgecnn_cli("export", *MODEL, "--force", "--out", ours), MANIFEST, "is in the way")
    assert notes.read_text() == "my notes"


def test_export_prunes_only_files_that_the_local_record_proves(ours):
    mine = ours / "model.fp16.onnx"  # an edgecnn name, but the user's own file
    mine.write_bytes(b"my fp16 model")
    edit_manifest(ours, lambda d: d["artifacts"].append(
        {**d["artifacts"][0], "stage": "fp16", "precision": "fp16", "path": "model.fp16.onnx", "files": []}))
    one_line(edgecnn_cli("export", *MODEL, "--out", ours), MANIFEST, "is in the way")
    (ours / MANIFEST).unlink()  # the user moves the edited manifest away: the export runs, and still keeps the file
    assert edgecnn_cli("export", *MODEL, "--out", ours).code == 0
    assert mine.read_bytes() == b"my fp16 model"


def test_a_manifest_listing_a_directory_does_not_break_the_folder(ours):
    (ours / "dir.onnx").mkdir()
    edit_manifest(ours, lambda d: d["artifacts"].append({**d["artifacts"][0], "stage": "x", "path": "dir.onnx"}))
    one_line(edgecnn_cli("export", *MODEL, "--out", ours), MANIFEST, "is in the way")
    (ours / MANIFEST).unlink()
    r = edgecnn_cli("export", *MODEL, "--out", ours)  # the folder can still be repaired with edgecnn
    assert r.code == 0, r.err
    assert (ours / "dir.onnx").is_dir() and edgecnn_cli("check", ours).code == 0


def test_a_foreign_file_in_the_way_stops_the_export(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model")
    one_line(edgecnn_cli("export", *MODEL, "--out", out), "model.onnx", "in the way", "edgecnn did not write it")
    assert (out / "model.onnx").read_bytes() == b"my own model"
    one_line(edgecnn_cli("export", *MODEL, "--force", "--out", out), "in the way")
    assert (out / "model.onnx").read_bytes() == b"my own model"


def test_a_recorded_file_changed_since_is_not_replaced(ours):
    (ours / "model.sim.onnx").write_bytes(b"edited by hand")
    one_line(edgecnn_cli("check", ours), "simplify", "move it away")
    one_line(edgecnn_cli("export", *MODEL, "--out", ours), "model.sim.onnx", "in the way")
    assert (ours / "model.sim.onnx").read_bytes() == b"edited by hand"


def test_a_received_folder_is_rebuilt_never_reused(folder):
    """Its manifest is not this machine's (issue 20): the export stops before any work; its files stay."""
    before = snapshot(folder)
    one_line(edgecnn_cli("export", *MODEL, "--out", folder), MANIFEST, "is in the way")
    assert snapshot(folder) == before


def test_a_journal_naming_a_file_being_written_grants_nothing(tmp_path):
    """The journal no longer grants ownership (issue 20): a file renamed into place by a killed run is the
    next run's because the local record holds it (tests/test_ownership.py kills a real run), not because a
    journal says so."""
    out = tmp_path / "killed"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"mine")
    for writing in (["model.onnx"], ["model.onnx", "../x.onnx"]):
        (out / ".edgecnn-journal.json").write_text(json.dumps({"artifacts": [], "writing": writing}))
        one_line(edgecnn_cli("export", *MODEL, "--out", out), "model.onnx", "in the way")
        assert (out / "model.onnx").read_bytes() == b"mine"


KILLED_WITH_TEMPORARIES = """
import os, sys
from pathlib import Path
from edgecnn.fileio import atomic_path, temp_dir
out = Path(sys.argv[1])
with temp_dir(out, "int8") as work:  # int8's work folder, left by kill -9
    (work / "prepped.onnx").write_bytes(b"x")
    (work / "link").symlink_to(out.parent, target_is_directory=True)  # removed as a link, never followed
    with atomic_path(out / "model.int8.onnx") as tmp:
        tmp.write_bytes(b"half-written by a killed run")
        os._exit(9)
"""


def test_stale_temporary_files_are_removed_by_the_next_export(ours):
    r = subprocess.run([sys.executable, "-c", KILLED_WITH_TEMPORARIES, str(ours)], timeout=120)
    assert r.returncode == 9
    stale = [p for p in ours.iterdir() if p.name.startswith(".edgecnn-tmp-")]
    assert len(stale) == 2
    mine = ours / ".model.onnx.deadbeef.onnx.tmp"  # the name edgecnn's temporaries once had: the user's now
    mine.write_text("x")
    assert edgecnn_cli("export", *MODEL, "--out", ours).code == 0
    assert not any(p.exists() for p in stale) and mine.exists() and ours.parent.is_dir()


# --- 8. digests -------------------------------------------------------------------------------
def test_per_file_digests_and_sha256sums(ws):
    good = ws[1]
    data = json.loads((good / MANIFEST).read_text())
    assert data["schema"] == 3
    for art in data["artifacts"]:
        for f in art["files"]:
            assert sha256_file(good / f["path"]) == f["sha256"] and (good / f["path"]).stat().st_size == f["bytes"]
    listed = (good / SUMS).read_text().splitlines()
    assert len(listed) == sum(len(a["files"]) for a in data["artifacts"])
    if shutil.which("sha256sum"):
        r = subprocess.run(["sha256sum", "-c", SUMS], cwd=good, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_schema_2_folders_are_still_read(folder):
    def to_v2(d):
        d["schema"] = 2
        for art in d["artifacts"]:
            del art["files"]
    edit_manifest(folder, to_v2)
    assert edgecnn_cli("check", folder).code == 0
    # An older edgecnn kept no local record: its folder is not provably this machine's (issue 20).
    one_line(edgecnn_cli("export", *MODEL, "--out", folder), MANIFEST, "is in the way")


def test_confined_unit(tmp_path):
    (tmp_path / "a.onnx").write_text("x")
    assert confined(tmp_path, "a.onnx", "t") == (tmp_path / "a.onnx").resolve()
    for bad in ("../a.onnx", "/etc/passwd", "", None, 3, "a\x00b"):
        with pytest.raises(ArtifactError):
            confined(tmp_path, bad, "t")


# --- 9. fuzz: every subcommand on hostile input -------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() |
                    st.text(max_size=20), lambda kids: st.lists(kids, max_size=4) |
                    st.dictionaries(st.text(max_size=10), kids, max_size=4), max_leaves=12)
FIELDS = ["model", "weights", "input_shape", "dynamic_batch", "preprocessing", "config", "versions", "host",
          "artifacts", "results", "selected", "notes", "source", "labels", "evaluation", "timings", "schema"]
ARTIFACT_FIELDS = ["stage", "format", "precision", "path", "sha256", "bytes", "parent", "runtime", "files"]
PATHS = st.sampled_from(["model.onnx", "../model.onnx", "/etc/passwd", "link.onnx", "dir.onnx", "", ".",
                         "model.sim.onnx", "manifest.json", "x/../../y.onnx", "a" * 300 + ".onnx"])
TOKENS = st.sampled_from(["--runtimes", "torch", "onnxruntime", "openvino,nope", "--num-images", "0", "3",
                          "99999999", "--images", "/nonexistent", "--threads", "-1", "--fp32-atol", "nan",
                          "--int8-cosine", "-1", "--device", "cuda", "--layers", "--iterations", "1",
                          "--warmup", "-5", "--duration", "inf", "--batch", "2", "--top",
                          "--artifact", "int8", "--runtime", "tflite", "--no-wait", "\x1b[2J", "--", "-"])


def _fuzz_folder(base: Path, sentinel: Path) -> Path:
    dest = base / "fz"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base.parent / "good", dest)
    (dest / "link.onnx").symlink_to(sentinel / "secret.txt")
    (dest / "dir.onnx").mkdir()
    return dest


def _bounded(r: Run, t0: float, sentinel: Path, before: dict) -> None:
    assert "Traceback" not in r.err
    assert r.code in EXIT_CODES, (r.code, r.err)
    if r.code == 2:
        assert len(r.lines) >= 1 and r.lines[-1].startswith("edgecnn"), r.err
    assert snapshot(sentinel) == before
    assert time.perf_counter() - t0 < 60


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FIELDS), value=JSON, art_field=st.sampled_from(ARTIFACT_FIELDS),
       art_value=JSON | PATHS, cmd=st.sampled_from(["check", "bench", "predict"]))
def test_fuzz_manifests(ws, field, value, art_field, art_value, cmd):
    root, _, sentinel = ws
    before = snapshot(sentinel)
    folder = _fuzz_folder(root / "fuzz", sentinel)
    edit_manifest(folder, lambda d: (d.update({field: value}) if field != "artifacts" else None,
                                     isinstance(d.get("artifacts"), list) and d["artifacts"] and
                                     isinstance(d["artifacts"][0], dict) and
                                     d["artifacts"][0].update({art_field: art_value})))
    t0 = time.perf_counter()
    extra = {"check": (), "bench": ("--iterations", "1", "--warmup", "0"), "predict": (str(root / "img.png"),)}[cmd]
    if not (root / "img.png").exists():
        Image.new("L", (40, 40)).save(root / "img.png")
    _bounded(edgecnn_cli(cmd, folder, *extra), t0, sentinel, before)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=JSON, rows=st.lists(st.dictionaries(st.sampled_from(
    ["artifact", "precision", "runtime", "batch", "latency", "parity", "error", "accuracy", "throughput"]), JSON,
    max_size=6), max_size=3), check=st.booleans())
def test_fuzz_result_files(ws, tmp_path_factory, data, rows, check):
    root, _, sentinel = ws
    before = snapshot(sentinel)
    doc = {"results": rows, **({"n_images": 1, "model": "m", "images": "i", "original": data} if check else
                               {"model": "m", "host": data, "input_shape": [1, 1, 32, 32]})}
    path = root / "fuzz-results.json"
    path.write_text(json.dumps(doc, default=str))
    t0 = time.perf_counter()
    _bounded(edgecnn_cli("report", path, "--markdown", root / "fuzz.md"), t0, sentinel, before)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(cmd=st.sampled_from(["check", "bench", "predict", "info", "report"]), tokens=st.lists(TOKENS, max_size=5))
def test_fuzz_cli_arguments(ws, cmd, tokens):
    root, good, sentinel = ws
    before = snapshot(sentinel)
    target = {"info": ["lenet5"], "report": [str(root / "nope.json")], "predict": [str(good), str(root / "img.png")]}
    if not (root / "img.png").exists():
        Image.new("L", (40, 40)).save(root / "img.png")
    argv = [cmd, *target.get(cmd, [str(good)]), *tokens]
    if cmd == "bench" and "--iterations" not in tokens and "--duration" not in tokens:
        argv += ["--iterations", "1"]
    t0 = time.perf_counter()
    _bounded(edgecnn_cli(*argv), t0, sentinel, before)


EXPORT_TOKENS = st.sampled_from(["--resolution", "0", "31", "100000", "--batch", "2", "--dynamic-batch", "--calib-size",
                                 "4", "--int8", "--fp16", "--num-classes", "3", "--opset", "12", "--weights",
                                 "imagenet", "random", "/etc/passwd", "--labels", "/etc/hostname", "--calib-dir",
                                 "/dev", "--images", "/nonexistent", "--max-drop", "nan", "--mean", "nan,1",
                                 "--input-shape", "1,1,32,32", "--crop", "64", "--model-arg", "x=1", "--force"])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(tokens=st.lists(EXPORT_TOKENS, max_size=4))
def test_fuzz_export_arguments(ws, tokens):
    root, _, sentinel = ws
    before = snapshot(sentinel)
    out = root / "fuzz-export"
    t0 = time.perf_counter()
    r = edgecnn_cli("export", "lenet5", "--targets", "onnxruntime", "--quiet", "--calib-size", "8", *tokens,
                    "--out", out)
    _bounded(r, t0, sentinel, before)
    if out.exists():
        shutil.rmtree(out)
