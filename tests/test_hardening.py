"""Hardening: every bad input is one line on stderr, a non-zero exit and no traceback, and leaves
nothing that a later run trusts; faults (Ctrl-C, two exports at once, a full disk, a server that
never answers) are survived the same way. Plus a property test of fp32 export parity.

Most cases run the real CLI in a subprocess, as a user would. The quick bad-input cases are
started together (a few subprocesses at a time) so this file stays fast on two cores; each one
still reports as its own test.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecnn import ledger, runtimes
from edgecnn.data import BUNDLED_DIR, Preprocessing, calibration_batch, evaluation_batch, to_model_mode
from edgecnn.errors import ArtifactError, ConfigError, DownloadError, MissingBackendError
from edgecnn.manifest import Manifest
from edgecnn.backends.tensorrt import sidecar_path
from edgecnn.exporters.torch_onnx import export_onnx
from edgecnn.runtimes.torch import reference_logits
from edgecnn.parity import compare
from edgecnn.models import create_model, get_spec, preprocessing
from edgecnn.runtimes.tensorrt import _check_build_record
from edgecnn.fileio import TEMP_PREFIX, sha256_file
from edgecnn.weights import download

HAS_OV = runtimes.availability()["openvino"] is None
TIMEOUT = 240
SMALL = ("squeezenet1_1", "--resolution", "64", "--calib-size", "8", "--targets", "onnxruntime")


# --- helpers ------------------------------------------------------------------------------------
def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", *args]


def cli_after(prelude: str, *args: str) -> list[str]:
    """The CLI in a fresh interpreter that first runs ``prelude`` (hide a backend, limit file sizes...)."""
    code = f"{prelude}\nimport sys\nfrom edgecnn.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


def one_line_error(r: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one non-empty stderr line that contains every needle."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_valid_manifest(out: Path) -> Manifest:
    """manifest.json parses, every artifact it lists matches its sha256, and no temporary file is left."""
    json.loads((out / "manifest.json").read_text())
    manifest = Manifest.load(out)
    manifest.verify()
    for art in manifest.artifacts:
        if art.format == "onnx":
            assert sha256_file(art.path) == art.sha256, art.key
    assert_no_leftovers(out)
    return manifest


def adopt(folder: Path) -> None:
    """Record every file of ``folder`` in this machine's local record (edgecnn.ledger), as an export here would."""
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            ledger.record(folder, p)


def assert_no_leftovers(out: Path) -> None:
    """No temporary files, and every final-named ONNX file is a complete model."""
    import onnx

    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name.startswith(
        (TEMP_PREFIX, ".ir-", ".edgecnn-int8-", ".write-test-"))], sorted(out.rglob("*"))
    for path in out.rglob("*.onnx"):
        onnx.checker.check_model(str(path))


def truncate(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


# --- shared inputs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> SimpleNamespace:
    """Bad (and oddly shaped but good) inputs, made once."""
    root = tmp_path_factory.mktemp("hardening")
    w = SimpleNamespace(root=root)
    photo = Image.open(BUNDLED_DIR / "coffee.jpg").convert("RGB")
    w.photo = photo

    # Calibration images in every mode a user's folder may hold, plus two broken JPEGs and a text file.
    mixed = root / "mixed"
    (mixed / "class_a").mkdir(parents=True)
    for name in ("astronaut", "rocket"):
        shutil.copy(BUNDLED_DIR / f"{name}.jpg", mixed / "class_a" / f"{name}.jpg")
    photo.convert("L").save(mixed / "gray.jpg")
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    rgba.save(mixed / "rgba.png")
    gray16 = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(mixed / "gray16.png")
    Image.fromarray(gray16).save(mixed / "gray16.tif")
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(mixed / "palette.png")
    photo.convert("CMYK").save(mixed / "cmyk.jpg")
    (mixed / "garbage.jpg").write_bytes(b"this is not a JPEG")
    (mixed / "truncated.jpg").write_bytes((BUNDLED_DIR / "chelsea.jpg").read_bytes()[:2000])
    (mixed / "notes.txt").write_text("not an image")
    w.mixed = mixed

    w.empty = root / "empty"
    w.empty.mkdir()
    w.texts = root / "texts"
    w.texts.mkdir()
    (w.texts / "a.txt").write_text("x")
    (w.texts / "b.csv").write_text("1,2")
    w.broken = root / "broken"
    w.broken.mkdir()
    (w.broken / "a.jpg").write_bytes(b"garbage")
    (w.broken / "b.jpg").write_bytes((BUNDLED_DIR / "coffee.jpg").read_bytes()[:1500])

    w.a_file = root / "a_file"  # a folder path under it cannot be created, even by root
    w.a_file.write_text("x")
    w.text_ckpt = root / "text.pth"
    w.text_ckpt.write_text("hello")
    w.other_arch = root / "squeezenet1_0.pth"
    torch.save(get_spec("squeezenet1_0").builder(num_classes=1000).state_dict(), w.other_arch)
    w.pwned = root / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {w.pwned}",))

    w.evil = root / "evil.pth"
    torch.save({"w": Evil()}, w.evil)
    return w


@pytest.fixture(scope="module")
def exported(ws) -> tuple[Path, subprocess.CompletedProcess]:
    """One real int8 export through the CLI, calibrated on the mixed folder."""
    out = ws.root / "exported"
    r = run(cli("export", *SMALL, "--int8", "--calib-dir", str(ws.mixed), "--out", str(out), "--quiet"))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def test_odd_calibration_images_work_and_broken_ones_are_one_warning(exported):
    out, r = exported
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "warning: skipped 2 unreadable image(s)" in lines[0]
    assert "garbage.jpg" in lines[0] and "truncated.jpg" in lines[0]
    manifest = assert_valid_manifest(out)
    assert {"export", "simplify", "int8"} <= {a.stage for a in manifest.artifacts}
    assert manifest.config["calib_dir"]
    for art in manifest.artifacts:  # readable by others, like any file the user writes (not mkstemp's 0600)
        assert art.path.stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_image_modes_are_converted_by_bit_depth(ws):
    photo = ws.photo
    gray = photo.convert("L")
    prep = Preprocessing(64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rgb_of_gray = prep(gray.convert("RGB"))
    # 16-bit: 65535 -> 255, so a 16-bit copy of a photo preprocesses exactly like its 8-bit original,
    # and a dark 16-bit photo stays dark (not stretched to its own maximum).
    for dark in (1, 2):
        arr8 = np.asarray(gray, np.uint16) // dark
        twin16 = Image.fromarray((arr8 * 257).astype(np.uint16))
        assert twin16.mode.startswith("I;16")
        twin8 = Image.fromarray(arr8.astype(np.uint8)).convert("RGB")
        assert np.array_equal(np.asarray(to_model_mode(twin16, 3)), np.asarray(twin8))
    assert np.allclose(prep(Image.open(ws.mixed / "gray16.png")), rgb_of_gray)
    assert np.allclose(prep(Image.open(ws.mixed / "gray16.tif")), rgb_of_gray)
    mode_i = Image.fromarray((np.asarray(gray, np.int32) * 257).astype(np.int32))  # how some readers open 16-bit PNG
    assert mode_i.mode == "I" and np.allclose(prep(mode_i), rgb_of_gray)
    assert np.allclose(prep(Image.open(ws.mixed / "gray.jpg")), prep(Image.open(ws.mixed / "gray.jpg").convert("RGB")))
    clear = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent: the white it is shown on
    assert to_model_mode(clear, 3).getpixel((0, 0)) == (255, 255, 255)
    assert to_model_mode(Image.new("RGBA", (40, 30), (255, 0, 0, 255)), 3).getpixel((0, 0)) == (255, 0, 0)
    assert to_model_mode(Image.open(ws.mixed / "cmyk.jpg"), 3).mode == "RGB"
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        batch = calibration_batch(prep, 9, folder=ws.mixed)
    assert batch.shape == (9, 3, 64, 64) and np.isfinite(batch).all()


# --- bad inputs through the CLI, run together --------------------------------------------------
HIDE_OPENVINO = "import sys\nsys.modules['openvino'] = None\nsys.modules['nncf'] = None"
# A full disk, simulated without root tricks: files may not grow past 1 MB, and the signal that would
# kill the process is ignored, so write() fails with EFBIG exactly where a full disk gives ENOSPC.
DISK_FULL = ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))")

def export(*extra: str) -> list[str]:
    """The small export with ``extra`` options into a fresh output folder (``{out}``, filled in per case)."""
    return cli("export", *SMALL, *extra, "--out", "{out}")


# id -> (argv from the workspace, what the one stderr line must say).
BAD = {
    "unknown-model": (lambda w: cli("export", "mobilenet_v9", "--out", "{out}"),
                      ("unknown model 'mobilenet_v9'", "did you mean")),
    "unknown-model-info": (lambda w: cli("info", "resnet_51"), ("unknown model 'resnet_51'",)),
    "resolution-too-small": (lambda w: cli("export", "squeezenet1_1", "--resolution", "8", "--out", "{out}"),
                             ("resolution 8 is too small for squeezenet1_1", "at least 17")),
    "resolution-not-a-number": (lambda w: cli("export", "squeezenet1_1", "--resolution", "abc"),
                                ("--resolution", "expected a positive integer, got 'abc'")),
    "resolution-fraction": (lambda w: cli("info", "squeezenet1_1", "--resolution", "64.5"), ("--resolution", "'64.5'")),
    "num-classes-zero": (lambda w: cli("export", "squeezenet1_1", "--num-classes", "0"), ("--num-classes", "got 0")),
    "num-classes-negative": (lambda w: cli("export", "squeezenet1_1", "--num-classes", "-3"),
                             ("--num-classes", "got -3")),
    "batch-zero": (lambda w: cli("export", "squeezenet1_1", "--batch", "0"), ("--batch", "positive integer, got 0")),
    "bench-batch-zero": (lambda w: cli("bench", str(w.exported), "--batch", "1,0"), ("--batch", "got 0")),
    "opset-too-old": (lambda w: export("--opset", "9"), ("opset must be an integer from 13",)),
    "calib-size-zero": (lambda w: export("--int8", "--calib-size", "0"), ("--calib-size", "got 0")),
    "unknown-target": (lambda w: cli("export", "squeezenet1_1", "--targets", "coreml", "--out", "{out}"),
                       ("unknown target 'coreml'", "onnxruntime, openvino, tensorrt")),
    "weights-missing": (lambda w: export("--weights", str(w.root / "nope.pth")), ("weights file not found", "nope.pth")),
    "weights-not-a-checkpoint": (lambda w: export("--weights", str(w.text_ckpt)),
                                 ("text.pth is not a readable PyTorch checkpoint",)),
    "weights-other-architecture": (lambda w: export("--weights", str(w.other_arch)),
                                   ("first mismatching key 'features.0.weight'", "(96, 3, 7, 7)", "(64, 3, 3, 3)")),
    "weights-pickle-runs-code": (lambda w: export("--weights", str(w.evil)), ("evil.pth was refused", "posix.system")),
    "calib-folder-missing": (lambda w: export("--int8", "--calib-dir", str(w.root / "nope")), ("image folder not found",)),
    "calib-folder-empty": (lambda w: export("--int8", "--calib-dir", str(w.empty)), ("no images (.jpg",)),
    "calib-folder-no-images": (lambda w: export("--int8", "--calib-dir", str(w.texts)), ("no images (.jpg",)),
    "calib-folder-all-broken": (lambda w: export("--int8", "--calib-dir", str(w.broken)),
                                ("none of the images could be read", "a.jpg", "b.jpg")),
    "eval-images-missing": (lambda w: cli("check", str(w.exported), "--images", str(w.root / "nope")),
                            ("image folder not found",)),
    "out-under-a-file": (lambda w: cli("export", *SMALL, "--out", str(w.a_file / "sub")),
                         ("is not writable", "Not a directory")),
    "out-is-a-file": (lambda w: cli("export", *SMALL, "--out", str(w.a_file)), ("is not writable", "a file has that name")),
    "json-under-a-file": (lambda w: cli("bench", str(w.exported), "--json", str(w.a_file / "b.json")),
                          ("is not writable",)),
    "disk-full": (lambda w: cli_after(DISK_FULL, "export", *SMALL, "--out", "{out}"),
                  ("cannot write", "model.onnx", "File too large")),
    "openvino-not-installed": (lambda w: cli_after(HIDE_OPENVINO, "export", *SMALL[:3], "--targets", "openvino",
                                                   "--out", "{out}"),
                               ("openvino is not available", "pip install 'edgecnn[openvino]'")),
    "check-no-manifest": (lambda w: cli("check", str(w.root / "nothing")), ("no manifest.json",)),
    "check-manifest-truncated": (lambda w: cli("check", str(w.bad["manifest-truncated"])), ("manifest.json is corrupt",)),
    "bench-manifest-binary": (lambda w: cli("bench", str(w.bad["manifest-binary"])), ("manifest.json is corrupt",)),
    "check-manifest-wrong-shape": (lambda w: cli("check", str(w.bad["manifest-list"])), ("manifest.json is corrupt",)),
    "check-artifact-truncated": (lambda w: cli("check", str(w.bad["int8-truncated"])),
                                 ("artifact int8", "model.int8.onnx", "truncated or modified")),
    "bench-artifact-truncated": (lambda w: cli("bench", str(w.bad["int8-truncated"]), "--iterations", "2"),
                                 ("artifact int8", "model.int8.onnx", "truncated or modified")),
    "check-artifact-missing": (lambda w: cli("check", str(w.bad["sim-missing"])), ("artifact simplify", "is missing")),
    "bench-artifact-garbage": (lambda w: cli("bench", str(w.bad["export-garbage"])), ("artifact export", "model.onnx")),
    "report-missing-file": (lambda w: cli("report", str(w.root / "nope.json")), ("cannot read results file",)),
    "report-not-results": (lambda w: cli("report", str(w.exported / "manifest.json")),
                           ("not an edgecnn bench or check result",)),
}


def _corrupt_copies(src: Path, root: Path) -> dict[str, Path]:
    """Copies of a good export, each broken in one way."""
    out = {}
    for name, breakage in {
        "manifest-truncated": lambda d: truncate(d / "manifest.json", 0.3),
        "manifest-binary": lambda d: (d / "manifest.json").write_bytes(b"\x00\xff\xfe\x00"),
        "manifest-list": lambda d: (d / "manifest.json").write_text("[1, 2]"),
        "int8-truncated": lambda d: truncate(d / "model.int8.onnx"),
        "sim-missing": lambda d: (d / "model.sim.onnx").unlink(),
        "export-garbage": lambda d: (d / "model.onnx").write_bytes(os.urandom(4096)),
    }.items():
        dest = root / "corrupt" / name
        shutil.copytree(src, dest)
        breakage(dest)
        out[name] = dest
    return out


@pytest.fixture(scope="module")
def bad_runs(ws, exported) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    ws.exported = exported[0]
    ws.bad = _corrupt_copies(exported[0], ws.root)
    jobs = {}
    for case, (argv, _) in BAD.items():
        out = ws.root / "bad-out" / case
        jobs[case] = ([a.replace("{out}", str(out)) for a in argv(ws)], out)
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {case: pool.submit(run, argv) for case, (argv, _) in jobs.items()}
        return {case: (f.result(), jobs[case][1]) for case, f in futures.items()}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, bad_runs, ws):
    r, out = bad_runs[case]
    one_line_error(r, *BAD[case][1])
    if out.exists():  # nothing a later run would trust
        assert not (out / "manifest.json").exists() and not list(out.rglob("*.onnx")), sorted(out.rglob("*"))
        assert_no_leftovers(out)
    assert not ws.pwned.exists(), "the pickle's code ran"


def test_bad_inputs_leave_good_folders_alone(bad_runs, ws):
    for name in ("int8-truncated", "sim-missing"):  # check/bench only read: the broken copy is left as it was
        assert (ws.bad[name] / "manifest.json").is_file()
    assert_valid_manifest(ws.exported)


# --- the Python API: devices, corrupt files, engines ---------------------------------------------
def test_runtime_asked_for_a_device_it_does_not_have(exported):
    import onnxruntime as ort

    onnx_path = exported[0] / "model.onnx"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
            runtimes.load(onnx_path, device="cuda")
    with pytest.raises(ConfigError, match="cannot run on 'tpu'"):
        runtimes.load(onnx_path, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            runtimes.load(torch.nn.Linear(2, 2), device="cuda")
    if HAS_OV:
        import openvino as ov

        if "NPU" not in ov.Core().available_devices:
            with pytest.raises(ConfigError, match="OpenVINO has no NPU device"):
                runtimes.load(onnx_path, runtime="openvino", device="npu")


def test_corrupt_artifacts_through_the_python_api(exported, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    shutil.copy(exported[0] / "model.onnx", onnx_path)
    truncate(onnx_path, 0.3)
    with pytest.raises(ArtifactError, match="onnxruntime could not load") as info:
        runtimes.load(onnx_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="artifact not found"):
        runtimes.load(tmp_path / "absent.onnx")
    with pytest.raises(ConfigError, match="cannot tell which runtime"):
        runtimes.load(tmp_path / "model.tflite")
    if not HAS_OV:
        return
    from edgecnn.exporters.openvino import convert_ir
    from edgecnn.artifact import describe

    good = describe(exported[0] / "model.onnx", stage="export", precision="fp32", parent=None)
    ir = convert_ir(good, tmp_path / "ir" / "model.fp32.xml", precision="fp32")
    for broken, keep in ((ir.path.with_suffix(".bin"), 0.5), (ir.path, 0.5)):
        saved = broken.read_bytes()
        truncate(broken, keep)
        with pytest.raises(ArtifactError, match="openvino could not load") as info:
            runtimes.load(ir.path)
        message = str(info.value)
        assert "\n" not in message and "Exception from src" not in message, message
        broken.write_bytes(saved)


def test_engine_from_another_tensorrt_or_gpu_is_refused_without_tensorrt(tmp_path):
    """The build-record check runs before TensorRT is touched, so it is tested here without it."""
    engine = tmp_path / "model.fp32.engine"
    engine.write_bytes(b"\0" * 64)
    here = {"tensorrt": "10.3.0", "compute_capability": "sm_87", "gpu": "Orin"}
    sidecar_path(engine).write_text(json.dumps({"tensorrt": "8.6.1", "compute_capability": "sm_75"}))
    with pytest.raises(ArtifactError, match=r"TensorRT 8\.6\.1 for sm_75; this machine has TensorRT 10\.3\.0 / sm_87"
                                            r".*--targets tensorrt"):
        _check_build_record(engine, here)
    sidecar_path(engine).write_text(json.dumps({"tensorrt": "10.3.0", "compute_capability": "sm_75"}))
    with pytest.raises(ArtifactError, match="sm_75"):  # same TensorRT, another GPU architecture
        _check_build_record(engine, here)
    sidecar_path(engine).write_text(json.dumps({"tensorrt": "10.3.0", "compute_capability": "sm_87"}))
    _check_build_record(engine, here)  # a match passes
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable engine record"):
        _check_build_record(engine, here)
    if runtimes.availability()["tensorrt"]:  # no TensorRT here: loading says which extra to install
        with pytest.raises(MissingBackendError, match=r"pip install 'edgecnn\[tensorrt\]'"):
            runtimes.load(engine, device="cuda")


def test_download_times_out_against_a_server_that_never_answers(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept_and_say_nothing():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"timed out.*--weights PATH"):
            download(f"http://127.0.0.1:{server.getsockname()[1]}/w.pth", sha256=None, dest_dir=tmp_path / "cache",
                     timeout=1, progress=False)
        assert time.monotonic() - t0 < 10
        assert held, "the server never saw the connection"
        assert not list((tmp_path / "cache").iterdir()), "a partial download was left in the cache"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


# --- faults: Ctrl-C, two exports at once ----------------------------------------------------------
def interrupt_at(marker: str, argv: list[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    """Start ``argv``, send ``sig`` once stdout shows ``marker``; (exit code, stderr, stdout seen)."""
    # SIGINT as a terminal delivers it: a runner that starts us in the background (`cmd &` in a script)
    # leaves SIGINT ignored, which children inherit and Python then never turns into KeyboardInterrupt.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        for line in proc.stdout:  # rich flushes every line
            seen.append(line)
            if marker in line:
                proc.send_signal(sig)
                break
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, "".join(seen)


# Calibration of 8 small images takes a fraction of a second; 50 ms per image makes sure Ctrl-C lands in it.
SLOW_CALIBRATION = ("import time\nfrom edgecnn.exporters import int8\n_next = int8.BatchReader.get_next\n"
                    "int8.BatchReader.get_next = lambda self: (time.sleep(0.05), _next(self))[1]")


def test_ctrl_c_during_int8_calibration_then_resume(exported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)  # calibrated on other images: export and simplify reuse, int8 rebuilds
    adopt(out)  # a copy is nobody's to reuse (issue 20): record it as this machine's, as if exported here
    before = Manifest.load(out)
    args = ("export", *SMALL, "--int8", "--out", str(out))
    code, err, seen = interrupt_at("int8: building", cli_after(SLOW_CALIBRATION, *args))
    assert "int8: building" in seen, seen
    one_line_error(SimpleNamespace(returncode=code, stderr=err), "interrupted", code=130)
    assert_no_leftovers(out)
    assert Manifest.load(out).artifacts == before.artifacts  # the old record still describes the old files
    Manifest.load(out).verify()
    r = run(cli(*args))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "export: reused" in r.stdout and "simplify: reused" in r.stdout and "int8: building" in r.stdout
    after = assert_valid_manifest(out)
    assert after.artifact("int8").sha256 != before.artifact("int8").sha256
    assert after.artifact("export").sha256 == before.artifact("export").sha256


def test_interrupted_first_export_reuses_its_finished_stages(tmp_path):
    """A fresh folder has no manifest to reuse from: the journal of the interrupted run is what is reused."""
    out = tmp_path / "out"
    args = ("export", *SMALL, "--int8", "--out", str(out))
    code, err, seen = interrupt_at("int8: building", cli_after(SLOW_CALIBRATION, *args), signal.SIGTERM)
    assert "int8: building" in seen, seen
    one_line_error(SimpleNamespace(returncode=code, stderr=err), "terminated", code=143)
    assert not (out / "manifest.json").exists()  # nothing claims to be a finished export
    assert_no_leftovers(out)
    r = run(cli(*args))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "export: reused" in r.stdout and "simplify: reused" in r.stdout and "int8: building" in r.stdout
    assert_valid_manifest(out)
    assert not (out / ".edgecnn-journal.json").exists()


@pytest.mark.parametrize("sig,word,code", [(signal.SIGINT, "interrupted", 130), (signal.SIGTERM, "terminated", 143)])
def test_ctrl_c_or_sigterm_during_export_then_resume(tmp_path, sig, word, code):
    out = tmp_path / "out"
    argv = cli("export", *SMALL, "--out", str(out))
    code_seen, err, seen = interrupt_at("export: building", argv, sig)
    assert "export: building" in seen, seen
    one_line_error(SimpleNamespace(returncode=code_seen, stderr=err), word, code=code)
    assert not (out / "manifest.json").exists()
    assert_no_leftovers(out)  # a model.onnx may be there if the export finished first, but only a complete one
    r = run(argv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {"export", "simplify"} <= {a.stage for a in assert_valid_manifest(out).artifacts}


def test_two_exports_into_one_folder_at_once(tmp_path):
    out = tmp_path / "out"
    runs = [cli("export", *SMALL, "--out", str(out)), cli("export", *SMALL, "--int8", "--out", str(out))]
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in runs]
    results = [p.communicate(timeout=TIMEOUT) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr
    manifest = assert_valid_manifest(out)
    listed = {a.path for a in manifest.artifacts}
    assert listed <= {p.resolve() for p in out.glob("*.onnx")}
    assert {"export", "simplify"} <= {a.stage for a in manifest.artifacts}


# --- property: fp32 export parity over model configurations ---------------------------------------
WIDTH_MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v1_g3")


@st.composite
def model_configs(draw):
    name = draw(st.sampled_from(WIDTH_MODELS + ("squeezenet1_1",)))
    options = {} if name == "squeezenet1_1" else {"width_mult": draw(st.sampled_from((0.25, 0.5, 0.75, 1.0, 1.4)))}
    return name, options, draw(st.integers(32, 96)), draw(st.integers(1, 1000)), draw(st.integers(1, 4))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=model_configs())
def test_fp32_export_parity_holds_for_any_configuration(config, tmp_path):
    name, options, resolution, num_classes, batch = config
    spec = get_spec(name)
    model = create_model(name, num_classes=num_classes, **options)
    x = evaluation_batch(preprocessing(spec, resolution), batch)
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        art = export_onnx(model, Path(work) / "model.onnx", input_shape=(batch, spec.in_chans, resolution, resolution))
        with runtimes.load(art, threads=1) as rt:
            out = rt.run(x)
    assert out.shape == (batch, num_classes)
    result = compare(reference_logits(model, x), out, name=f"{name}{options}@{resolution}", precision="fp32")
    assert result, str(result)
