"""Issue 20: every field of a received folder is bounded before work, predict holds one decoded image at a
time, and the medium and low findings of the hostile-folder probe (symlink loops, channels, markup and
invisible characters in received names, a 30 MB name, a closed pipe, SHA256SUMS, builder options).

Each case is rebuilt from the issue's text on one small LeNet-5 export (copied per case) and runs the real
CLI: in this process (an exception escaping ``main`` would be a user's traceback) or, for the pipe, as a
program.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from PIL import Image

from edgecnn.errors import ArtifactError, ConfigError
from edgecnn.guard import clip, confined, safe_text
from edgecnn.manifest import MANIFEST, SUMS
from test_security import Run, edgecnn_cli  # noqa: F401 - Run: the type of what edgecnn_cli returns

MODEL = ("lenet5", "--targets", "onnxruntime", "--quiet")
EVIL = "\x1b]0;owned\x07\x1b[2J\r\u202eevil"
PHOTO = Path(__file__).resolve().parents[1] / "edgecnn" / "data" / "images" / "chelsea.jpg"


cli = edgecnn_cli  # the CLI in this process (test_security.py)


def one_line(r: Run, *needles: str, code: int = 2) -> str:
    assert r.code == code, (r.code, r.err[-2000:], r.out[-500:])
    assert "Traceback" not in r.err and len(r.lines) == 1, r.err[-2000:]
    for needle in needles:
        assert needle in r.lines[0], (needle, r.lines[0][:2000])
    return r.lines[0]


def edit(folder: Path, change) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    change(data)
    (folder / MANIFEST).write_text(json.dumps(data))


@pytest.fixture
def folder(received_lenet) -> Path:
    return received_lenet


def _rename_stage(folder: Path, old: str, new: str) -> None:
    def change(d):
        for a in d["artifacts"]:
            a["stage"] = new if a["stage"] == old else a["stage"]
            a["parent"] = new if a.get("parent") == old else a.get("parent")
        d["results"] = {new if k == old else k: v for k, v in d["results"].items()}
        for v in d["results"].values():
            if v.get("artifact") == old:
                v["artifact"] = new
    edit(folder, change)


# --- 1. every manifest field bounded before work ----------------------------------------------------
def test_crop_pct_cannot_make_a_huge_resize(folder):
    """crop_pct=0.0025 made a 64 px check resize every photo to 25,600 px (4 GB, 37 s)."""
    edit(folder, lambda d: d["preprocessing"].update(crop_pct=0.0025))
    t0 = time.perf_counter()
    one_line(cli("check", folder), "preprocessing resize (resolution / crop_pct) 12800", "above edgecnn's limit")
    assert time.perf_counter() - t0 < 5


def test_the_recorded_resize_is_the_one_crop_pct_implies(folder):
    edit(folder, lambda d: d["preprocessing"].update(resize=40))  # crop_pct 1.0 at 32 px implies 32
    one_line(cli("check", folder), "preprocessing resize (not what crop_pct implies)")


@pytest.mark.parametrize("channels", [2, 3])
def test_preprocessing_channels_must_be_the_models(folder, channels):
    edit(folder, lambda d: d["preprocessing"].update(channels=channels, mean=[0.5] * channels, std=[0.5] * channels))
    for cmd in (("check", folder), ("predict", folder, PHOTO)):
        one_line(cli(*cmd), "preprocessing")


def test_builder_options_from_a_manifest_are_bounded(folder):
    """width_mult 12 took 2.6 GB and 35 s, then a traceback: sized on the meta device first, one line."""
    from edgecnn.models import create_model

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="width_mult=12: parameters 322913564 is above .* EDGECNN_MAX_PARAMS"):
        create_model("mobilenet_v2", width_mult=12)
    with pytest.raises(ConfigError, match="does not accept width_mult=-1 .*must be positive"):
        create_model("mobilenet_v1", width_mult=-1)
    assert time.perf_counter() - t0 < 10
    one_line(cli("info", "mobilenet_v2", "--model-arg", "width_mult='x'"), "does not accept width_mult='x'")
    edit(folder, lambda d: d["source"].update(args={"width_mult": 12}))
    one_line(cli("check", folder), "lenet5 does not take option 'width_mult'")
    edit(folder, lambda d: d["source"].update(args={"width_mult": [1.0] * 10_000}))
    one_line(cli("check", folder), "field source args")


def test_a_manifest_batch_that_is_not_the_artifacts_is_one_line(folder):
    edit(folder, lambda d: d["input_shape"].__setitem__(0, 1024))
    one_line(cli("predict", folder, PHOTO), "the artifact takes batches of 1 but manifest.json says 1024")
    r = cli("check", folder)
    assert r.code == 1 and "Traceback" not in r.err and "parity FAILED" in r.out, r.err
    r = cli("bench", folder, "--iterations", "1", "--warmup", "0", "--json", folder / "b.json")
    rows = json.loads((folder / "b.json").read_text())["results"]
    assert r.code == 1 and "Traceback" not in r.err, r.err[-2000:]
    assert all("the artifact takes batches of 1 but manifest.json says 1024" in x["error"] for x in rows
               if x["runtime"] != "torch") and len(rows) > 1, rows


def test_sha256sums_is_cross_checked_against_the_manifest(folder):
    sums = (folder / SUMS).read_text().replace(json.loads((folder / MANIFEST).read_text())["artifacts"][0]["sha256"],
                                               "0" * 64)
    (folder / SUMS).write_text(sums)
    one_line(cli("check", folder), "SHA256SUMS and manifest.json disagree about model.onnx")
    (folder / SUMS).write_text((folder / SUMS).read_text().replace("0" * 64 + "  model.onnx\n", ""))
    one_line(cli("check", folder), "disagree about model.onnx (it is not in SHA256SUMS)")


# --- 2. predict: counted and sized first, one image decoded at a time --------------------------------
def test_predict_decodes_one_image_at_a_time(folder, tmp_path, monkeypatch):
    from edgecnn import data
    from edgecnn.harness import predict

    images = []
    for i in range(5):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (300, 200), (i * 40, 0, 0)).save(images[-1])
    refs: list = []
    peak = [0]

    def tracked(path):
        im = real(path)
        refs.append(weakref.ref(im))
        peak[0] = max(peak[0], sum(r() is not None for r in refs))
        return im

    real = data.open_image
    monkeypatch.setattr(predict, "open_image", tracked)
    report = predict.predict_dir(folder, images, top=3)
    assert [p.image for p in report.predictions] == [str(p) for p in images]
    assert len(refs) == 5 and peak[0] <= 2, peak  # the one decoded, at most the previous one not yet collected


def test_predict_counts_and_sizes_images_before_any_work(folder, tmp_path, monkeypatch):
    from edgecnn.harness import predict

    def no_load(*_a, **_k):
        raise AssertionError("the model was loaded before the images were checked")

    monkeypatch.setattr(predict, "load", no_load)
    monkeypatch.setenv("EDGECNN_MAX_IMAGES", "2")
    one_line(cli("predict", folder, PHOTO, PHOTO, PHOTO), "images to predict 3 is above edgecnn's limit")
    monkeypatch.delenv("EDGECNN_MAX_IMAGES")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 Mpx in a few KB: its header says so
    one_line(cli("predict", folder, PHOTO, bomb), "bomb.png has more pixels than edgecnn's limit")


# --- 3. medium and low ---------------------------------------------------------------------------
def test_a_symlink_loop_is_one_line(folder):
    os.symlink("loop-b.onnx", folder / "loop-a.onnx")
    os.symlink("loop-a.onnx", folder / "loop-b.onnx")
    with pytest.raises(ArtifactError, match="symbolic link loop"):
        confined(folder, "loop-a.onnx", "t")
    edit(folder, lambda d: d["artifacts"][0].update(path="loop-a.onnx"))
    one_line(cli("check", folder), "loop-a.onnx", "symbolic link loop")


def test_received_names_are_not_markup_or_escape_sequences(folder):
    _rename_stage(folder, "simplify", "simplify[/]")
    r = cli("predict", folder, PHOTO, "--artifact", "simplify[/]")
    assert r.code == 0 and "simplify[/] (fp32) on onnxruntime" in " ".join(r.out.split()), r.err[-2000:]
    _rename_stage(folder, "simplify[/]", "sim" + EVIL)
    r = cli("predict", folder, PHOTO, "--artifact", "sim" + EVIL)
    assert r.code == 0 and "\\x1b]0;owned" in r.out, r.err[-2000:]
    for bad in ("\x1b", "\x07", "\r", "\u202e"):
        assert bad not in r.out + r.err


def test_layers_title_escapes_markup():
    from rich.console import Console

    from edgecnn.report import layers_table

    console = Console(file=io.StringIO(), width=200)
    for table in layers_table({"int8[/]" + EVIL: {"against": "simplify[/b]", "layers": 1, "worst": []}}):
        console.print(table)
    text = console.file.getvalue()
    assert "int8[/]" in text and "simplify[/b]" in text and "\x1b" not in text


def test_skipped_and_said_lines_are_escaped():
    from rich.console import Console

    from edgecnn.cli import _say

    console = Console(file=io.StringIO(), width=200)
    _say(console, f"skipped int8{EVIL}@openvino: [/] unavailable")
    text = console.file.getvalue()
    assert "\\x1b]0;owned" in text and "[/]" in text and "\x1b" not in text and "\u202e" not in text


def test_invisible_format_characters_are_escaped():
    hidden = "a\u200bb\u200cc\u200dd\u2060e\ufefff\u2028g\u2029h\U000e0041i\xadj\x85k"
    assert safe_text(hidden) == ("a\\u200bb\\u200cc\\u200dd\\u2060e\\ufefff\\u2028g\\u2029h\\U000e0041i\\xadj"
                                 "\\x85k")
    assert safe_text("plain ünïcode 日本語 é") == "plain ünïcode 日本語 é"


def test_a_huge_received_name_makes_a_short_message(folder):
    assert clip("x" * 1000) == "x" * 200 + "... (1,000 characters)"
    edit(folder, lambda d: d["artifacts"][0].update(stage="s" * 30_000_000, path="../outside.onnx"))
    line = one_line(cli("check", folder), "leads outside", "(30,000,000 characters)")
    assert len(line) < 1000
    edit(folder, lambda d: d["artifacts"][0].update(stage="s" * 30_000_000, path="model.onnx"))
    line = one_line(cli("check", folder), "artifact stage, parent or runtime length 30000000")
    assert len(line) < 1000


def test_a_closed_pipe_keeps_the_commands_status(folder):
    """`edgecnn check DIR | head -1`: the reader leaves; a passing check still exits 0, with no traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", "check", str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line is written: every write meets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err[-2000:]
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]


def test_a_full_tmpdir_is_named_not_the_output_folder(tmp_path, monkeypatch):
    """ONNX Runtime's quantizer works in $TMPDIR: when that is full, say so (and how to move it)."""
    import errno
    import tempfile

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    real = tempfile.mkdtemp

    def full(suffix=None, prefix=None, dir=None):
        where = Path(dir or tempfile.gettempdir()).resolve()
        if where == tmpdir.resolve():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where / f"{prefix}xyz"))
        return real(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    out = tmp_path / "out"
    r = cli("export", *MODEL, "--int8", "--out", out)
    assert r.code == 1 and "build FAILED for int8" in r.out, r.err  # the stage fails, the rest is kept
    error = json.loads((out / MANIFEST).read_text())["results"]["int8"]["error"]
    assert f"in the temporary folder {tmpdir} (TMPDIR)" in error and "set TMPDIR" in error, error
    assert "choose another output folder" not in error, error


def test_nncf_draws_no_progress_bar_when_quiet(tmp_path, monkeypatch):
    pytest.importorskip("nncf")
    import rich
    from rich.console import Console

    from edgecnn.data import Preprocessing, calibration_batch
    from edgecnn.exporters import openvino
    from edgecnn.manifest import Manifest

    out = tmp_path / "ov"
    assert cli("export", *MODEL[:2], "onnxruntime,openvino", "--quiet", "--out", out).code == 0
    manifest = Manifest.load(out)
    x = calibration_batch(Preprocessing.from_dict(manifest.preprocessing), 8)
    drawn = {}
    for progress in (True, False):
        screen = io.StringIO()
        monkeypatch.setattr(rich, "_console", Console(file=screen, force_terminal=True, width=100))
        openvino.quantize_nncf(manifest.artifact("openvino-fp32"), tmp_path / f"q{progress}.xml", x, progress=progress)
        drawn[progress] = screen.getvalue()
    assert "100%" in drawn[True] and drawn[False] == "", drawn  # a bar on a terminal; nothing when quiet


def test_engine_record_and_timing_cache_are_read_without_following_links(tmp_path, monkeypatch):
    from edgecnn.backends.tensorrt import read_sidecar, sidecar_path
    from edgecnn.exporters.tensorrt import _attach_timing_cache

    secret = tmp_path / "secret.json"
    secret.write_text('{"tensorrt": "10.3"}')
    engine = tmp_path / "model.engine"
    assert read_sidecar(engine) is None
    os.symlink(secret, sidecar_path(engine))
    with pytest.raises(ArtifactError, match="engine record .* symbolic link"):
        read_sidecar(engine)
    os.unlink(sidecar_path(engine))
    os.mkfifo(sidecar_path(engine))  # refused at once, never a blocked read
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_sidecar(engine)
    os.unlink(sidecar_path(engine))
    sidecar_path(engine).write_text('{"tensorrt": "10.3", "pad": "' + "x" * 2000 + '"}')
    assert read_sidecar(engine)["tensorrt"] == "10.3"
    monkeypatch.setenv("EDGECNN_MAX_FILE_BYTES", "1000")
    with pytest.raises(ArtifactError, match="above edgecnn's limit"):
        read_sidecar(engine)

    class Config:  # records what TensorRT would be handed; builds nothing and claims nothing
        def create_timing_cache(self, blob):
            self.blob = bytes(blob)
            return object()

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

    cache = tmp_path / "timing.cache"
    os.symlink(secret, cache)
    with pytest.raises(ArtifactError, match="timing cache .* symbolic link"):
        _attach_timing_cache(Config(), cache)
    os.unlink(cache)
    cache.write_bytes(b"y" * 2000)
    with pytest.raises(ArtifactError, match="above edgecnn's limit"):
        _attach_timing_cache(Config(), cache)
    monkeypatch.delenv("EDGECNN_MAX_FILE_BYTES")
    config = Config()
    assert _attach_timing_cache(config, cache)[1]["read_bytes"] == 2000 and config.blob == b"y" * 2000


def test_an_overlong_weights_name_is_one_short_line(folder):
    edit(folder, lambda d: d["config"].update(weights="a" * 5000))  # ENAMETOOLONG from the file system
    r = cli("check", folder)  # a name the file system cannot even resolve is no checkpoint of this folder's:
    text = " ".join(r.out.split())  # model.onnx stands in for the original, said in one short note
    assert r.code == 0 and "Traceback" not in r.err and "only with --trust-source" in text, r.out + r.err
    assert "a" * 300 not in r.out + r.err and max(map(len, (r.out + r.err).splitlines())) < 600
