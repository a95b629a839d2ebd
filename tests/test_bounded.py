"""Issue 20, the load path: verified bytes are the loaded bytes, and received files are bounded before any
work and cancellable during it. Rebuilt from the issue's text against one small LeNet-5 export:

- a ``.edgecnn.lock`` that is a FIFO is refused at once (it blocked check forever);
- a 200 GB sparse artifact with a small recorded size is refused by its size, before a byte is hashed;
- 20,000 artifacts pointing at one file are refused by the artifact limit, duplicates before any hashing;
- sources and checkpoints a manifest names outside its folder are never opened (no ``/proc/self/pagemap``,
  no ``.pt2`` run) without ``--trust-source``;
- a file swapped for a symlink after its hash was read is never loaded (time of check vs time of use);
- an ONNX ``Loop`` of 1e12 iterations ends at the run limit, and SIGTERM/SIGINT end check promptly;
- out-of-bounds Gather, integer division by zero and ConstantOfShape of 1e10 are failed rows, one line each.

The hostile graphs are built with onnx.helper, and every manifest records their true hashes: the attacker
is consistent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from edgecnn.errors import ArtifactError
from edgecnn.fileio import LOCK
from edgecnn.manifest import Manifest
from test_security import edgecnn_cli, edit_received, one_line

REPO = Path(__file__).resolve().parents[1]
SHAPE, CLASSES = (1, 1, 32, 32), 10  # LeNet-5's input and outputs


def hostile(kind: str) -> bytes:
    """A graph with LeNet-5's input and output that fails (or never ends) only when it runs."""
    inits = [nh.from_array(np.arange(CLASSES, dtype=np.int64), "idx")]
    nodes = [h.make_node("Flatten", ["input"], ["flat"]), h.make_node("Gather", ["flat", "idx"], ["g"], axis=1)]
    if kind == "benign":
        nodes.append(h.make_node("Identity", ["g"], ["logits"]))
    elif kind == "gather":  # indices far past the end
        inits.append(nh.from_array(np.full(CLASSES, 10**6, np.int64), "far"))
        nodes.append(h.make_node("Gather", ["flat", "far"], ["logits"], axis=1))
    elif kind == "div":  # integer division by a zero computed from the input (a constant one fails at load)
        nodes += [h.make_node("Cast", ["g"], ["gi"], to=T.INT64), h.make_node("Sub", ["gi", "gi"], ["zero"]),
                  h.make_node("Div", ["gi", "zero"], ["q"]), h.make_node("Cast", ["q"], ["logits"], to=T.FLOAT)]
    elif kind == "alloc":  # ConstantOfShape of 1e10 floats (40 GB), its shape from the input's batch
        inits.append(nh.from_array(np.array([10**10], np.int64), "big"))
        nodes += [h.make_node("Shape", ["input"], ["s"], start=0, end=1), h.make_node("Mul", ["s", "big"], ["n"]),
                  h.make_node("ConstantOfShape", ["n"], ["z"]), h.make_node("ReduceSum", ["z"], ["zs"], keepdims=1),
                  h.make_node("Add", ["g", "zs"], ["logits"])]
    elif kind == "loop":  # 1e12 iterations of an Add: ONNX Runtime's C++ is busy until the end of time
        body = h.make_graph(
            [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v_in", "one"], ["v_out"])],
            "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                     h.make_tensor_value_info("v_in", T.FLOAT, [1])],
            [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [1])],
            [nh.from_array(np.ones(1, np.float32), "one")])
        inits += [nh.from_array(np.array(10**12, np.int64), "trips"), nh.from_array(np.array(True), "cond"),
                  nh.from_array(np.array([1], np.int64), "one_shape")]
        nodes += [h.make_node("ReduceSum", ["flat"], ["v0"], keepdims=0), h.make_node("Reshape", ["v0", "one_shape"], ["v1"]),
                  h.make_node("Loop", ["trips", "cond", "v1"], ["v_end"], body=body),
                  h.make_node("Add", ["g", "v_end"], ["logits"])]
    graph = h.make_graph(nodes, kind, [h.make_tensor_value_info("input", T.FLOAT, list(SHAPE))],
                         [h.make_tensor_value_info("logits", T.FLOAT, [SHAPE[0], CLASSES])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def record(stage: str, name: str, data: bytes) -> dict:
    """The manifest entry for ``data`` written as ``name``: its true sha256 and size."""
    sha = hashlib.sha256(data).hexdigest()
    return {"stage": stage, "format": "onnx", "precision": "fp32", "path": name, "sha256": sha, "bytes": len(data),
            "parent": "export", "runtime": "onnxruntime", "notes": "", "build_key": "",
            "files": [{"path": name, "sha256": sha, "bytes": len(data)}]}


def plant(folder: Path, stage: str, data: bytes, *, only: bool = False) -> Path:
    """``data`` as artifact ``stage`` of ``folder`` (``only``: the folder's one artifact), hashes matching."""
    path = folder / f"model.{stage}.onnx"
    path.write_bytes(data)
    edit_received(folder, lambda d: d.update(artifacts=([] if only else d["artifacts"]) + [record(stage, path.name, data)]))
    return path


@pytest.fixture
def folder(received_lenet) -> Path:
    return received_lenet


def in_thread(fn, timeout: float):
    """``fn()``'s result, or a test failure when it has not returned within ``timeout`` seconds."""
    box: list = []

    def target():
        try:
            box.append((fn(), None))
        except Exception as e:  # noqa: BLE001 - raised again in the test's thread
            box.append((None, e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert box, f"still running after {timeout} s"
    if box[0][1] is not None:
        raise box[0][1]
    return box[0][0]


# --- bounded before work -------------------------------------------------------------------------
def test_a_fifo_lock_is_refused_without_blocking(folder):
    (folder / LOCK).unlink(missing_ok=True)
    os.mkfifo(folder / LOCK)
    for argv in (("check", folder), ("bench", folder, "--iterations", "1"), ("predict", folder, "x.jpg")):
        one_line(in_thread(lambda: edgecnn_cli(*argv), 30), LOCK, "not a regular file")


def test_a_huge_sparse_artifact_is_refused_by_its_recorded_size(folder):
    sim = folder / "model.sim.onnx"
    with open(sim, "r+b") as f:
        f.truncate(200 << 30)  # 200 GB of holes: hashing them would take many minutes
    t0 = time.perf_counter()
    line = one_line(in_thread(lambda: edgecnn_cli("check", folder), 60), "simplify")
    assert time.perf_counter() - t0 < 30, "the 200 GB file was read"
    with pytest.raises(ArtifactError, match="not the .* recorded"):
        from edgecnn.artifact import verified_bytes
        verified_bytes(Manifest.load(folder).artifact("simplify"))
    assert "Traceback" not in line


def test_twenty_thousand_artifacts_on_one_file_are_refused_before_hashing(folder):
    data = (folder / "model.onnx").read_bytes()
    entry = record("export", "model.onnx", data)
    edit_received(folder, lambda d: d.update(artifacts=[{**entry, "stage": f"s{i}"} for i in range(20_000)]))
    t0 = time.perf_counter()
    one_line(edgecnn_cli("check", folder), "number of artifacts 20000", "EDGECNN_MAX_ARTIFACTS")
    assert time.perf_counter() - t0 < 20
    # under the limit, one file listed twice is refused as such, before any of it is hashed
    edit_received(folder, lambda d: d.update(artifacts=[{**entry, "stage": f"s{i}"} for i in range(2)]))
    one_line(edgecnn_cli("check", folder), "model.onnx is listed by more than one artifact")


def test_a_folders_total_artifact_size_is_bounded(folder, monkeypatch):
    monkeypatch.setenv("EDGECNN_MAX_ARTIFACT_BYTES", "1000")
    one_line(edgecnn_cli("check", folder), "artifacts' recorded size", "EDGECNN_MAX_ARTIFACT_BYTES")


class Opened:
    """Every path Python opens while it is on (an audit hook: ``open`` covers builtin open and os.open)."""

    paths: list[str] = []
    on = False


def _audit(event, args):
    if Opened.on and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        Opened.paths.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.mark.parametrize("where", ["weights", "onnx", "program"])
def test_sources_and_checkpoints_outside_the_folder_are_never_opened(folder, tmp_path, where):
    outside = tmp_path / "outside" / ("model.pt2" if where == "program" else "ckpt.pth")
    outside.parent.mkdir()
    outside.write_bytes(b"not yours to read")
    if where == "weights":
        edit_received(folder, lambda d: (d["config"].update(weights=str(outside)),
                                         d.update(weights={"source": str(outside), "sha256": "0" * 64})))
    else:
        edit_received(folder, lambda d: d.update(source={"kind": where, "ref": str(outside), "name": "m", "args": {},
                                                         "sha256": hashlib.sha256(b"not yours to read").hexdigest()}))
    Opened.paths, Opened.on = [], True
    try:
        r = edgecnn_cli("check", folder)
    finally:
        Opened.on = False
    assert not [p for p in Opened.paths if str(outside.parent) in p], Opened.paths
    assert r.code == 0 and "outside its folder" in " ".join(r.out.split()), r.out + r.err
    assert "Traceback" not in r.err
    # /proc/self/pagemap (a 'file' of 256 GB of virtual memory) is never hashed either
    edit_received(folder, lambda d: d["config"].update(weights="/proc/self/pagemap"))
    if where == "weights":
        assert edgecnn_cli("check", folder).code == 0


def test_a_checkpoint_inside_the_folder_that_lies_about_its_size_is_refused(tmp_path):
    from edgecnn.guard import hash_bounded

    with pytest.raises(ArtifactError, match="not the size it says"):
        hash_bounded("/proc/self/status", what="checkpoint")  # fstat says 0 bytes
    os.mkfifo(tmp_path / "ckpt.pth")
    with pytest.raises(ArtifactError, match="not a regular file"):
        in_thread(lambda: hash_bounded(tmp_path / "ckpt.pth", what="checkpoint"), 10)


# --- verified bytes are the loaded bytes -----------------------------------------------------------
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_file_swapped_for_a_symlink_after_its_hash_is_never_loaded(folder, tmp_path, monkeypatch, runtime):
    import edgecnn.runtimes as runtimes

    if runtimes.availability()[runtime]:
        pytest.skip(f"{runtime} is not installed here")

    path = plant(folder, "planted", hostile("benign"))
    art = Manifest.load(folder).artifact("planted")
    elsewhere = tmp_path / "elsewhere.onnx"
    elsewhere.write_bytes(hostile("gather"))  # loaded, it would fail to run
    real = runtimes.verified_bytes

    def then_swap(a):
        data = real(a)
        path.unlink()
        path.symlink_to(elsewhere)  # right after the hash read
        return data

    monkeypatch.setattr(runtimes, "verified_bytes", then_swap)
    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    with runtimes.load(art, runtime=runtime) as rt:
        out = rt.run(x)  # the bytes that were hashed: the benign graph
    np.testing.assert_array_equal(out, x.reshape(1, -1)[:, :CLASSES])
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="symbolic link"):  # and a fresh load refuses the link
        runtimes.load(art, runtime=runtime)


def test_a_schema_2_record_is_verified_by_total_size_then_combined_hash(tmp_path):
    from edgecnn.artifact import Artifact, combine, verified_bytes

    xml, bin_ = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_bytes(b"<net/>")
    bin_.write_bytes(b"\0" * 64)
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (xml, bin_)]
    art = Artifact("openvino-fp32", "openvino", "fp32", xml, sha256=combine(hashes), bytes=70)  # no per-file digests
    assert verified_bytes(art) == [b"<net/>", b"\0" * 64]
    bin_.write_bytes(b"\1" * 64)  # same size, other bytes
    with pytest.raises(ArtifactError, match="sha256 differs"):
        verified_bytes(art)
    with open(bin_, "r+b") as f:
        f.truncate(200 << 30)
    with pytest.raises(ArtifactError, match="not the 70 recorded"):
        verified_bytes(art)


def test_check_loads_no_artifact_swapped_after_verification(folder, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.copy(folder / "model.sim.onnx", elsewhere)
    real = Manifest.verify

    def then_swap(self):
        real(self)
        (folder / "model.sim.onnx").unlink()
        (folder / "model.sim.onnx").symlink_to(elsewhere)

    monkeypatch.setattr(Manifest, "verify", then_swap)
    r = edgecnn_cli("check", folder, "--runtimes", "onnxruntime", "--json", tmp_path / "r.json")
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert "symbolic link; refused" in errors(tmp_path / "r.json")["simplify"]


def errors(json_report: Path) -> dict[str, str | None]:
    """artifact -> its row's error, from ``check --json``."""
    return {r["artifact"]: r["error"] for r in json.loads(json_report.read_text())["results"]}


# --- cancellable during ----------------------------------------------------------------------------
def test_a_loop_of_1e12_iterations_ends_at_the_run_limit(folder, monkeypatch, tmp_path):
    plant(folder, "loop", hostile("loop"))
    monkeypatch.setenv("EDGECNN_MAX_RUN_SECONDS", "5")
    t0 = time.perf_counter()
    r = in_thread(lambda: edgecnn_cli("check", folder, "--runtimes", "onnxruntime", "--json", tmp_path / "r.json"), 120)
    assert time.perf_counter() - t0 < 60
    assert r.code == 1 and "Traceback" not in r.err, r.err
    found = errors(tmp_path / "r.json")
    assert "limit of 5 s" in found["loop"] and "EDGECNN_MAX_RUN_SECONDS" in found["loop"]
    assert not found["export"] and not found["simplify"]  # the others ran as ever


def test_bench_and_predict_run_a_received_graph_only_once_it_ended_in_a_worker(folder, monkeypatch, tmp_path):
    from PIL import Image

    plant(folder, "loop", hostile("loop"))
    monkeypatch.setenv("EDGECNN_MAX_RUN_SECONDS", "5")
    t0 = time.perf_counter()
    r = in_thread(lambda: edgecnn_cli("bench", folder, "--runtimes", "onnxruntime", "--iterations", "2",
                                      "--json", tmp_path / "b.json"), 120)
    assert time.perf_counter() - t0 < 90 and "Traceback" not in r.err, r.err
    rows = {row["artifact"]: row for row in json.loads((tmp_path / "b.json").read_text())["results"]}
    assert "limit of 5 s" in rows["loop"]["error"] and rows["export"]["latency"], rows["loop"]
    Image.new("L", (40, 40), 128).save(tmp_path / "x.png")
    line = one_line(in_thread(lambda: edgecnn_cli("predict", folder, tmp_path / "x.png", "--artifact", "loop"), 60),
                    "limit of 5 s")
    assert "EDGECNN_MAX_RUN_SECONDS" in line
    assert edgecnn_cli("predict", folder, tmp_path / "x.png", "--artifact", "simplify").code == 0


def _workers(job_marker: str) -> list[int]:
    """Processes whose command line names a worker folder under ``job_marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if job_marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("sig,word,code", [(signal.SIGTERM, "terminated", 143), (signal.SIGINT, "interrupted", 130)])
def test_sigterm_and_ctrl_c_end_a_check_stuck_in_a_received_graph(folder, tmp_path, sig, word, code):
    plant(folder, "loop", hostile("loop"), only=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", "check", str(folder), "--runtimes", "onnxruntime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not list(tmp.glob("edgecnn-worker-*/x.npy")) or not _workers(str(tmp)):
            if proc.poll() is not None:
                pytest.fail(f"check ended before its worker ran: {proc.communicate()}")
            assert time.monotonic() < deadline, "check started no worker for the received graph"
            time.sleep(0.2)
        time.sleep(2)  # the worker is in the Loop now
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code and len(lines) == 1 and word in lines[0], err
    time.sleep(0.5)
    assert not _workers(str(tmp)), "the worker outlived the check"


# --- backend errors are rows, not tracebacks ---------------------------------------------------------
def test_graphs_that_fail_when_they_run_are_failed_rows(folder):
    from edgecnn.harness.check import check_dir

    for kind in ("gather", "div", "alloc"):
        plant(folder, kind, hostile(kind))
    report = check_dir(folder, runtimes=("onnxruntime",), n_images=2)
    rows = {r.artifact: r for r in report.results}
    assert not rows["export"].error and not rows["simplify"].error
    assert "out of data bounds" in rows["gather"].error
    assert "division by zero" in rows["div"].error
    assert "allocate" in rows["alloc"].error
    assert not report.passed
    r = edgecnn_cli("check", folder, "--runtimes", "onnxruntime", "--num-images", "2")
    assert r.code == 1 and "Traceback" not in r.err + r.out and not r.err.strip(), r.err


def test_runtime_run_errors_are_one_line_in_process_too(folder):
    from edgecnn.runtimes import load

    plant(folder, "gather", hostile("gather"))
    with load(Manifest.load(folder).artifact("gather")) as rt:
        with pytest.raises(ArtifactError, match="onnxruntime failed to run .*out of data bounds"):
            rt.run(np.zeros(SHAPE, np.float32))


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. "
                                                                 "DefaultCPUAllocator: can't allocate memory: you tried "
                                                                 "to allocate 40000000000 bytes. Error code 12")])
def test_running_out_of_memory_is_one_line(folder, monkeypatch, error):
    import edgecnn.cli as cli

    def allocate(_args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "check", allocate)
    one_line(edgecnn_cli("check", folder), "out of memory")


def test_a_symlink_loop_in_a_manifest_path_is_one_line(folder):
    (folder / "a.onnx").symlink_to(folder / "b.onnx")
    (folder / "b.onnx").symlink_to(folder / "a.onnx")
    edit_received(folder, lambda d: d["artifacts"][1].update(path="a.onnx", files=[]))
    one_line(edgecnn_cli("check", folder), "a.onnx", "symbolic link loop")
