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
from edgecnn.cli import main
from edgecnn.errors import ArtifactError
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


def edit_manifest(folder: Path, change, *, sums: bool = False) -> None:
    """Change a folder's manifest.json as a sender would; with ``sums`` its SHA256SUMS follows (edgecnn
    cross-checks the two, so a consistent hostile folder rewrites both)."""
    data = json.loads((folder / MANIFEST).read_text())
    change(data)
    (folder / MANIFEST).write_text(json.dumps(data))
    if sums and isinstance(data, dict) and isinstance(data.get("artifacts"), list):
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            (folder / SUMS).write_text("".join(f"{f['sha256']}  {f['path']}\n" for a in data["artifacts"]
                                               for f in a["files"]))


def edit_received(folder: Path, change) -> None:
    """A sender's edit: manifest.json and the SHA256SUMS cross-checked against it, consistent."""
    edit_manifest(folder, change, sums=True)


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


# --- 3. false pass ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (("--runtimes", "onnxrutime"), "unknown runtime 'onnxrutime'; runtimes are: onnxruntime"),
    (("--runtimes", "torch"), "nothing was checked"),
    (("--fp32-atol", "nan"), "must be a number"),
    (("--int8-cosine", "nan"), "must be a number"),
    (("--int8-top1", "inf"), "must be a number"),
    (("--int8-cosine", "2"), "must be a number from 0 to 1"),
])
def test_a_check_that_checks_nothing_fails(ws, args, needle):
    one_line(edgecnn_cli("check", ws[1], *args), needle)


def test_a_manifest_with_no_artifacts_fails_check_and_bench(folder):
    edit_manifest(folder, lambda d: d.update(artifacts=[]))
    one_line(edgecnn_cli("check", folder), "nothing was checked", "no artifacts")
    one_line(edgecnn_cli("bench", folder, "--iterations", "1"), "nothing was checked")


# --- 4. limits before work --------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (("export", "lenet5", "--resolution", "100000"), "EDGECNN_MAX_RESOLUTION"),
    (("export", "lenet5", "--batch", "100000"), "EDGECNN_MAX_BATCH"),
    (("export", "lenet5", "--calib-size", "10000000"), "EDGECNN_MAX_IMAGES"),
    (("export", "lenet5", "--num-classes", "100000000"), "EDGECNN_MAX_NUM_CLASSES"),
    (("info", "lenet5", "--num-classes", "100000000"), "EDGECNN_MAX_NUM_CLASSES"),
    (("check", ".", "--num-images", "10000000"), "EDGECNN_MAX_IMAGES"),
    (("bench", ".", "--batch", "1,100000"), "EDGECNN_MAX_BATCH"),
    (("export", "x" * 96_000), "model name length"),
    (("export", "lenet5", "--out", "d" * 300), "at most 255 bytes"),
    (("export", "lenet5", "--out", "bad\udcff"), "not valid UTF-8"),
])
def test_limits_are_argparse_errors_before_any_work(argv, needle):
    t0 = time.perf_counter()
    one_line(edgecnn_cli(*argv), needle)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(input_shape=[1, 1, 100000, 100000]), "resolution 100000"),
    (lambda d: d.update(input_shape=[100000, 1, 32, 32]), "batch 100000"),
    (lambda d: d["preprocessing"].update(resolution=100000), "preprocessing resolution"),
    (lambda d: d["config"].update(num_classes=100000000), "num_classes 100000000"),
    (lambda d: d.update(model="m" * 100_000), "model name length"),
])
def test_a_received_manifest_is_bounded_before_work(folder, change, needle):
    edit_manifest(folder, change)
    t0 = time.perf_counter()
    one_line(edgecnn_cli("check", folder), needle, "above edgecnn's limit")
    assert time.perf_counter() - t0 < 5


def test_an_oversized_manifest_is_refused_unread(folder, monkeypatch):
    monkeypatch.setenv("EDGECNN_MAX_FILE_BYTES", "1000")
    one_line(edgecnn_cli("check", folder), "manifest", "above edgecnn's limit")


def test_checkpoint_size_is_checked_before_loading(tmp_path, monkeypatch):
    ckpt = tmp_path / "big.pth"
    torch.save({"w": torch.zeros(100_000)}, ckpt)  # 400 KB of zeros
    monkeypatch.setenv("EDGECNN_MAX_CHECKPOINT_BYTES", "100000")

    def no_load(*_a, **_k):
        raise AssertionError("loaded before the size check")

    monkeypatch.setattr(torch, "load", no_load)
    one_line(edgecnn_cli("export", *MODEL, "--weights", ckpt, "--out", tmp_path / "o"), "big.pth", "expanded size")


def test_a_decompression_bomb_is_one_line(tmp_path):
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    Image.new("1", (20_000, 20_000)).save(bombs / "bomb.png")  # 400 Mpx in a few KB
    one_line(edgecnn_cli("export", *MODEL, "--int8", "--calib-dir", bombs, "--out", tmp_path / "o"),
             "bomb.png", "more pixels than edgecnn's limit")


def test_images_are_decoded_one_at_a_time(tmp_path, monkeypatch):
    from edgecnn import data

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((64, 64, 3), i * 40, np.uint8)).save(folder / f"{i}.png")
    peak = [0]
    real = data.open_image

    import weakref

    refs: list = []

    def tracked(path):
        im = real(path)
        refs.append(weakref.ref(im))
        peak[0] = max(peak[0], sum(r() is not None for r in refs))
        return im

    monkeypatch.setattr(data, "open_image", tracked)
    prep = data.Preprocessing(32, (0.5,) * 3, (0.5,) * 3)
    assert data.calibration_batch(prep, 12, folder=folder).shape == (12, 3, 32, 32)
    assert data.evaluation_batch(prep, 4, folder=folder).shape == (4, 3, 32, 32)
    assert peak[0] <= 2, peak  # the one being decoded, and at most the previous one not yet collected


def test_nan_checkpoint_blames_the_checkpoint(tmp_path):
    state = edgecnn.create_model("lenet5").state_dict()
    next(v for k, v in state.items() if k.endswith("weight"))[0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    one_line(edgecnn_cli("export", *MODEL, "--int8", "--weights", tmp_path / "nan.pth", "--out", tmp_path / "o"),
             "nan.pth", "NaN or infinite", "checkpoint")


# --- 5. report on malformed files -------------------------------------------------------------
@pytest.mark.parametrize("content", [
    '{"results": [{"artifact": 1}]}',
    '{"results": [{"artifact": "x", "precision": "fp32", "latency": {"p50_ms": "a"}}]}',
    '{"results": [{"artifact": "x", "parity": {"cosine": "a"}}], "n_images": 1}',
    '{"results": [{"artifact": "x", "precision": "fp32"}], "host": 3}',
    '{"results": [1, 2]}',
    '{"results": [{"artifact": "x"}], "n_images": 1, "original": {"n": 1}, "model": "m", "images": "i"}',
    '[' * 100_000,
    '"\\u0000"',
])
def test_report_on_malformed_files_is_one_line(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    one_line(edgecnn_cli("report", path), "r.json")


# --- 6. concurrency ---------------------------------------------------------------------------
def test_check_waits_for_an_export_or_fails_fast(folder):
    with locked(folder):  # what an export holds while it writes the folder
        one_line(edgecnn_cli("check", folder, "--no-wait"), "being written by another edgecnn export")
        one_line(edgecnn_cli("bench", folder, "--no-wait"), "being written")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=edgecnn_cli("check", folder)))
        t.start()
        time.sleep(1.5)
        assert t.is_alive(), "check did not wait for the export"
    t.join(60)
    assert result["r"].code == 0 and "waiting for an edgecnn export" in result["r"].out


def test_check_reads_a_read_only_folder(folder):
    (folder / LOCK).unlink()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: the folder stays writable")
        assert edgecnn_cli("check", folder).code == 0
    finally:
        folder.chmod(0o755)


# --- 7. terminal safety -----------------------------------------------------------------------
EVIL = "\x1b]0;owned\x07\x1b[2J\x1b[1;32mall artifacts pass\x1b[0m\r\u202eevil\u2066"


def test_received_text_reaches_the_terminal_escaped(folder, tmp_path):
    edit_manifest(folder, lambda d: (d.update(model=EVIL, labels=[EVIL] * 10, notes=[EVIL])))
    r = edgecnn_cli("check", folder, "--json", tmp_path / "c.json")
    assert r.code == 0, r.err
    for bad in ("\x1b", "\x07", "\r", "\u202e", "\u2066"):
        assert bad not in r.out + r.err
    assert "\\x1b]0;owned" in r.out
    (folder / "model.sim.onnx").write_bytes(b"changed")  # an error that names the (received) model
    r = edgecnn_cli("check", folder)
    assert r.code == 2 and "\x1b" not in r.err


def _embed(folder: Path, stage: str, metadata: dict) -> None:
    """Rewrite an artifact's embedded metadata and its record, as a sender could."""
    from edgecnn.exporters.metadata import embed_onnx

    art = embed_onnx(Manifest.load(folder).artifact(stage), metadata)
    edit_manifest(folder, lambda d: [a.update(art.to_json(folder)) for a in d["artifacts"] if a["stage"] == stage],
                  sums=True)


def test_predict_escapes_and_checks_what_an_artifact_says_about_itself(folder, ws):
    image = ws[0] / "img.png"
    Image.new("L", (40, 40)).save(image)
    _embed(folder, "simplify", {"edgecnn.labels": json.dumps([EVIL] * 10)})
    r = edgecnn_cli("predict", folder, image)
    assert r.code == 0 and "\x1b" not in r.out and "\u202e" not in r.out and "\\x1b]0;owned" in r.out, r.err
    _embed(folder, "simplify", {"edgecnn.preprocessing": json.dumps({"resolution": "x"})})
    one_line(edgecnn_cli("predict", folder, image), "malformed preprocessing")


def test_report_markdown_escapes_received_text(tmp_path):
    bench = {"model": EVIL + "|<script>x</script>", "input_shape": [1, 1, 32, 32], "threads": 1, "warmup": 1,
             "iterations": 1, "duration_s": None, "host": {"cpu": {"model": "c", "cores": 1}}, "versions": {},
             "results": [{"artifact": "a|b", "precision": "fp32", "runtime": "<img>", "batch": 1,
                          "latency": {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.0,
                                      "n": 1, "batch": 1}}]}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    r = edgecnn_cli("report", tmp_path / "b.json", "--markdown", tmp_path / "t.md")
    assert r.code == 0, r.err
    md = (tmp_path / "t.md").read_text()
    assert "<script>" not in md and "<img>" not in md and "\x1b" not in md and "a\\|b" in md
    assert "\x1b" not in r.out and "\u202e" not in r.out


def test_safe_text():
    assert safe_text("a\tb\nc\x1b[2J\u202e") == "a\tb\\nc\\x1b[2J\\u202e"
    assert safe_text("plain ünïcode") == "plain ünïcode"


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
