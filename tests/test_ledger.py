"""edgecnn.ledger: the local record outside a folder that alone proves a file there is edgecnn's."""
import hashlib
import os
import subprocess
import sys

import pytest

from edgecnn import ledger


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "c"))
    assert ledger.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGECNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ledger.cache_dir() == tmp_path / "x" / "edgecnn"
    from edgecnn import weights
    assert weights.cache_dir is ledger.cache_dir  # one copy of the rule


def test_record_proves_exact_bytes_only(tmp_path, own_cache):
    out = tmp_path / "out"
    out.mkdir()
    f = out / "model.onnx"
    f.write_bytes(b"ours")
    assert not ledger.proves(out, f)  # never recorded
    ledger.record(out, f)
    assert ledger.proves(out, f) and ledger.proven(out, f) == hashlib.sha256(b"ours").hexdigest()
    assert sorted(out.iterdir()) == [f] and len(list((own_cache / "ledger").glob("*.json"))) == 1  # kept outside
    f.write_bytes(b"ours!")  # size differs
    assert not ledger.proves(out, f)
    f.write_bytes(b"OURS")  # same size, other bytes
    assert not ledger.proves(out, f)
    f.write_bytes(b"ours")
    assert ledger.proves(out, f)
    ledger.forget(out, f)
    assert not ledger.proves(out, f)


def test_a_recorded_sha_given_by_the_caller_is_what_must_match(tmp_path):
    f = tmp_path / "a.onnx"
    f.write_bytes(b"x")
    ledger.record(tmp_path, f, sha256="0" * 64)
    assert not ledger.proves(tmp_path, f)


def test_symlink_fifo_and_outside_paths_prove_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    real = out / "real.onnx"
    real.write_bytes(b"ours")
    ledger.record(out, real)
    link = out / "link.onnx"
    link.symlink_to(real)
    assert not ledger.proves(out, link)
    os.mkfifo(out / "fifo.onnx")
    assert not ledger.proves(out, out / "fifo.onnx")  # returns at once: never blocks on a FIFO
    with pytest.raises(Exception):
        ledger.record(out, out / "fifo.onnx")
    assert not ledger.proves(out, tmp_path / "elsewhere.onnx")
    assert not ledger.proves(tmp_path / "nope", tmp_path / "nope" / "x")


def test_a_copy_or_a_new_folder_at_the_same_path_proves_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.onnx").write_bytes(b"ours")
    ledger.record(out, out / "m.onnx")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "m.onnx").write_bytes(b"ours")
    assert not ledger.proves(copy, copy / "m.onnx")
    os.rename(out, tmp_path / "moved")
    out.mkdir()  # a new folder (another inode) where the old one was
    (out / "m.onnx").write_bytes(b"ours")
    assert not ledger.proves(out, out / "m.onnx")


def test_subfolders_are_recorded_under_their_own_directory(tmp_path):
    (tmp_path / "openvino").mkdir()
    f = tmp_path / "openvino" / "model.fp32.xml"
    f.write_bytes(b"<xml/>")
    ledger.record(tmp_path, f)
    assert ledger.proves(tmp_path, f) and ledger.proves(tmp_path / "openvino", f)
    with pytest.raises(ValueError):
        ledger.record(tmp_path / "openvino", tmp_path / "x.onnx")


@pytest.mark.parametrize("garbage", [b"", b"{", b"[]", b'{"files": 3}', b"\xff\xfe", b'{"files": {}, "pending": {}}'])
def test_a_corrupt_ledger_proves_nothing_and_never_crashes(tmp_path, own_cache, garbage):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"ours")
    ledger.record(tmp_path, f)
    (book,) = (own_cache / "ledger").glob("*.json")
    book.write_bytes(garbage)
    assert not ledger.proves(tmp_path, f)
    assert ledger.stale(tmp_path) == []
    ledger.record(tmp_path, f)  # rewritten from empty
    assert ledger.proves(tmp_path, f)


def test_pending_of_a_killed_process_is_stale_and_a_live_ones_is_not(tmp_path):
    tmp = tmp_path / ".edgecnn-tmp-0123-model.onnx.tmp"
    code = ("import sys, os; from edgecnn import ledger; from pathlib import Path; p = Path(sys.argv[1]);"
            "ledger.pending(p.parent, p); p.write_bytes(b'half'); os._exit(9)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp)], env={**os.environ}, timeout=60)
    assert r.returncode == 9 and tmp.exists()
    assert ledger.stale(tmp_path) == [tmp]
    mine = tmp_path / ".edgecnn-tmp-4567-x.tmp"
    ledger.pending(tmp_path, mine)
    mine.write_bytes(b"being written")
    assert ledger.stale(tmp_path) == [tmp]  # this process is alive: its temp is not stale
    tmp.unlink()
    assert ledger.stale(tmp_path) == []  # and a gone name is forgotten
    ledger.forget(tmp_path, mine)
    assert ledger.stale(tmp_path) == []
