import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgecnn.errors import DownloadError, WeightsError
from edgecnn.weights import download, head_classes, load_checkpoint, load_into


def _small(classes=10):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(1), nn.Linear(4, classes))


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(_small().state_dict(), path)
    return path


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on the loopback interface, serving tmp_path; stopped after the test."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_roundtrip_and_wrapped_checkpoints(tmp_path, checkpoint):
    sd = load_checkpoint(checkpoint)
    m = _small()
    assert load_into(m, sd, source="ckpt") == []
    for wrapper, prefix in (("state_dict", "module."), ("model", "model."), ("model_state_dict", "net."),
                            ("state_dict", "model.module.")):  # DDP, Lightning, plain loops, nested
        wrapped = tmp_path / "wrapped.pth"
        torch.save({"epoch": 3, wrapper: {f"{prefix}{k}": v for k, v in sd.items()}}, wrapped)
        m = _small()
        assert load_into(m, load_checkpoint(wrapped), source="ckpt") == []
        assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items())


def test_prefix_kept_where_the_model_has_it(checkpoint):
    """A model whose own keys start with 'model.' keeps a checkpoint's 'model.' prefix."""
    sd = load_checkpoint(checkpoint)
    outer = nn.Module()
    outer.model = _small()
    assert load_into(outer, {f"model.{k}": v for k, v in sd.items()}, source="ckpt") == []


def test_head_classes_read_from_the_checkpoint(checkpoint):
    sd = load_checkpoint(checkpoint)  # a 10-class head
    assert head_classes(_small(classes=1000), sd, 1000) == 10
    assert head_classes(_small(classes=10), sd, 10) is None  # same size: nothing to infer
    two_layer = {**sd, "4.weight": torch.zeros(5, 10)}  # another structure: not a size difference
    assert head_classes(_small(classes=1000), two_layer, 1000) is None


def test_mismatch_names_first_key(checkpoint):
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(1), nn.Linear(8, 10))
    with pytest.raises(WeightsError, match=r"first mismatching key '0.weight'.*\(4, 3, 3, 3\)"):
        load_into(m, load_checkpoint(checkpoint), source="ckpt")


def test_new_head_for_transfer_learning(checkpoint):
    m = _small(classes=3)
    skipped = load_into(m, load_checkpoint(checkpoint), source="ckpt", classes=(10, 3))
    assert skipped == ["3.weight", "3.bias"]
    assert torch.equal(m[0].weight, load_checkpoint(checkpoint)["0.weight"])


def test_code_running_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(WeightsError, match="refused|not a readable"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.pth"
    p.write_text("hello")
    with pytest.raises(WeightsError):
        load_checkpoint(p)
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_download_over_http_with_hash_check_and_cache(tmp_path, server, checkpoint):
    cache = tmp_path / "cache"
    got = download(f"{server}/ckpt.pth", sha256=_sha(checkpoint)[:8], dest_dir=cache, progress=False)
    assert got.read_bytes() == checkpoint.read_bytes()
    mtime = got.stat().st_mtime_ns
    again = download(f"{server}/ckpt.pth", sha256=_sha(checkpoint), dest_dir=cache, progress=False)
    assert again == got and again.stat().st_mtime_ns == mtime  # verified cache hit, no re-download


def test_wrong_hash_leaves_nothing(tmp_path, server, checkpoint):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="does not match"):
        download(f"{server}/ckpt.pth", sha256="deadbeef", dest_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_file_url_and_offline_message(tmp_path, checkpoint):
    got = download(checkpoint.as_uri(), sha256=_sha(checkpoint), dest_dir=tmp_path / "c", progress=False)
    assert got.is_file()
    with pytest.raises(DownloadError, match="offline.*--weights PATH"):
        download("http://127.0.0.1:9/none.pth", sha256=None, dest_dir=tmp_path / "c2", progress=False, timeout=2)
    assert not any((tmp_path / "c2").glob("*.pth"))
