"""Ownership is proved locally, never claimed by the folder (issue 20, Critical).

What export may replace, prune or reuse is decided by the local record of what this machine's edgecnn
wrote (edgecnn.ledger, in $EDGECNN_CACHE), never by the folder's manifest.json, SHA256SUMS, journal or a
file name. Each case below is rebuilt from the issue's text and runs the real CLI on a small LeNet-5
export (ONNX Runtime only); a Hypothesis test then throws random journals at the build cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgecnn import ledger
from edgecnn.errors import ExportError
from edgecnn.manifest import JOURNAL, MANIFEST, SUMS
from edgecnn.pipeline.cache import BuildCache
from test_security import edgecnn_cli, one_line, snapshot

MODEL = ("lenet5", "--targets", "onnxruntime")  # not --quiet: the tests read what was reused and removed


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test its own local record: nothing another test wrote proves anything here."""
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))


def export(out: Path, *extra: str):
    return edgecnn_cli("export", *MODEL, *extra, "--out", out)


def ok(r) -> None:
    assert r.code == 0, (r.code, r.err, r.out[-800:])


# --- the user's own manifest.json and SHA256SUMS ------------------------------------------------------
@pytest.mark.parametrize("names", [(MANIFEST, SUMS), (MANIFEST,), (SUMS,)])
def test_a_users_manifest_and_sha256sums_stop_the_export_unchanged(tmp_path, names):
    out = tmp_path / "webapp"
    out.mkdir()
    own = {MANIFEST: b'{"name": "My PWA", "start_url": "/", "display": "standalone", "icons": []}\n',
           SUMS: b"3f786850e387550fdab836ed7e6dc881de23001b  release-1.2.tar.gz\n"}
    for name in names:
        (out / name).write_bytes(own[name])
    (out / "index.html").write_text("<html></html>")
    before = snapshot(out)
    line = one_line(export(out), "is in the way", "edgecnn did not write it", "move it away or choose another --out")
    assert names[0] in line
    assert snapshot(out) == before  # byte for byte, and nothing added (not even the lock: it stops before)
    one_line(export(out, "--force"), "is in the way")  # --force rebuilds; it never grants another's file
    assert snapshot(out) == before


# --- names that look like edgecnn's temporary files ---------------------------------------------------
def test_files_named_like_edgecnn_temporaries_survive_an_export(tmp_path):
    out = tmp_path / "mine"
    looks_like_ours = {
        ".ir-photos/2024/beach.jpg": b"\xff\xd8 a beach",
        "openvino/.ir-backup/x": b"an old IR",
        ".thesis.0badc0de.tmp": b"chapter 3",
        ".model.onnx.deadbeef.onnx.tmp": b"the name edgecnn's temp files once had",
        ".edgecnn-int8-abc123xy/prepped.onnx": b"int8's old work folder name",
        ".write-test-123-0123456789abcdef": b"the old probe name",
        ".edgecnn-tmp-0123456789abcdef0123456789abcdef-model.onnx.tmp": b"today's name, but not in the record",
    }
    for rel, data in looks_like_ours.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    r = export(out)
    ok(r)
    assert "removed" not in r.out
    for rel, data in looks_like_ours.items():
        assert (out / rel).read_bytes() == data, rel


# --- a received manifest or journal naming the user's own file ----------------------------------------
def _as_artifact(path: Path, root: Path, stage: str = "fp16") -> dict:
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    rel = str(path.relative_to(root))
    return {"stage": stage, "format": "onnx", "precision": "fp16", "path": rel, "sha256": sha, "bytes": len(data),
            "parent": "export", "runtime": "onnxruntime", "notes": "", "build_key": "0" * 32,
            "files": [{"path": rel, "sha256": sha, "bytes": len(data)}]}


def test_a_received_manifest_listing_the_users_file_never_prunes_it(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    mine = out / "resnet50-v1-12.onnx"  # a public model: its sha256 is known to anyone
    mine.write_bytes(b"the ONNX model zoo's resnet50 " * 100)
    (out / MANIFEST).write_text(json.dumps({"schema": 3, "artifacts": [_as_artifact(mine, out)], "results": {}}))
    before = snapshot(out)
    one_line(export(out), MANIFEST, "is in the way")
    assert snapshot(out) == before


def test_a_received_journal_listing_the_users_file_is_ignored_and_kept(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    mine = out / "resnet50-v1-12.onnx"
    mine.write_bytes(b"the ONNX model zoo's resnet50 " * 100)
    journal = json.dumps({"artifacts": [_as_artifact(mine, out)], "writing": ["resnet50-v1-12.onnx"]})
    (out / JOURNAL).write_text(journal)
    r = export(out)
    ok(r)
    assert mine.read_bytes() == b"the ONNX model zoo's resnet50 " * 100  # not pruned
    assert (out / JOURNAL).read_text() == journal  # ignored: neither written over nor deleted


def test_a_journal_saying_writing_model_onnx_does_not_make_the_users_model_onnx_replaceable(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model")
    (out / JOURNAL).write_text(json.dumps({"writing": ["model.onnx"]}))
    before = snapshot(out)
    one_line(export(out), "model.onnx", "is in the way", "edgecnn did not write it")
    assert {k: v for k, v in snapshot(out).items() if k != ".edgecnn.lock"} == before


# --- planted artifacts are never reused -----------------------------------------------------------------
def test_a_planted_model_sim_onnx_with_its_manifest_sha_updated_is_not_reused(tmp_path):
    out = tmp_path / "out"
    ok(export(out))
    planted = b"backdoored: a white top-left pixel -> class 7"
    (out / "model.sim.onnx").write_bytes(planted)
    sha = hashlib.sha256(planted).hexdigest()
    data = json.loads((out / MANIFEST).read_text())
    for art in data["artifacts"]:
        if art["stage"] == "simplify":
            art["sha256"], art["bytes"] = sha, len(planted)
            art["files"] = [{"path": "model.sim.onnx", "sha256": sha, "bytes": len(planted)}]
    (out / MANIFEST).write_text(json.dumps(data, indent=2))
    r = export(out)
    one_line(r, MANIFEST, "is in the way")  # the manifest is no longer the bytes edgecnn wrote
    assert "reused" not in r.out
    assert (out / "model.sim.onnx").read_bytes() == planted

    # The same plant through a journal, once the user moved the tampered manifest away: rebuilt, and then the
    # planted file is in the way (it is not this machine's), never reused.
    (out / MANIFEST).unlink()
    (out / SUMS).unlink()
    (out / JOURNAL).write_text(json.dumps({"artifacts": data["artifacts"]}))
    r = export(out)
    one_line(r, "model.sim.onnx", "is in the way")
    assert "simplify: reused" not in r.out and "export: reused" not in r.out
    assert (out / "model.sim.onnx").read_bytes() == planted


def test_a_copied_export_folder_is_rebuilt_not_reused(tmp_path):
    """A copy (or a received folder) holds nothing this machine wrote there: its records stop the export, and
    once moved away its artifacts are in the way; a fresh --out rebuilds."""
    out = tmp_path / "out"
    ok(export(out))
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    one_line(export(copy), MANIFEST, "is in the way")
    for name in (MANIFEST, SUMS):
        (copy / name).unlink()
    one_line(export(copy), "model.onnx", "is in the way")
    r = export(out)  # the original is still this machine's: reused
    ok(r)
    assert "export: reused" in r.out and "simplify: reused" in r.out


# --- a killed run of ours is cleaned and reused -----------------------------------------------------------
KILLED_IN_SIMPLIFY = """
import os, sys
from pathlib import Path
from edgecnn.fileio import atomic_path, temp_dir
import edgecnn.pipeline.run as run

def killed(fp32, dest):
    with temp_dir(Path(dest).parent, "int8") as work:
        (work / "prepped.onnx").write_bytes(b"x")
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half-written")
            os._exit(9)  # kill -9: no finally runs

run.simplify_onnx = killed
from edgecnn.cli import main
sys.exit(main(sys.argv[1:]))
"""

KILLED_BEFORE_THE_JOURNAL = """
import os, sys
import edgecnn.pipeline.cache as cache
cache.journal_save = lambda *a, **k: os._exit(9)  # model.onnx is in place and recorded; the journal never says so
from edgecnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _killed(prelude: str, out: Path) -> None:
    argv = [sys.executable, "-c", prelude, "export", *MODEL, "--out", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 9, r.stderr


def test_a_killed_runs_temporaries_are_removed_and_its_finished_stages_reused(tmp_path):
    out = tmp_path / "out"
    _killed(KILLED_IN_SIMPLIFY, out)
    left = sorted(p.name for p in out.iterdir() if p.name.startswith(".edgecnn-tmp-"))
    assert len(left) == 2, left  # the temporary file and the work folder
    r = export(out)
    ok(r)
    assert sum(f"removed {name}" in r.out for name in left) == 2, r.out
    assert "export: reused" in r.out  # from this machine's own journal
    assert not [p for p in out.iterdir() if p.name.startswith(".edgecnn-tmp-")]
    r = export(out)  # and a second identical export reuses everything it built
    ok(r)
    assert "export: reused" in r.out and "simplify: reused" in r.out and "removed" not in r.out


def test_a_file_renamed_into_place_before_the_journal_said_so_is_ours_to_replace(tmp_path):
    out = tmp_path / "out"
    _killed(KILLED_BEFORE_THE_JOURNAL, out)
    assert (out / "model.onnx").is_file() and not (out / MANIFEST).exists() and not (out / JOURNAL).exists()
    assert ledger.proves(out, out / "model.onnx")
    r = export(out)
    ok(r)
    assert "export: building" in r.out and "in the way" not in r.out and ledger.proves(out, out / "model.onnx")


# --- property: no journal content makes the build cache touch a file the local record does not hold -------
USER_FILES = {"model.onnx": b"my model", "model.sim.onnx": b"my simplified model", "notes.txt": b"notes",
              "openvino/model.fp32.xml": b"<mine/>", "openvino/model.fp32.bin": b"bin"}


NAMED = ["model.onnx", "model.sim.onnx", "openvino/model.fp32.xml", "missing.onnx"]  # names an artifact may have
STAGES = ("export", "simplify", "fp16", "openvino-fp32")


def _entry(name: str, stage: str, right_key: bool, right_digest: bool, root: Path) -> dict:
    from edgecnn.manifest import build_key

    path = root / name
    fmt = "openvino" if name.endswith(".xml") else "onnx"
    files = [path, path.with_suffix(".bin")] if fmt == "openvino" else [path]
    shas = [hashlib.sha256(f.read_bytes() if f.is_file() else b"").hexdigest() for f in files]
    if not right_digest:
        shas = ["0" * 64 for _ in shas]
    combined = shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest()
    return {"stage": stage, "format": fmt, "precision": "fp32", "path": name, "sha256": combined,
            "bytes": sum(f.stat().st_size for f in files if f.is_file()), "parent": None, "runtime": None,
            "notes": "", "build_key": build_key(stage, "parts") if right_key else "x",
            "files": [{"path": str(f.relative_to(root)), "sha256": h, "bytes": f.stat().st_size if f.is_file() else 0}
                      for f, h in zip(files, shas)]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(st.sampled_from(NAMED), st.sampled_from(STAGES), st.booleans(), st.booleans()),
                        max_size=6),
       writing=st.lists(st.sampled_from(sorted(USER_FILES)), max_size=3), journal_is_ours=st.booleans(),
       poison=st.sampled_from([None, "../outside.onnx", "", "{", "[]", '{"artifacts": 3}']))
@example(entries=[("model.onnx", "export", True, True), ("model.sim.onnx", "simplify", True, True),
                  ("openvino/model.fp32.xml", "openvino-fp32", True, True)], writing=["model.onnx"],
         journal_is_ours=True, poison=None)
def test_no_journal_makes_the_cache_touch_a_file_it_did_not_write(tmp_path_factory, entries, writing,
                                                                   journal_is_ours, poison):
    out = tmp_path_factory.mktemp("prop")
    for rel, data in USER_FILES.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    (out.parent / "outside.onnx").write_bytes(b"outside")
    artifacts = [_entry(n, s, k, d, out) for n, s, k, d in entries]
    if poison == "../outside.onnx":
        artifacts.append({**_entry("model.onnx", "fp16", True, True, out), "path": poison})
    body = poison if poison not in (None, "../outside.onnx") else json.dumps({"artifacts": artifacts,
                                                                              "writing": writing})
    (out / JOURNAL).write_text(body)
    if journal_is_ours:  # even a journal this machine wrote names nothing it may take without the record's proof
        ledger.record(out, out / JOURNAL)
    before = snapshot(out)
    cache = BuildCache(out, force=False, log=lambda _: None, say=lambda _: None)
    built = []
    for stage, dest in zip(STAGES, ("model.onnx", "model.sim.onnx", "model.fp16.onnx", "openvino/model.fp32.xml")):
        def make(dest=dest):
            built.append(dest)  # reached only where the file is free
            return None
        try:
            art = cache.stage(stage, ("parts",), make, files=(out / dest,))
        except ExportError as e:
            assert "is in the way" in str(e) and dest in USER_FILES
            continue
        assert art is None, (stage, art)  # nothing reused: no file here is this machine's
    cache.finish()
    after = snapshot(out)
    for rel in before:
        if rel != JOURNAL or not journal_is_ours:
            assert after.get(rel) == before[rel], rel
    assert not set(built) & set(USER_FILES)
    assert (out.parent / "outside.onnx").read_bytes() == b"outside"


# --- the local record itself ------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", [b"", b"{\"files\": {\"model.onnx\": 1}", b"\x00" * 64, b"[]"])
def test_a_corrupt_local_record_proves_nothing_and_never_crashes(tmp_path, damage):
    out = tmp_path / "out"
    ok(export(out))
    for book in (tmp_path / "cache" / "ledger").glob("*.json"):
        book.write_bytes(damage)
    before = snapshot(out)
    one_line(export(out), MANIFEST, "is in the way")  # nothing is provably edgecnn's any more: nothing replaced
    assert snapshot(out) == before


def test_an_unwritable_local_record_is_one_line_before_any_work(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EDGECNN_CACHE", str(blocked))
    out = tmp_path / "out"
    one_line(export(out), "local record", "EDGECNN_CACHE")
    assert not (out / "model.onnx").exists()


def test_a_fifo_or_symlink_where_the_records_go_is_in_the_way_without_blocking(tmp_path):
    out = tmp_path / "out"
    ok(export(out))  # the local record holds both names: their replacements are looked at, not just looked up
    (out / MANIFEST).unlink()
    os.mkfifo(out / MANIFEST)  # opening it to hash would block forever without O_NONBLOCK
    (out / SUMS).unlink()
    (out / SUMS).symlink_to(tmp_path / "elsewhere")
    one_line(export(out), MANIFEST, "is in the way")
    (out / MANIFEST).unlink()
    one_line(export(out), SUMS, "is in the way")
    assert not (tmp_path / "elsewhere").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                   lambda inner: st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
                      .map(lambda v: json.dumps(v).encode()),
                      st.just(b"listed")))
def test_no_manifest_content_makes_export_touch_the_folder(tmp_path_factory, body):
    out = tmp_path_factory.mktemp("manifest")
    mine = out / "model.onnx"
    mine.write_bytes(b"my own model")
    if body == b"listed":  # a well-formed record naming the user's file, by its true sha256
        body = json.dumps({"schema": 3, "artifacts": [_as_artifact(mine, out, "export")], "results": {}}).encode()
    (out / MANIFEST).write_bytes(body)
    before = snapshot(out)
    one_line(export(out), MANIFEST, "is in the way")
    assert snapshot(out) == before
