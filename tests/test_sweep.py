"""edgecnn sweep on a real Ray (no mocks of it): a local instance, and a two-node cluster on this machine.

The cells are SqueezeNet 1.1 at 32x32 with random weights (seconds each), and a TensorRT cell that fails on a
machine without TensorRT (a failed cell is a row with its reason, never a crash of the sweep).
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from edgecnn.backends import unavailable  # noqa: E402
from edgecnn.cli import main  # noqa: E402
from edgecnn.errors import ArtifactError, ConfigError  # noqa: E402
from edgecnn.matrix import Cell, cells as cellmod, store, sweep  # noqa: E402
from edgecnn.matrix.command import pareto_front  # noqa: E402

MODEL = "squeezenet1_1"
QUICK = dict(weights="random", resolution=32, iterations=10, warmup=1, progress=False)
NO_TRT = unavailable("tensorrt") is not None  # a tensorrt cell fails here, with its reason


def _statuses(result) -> list[tuple]:
    return [(r["model"], r["precision"], r["runtime"], r["device"], r["status"]) for r in result.rows]


def _cells_on_disk(out) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / store.CELLS).glob("*.json")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    old = os.environ.get("EDGECNN_CACHE")
    os.environ["EDGECNN_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # the ledger and the nodes' work folders
    yield
    if old is None:
        os.environ.pop("EDGECNN_CACHE", None)
    else:
        os.environ["EDGECNN_CACHE"] = old


def test_local_ray_sequential_fallback_and_resume(tmp_path, cache):
    targets = ("onnxruntime", "tensorrt") if NO_TRT else ("onnxruntime",)
    on_ray = sweep([MODEL], precisions=("fp32",), targets=targets, out=tmp_path / "ray", num_cpus=2, **QUICK)
    assert on_ray.engine == "ray" and not ray.is_initialized()  # it started its own Ray, and stopped it
    ok = on_ray.rows[0]
    assert ok["status"] == "ok" and ok["latency_ms"] > 0 and ok["p90_ms"] >= ok["p50_ms"] > 0
    assert ok["verdict"] == "pass" and ok["cosine"] > 0.999 and ok["size_bytes"] > 1e6
    assert ok["facts"]["cpu"] and ok["facts"]["versions"]["ray"] == ray.__version__
    if NO_TRT:
        assert on_ray.rows[1]["status"] == "failed" and "tensorrt" in on_ray.rows[1]["reason"].lower()
    matrix = json.loads((tmp_path / "ray" / store.MATRIX).read_text())
    assert [r["status"] for r in matrix["rows"]] == [r["status"] for r in on_ray.rows]
    assert (tmp_path / "ray" / "sweep.csv").read_text().splitlines()[0].startswith("model,precision,runtime")

    inline = sweep([MODEL], precisions=("fp32",), targets=targets, out=tmp_path / "seq", use_ray=False, **QUICK)
    assert inline.engine == "sequential"
    assert _statuses(inline) == _statuses(on_ray)  # the same matrix (timings aside)
    assert [r["key"] for r in inline.rows] == [r["key"] for r in on_ray.rows]  # same cells, same node facts

    assert main(["report", str(tmp_path / "seq" / store.MATRIX), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000

    before = _cells_on_disk(tmp_path / "ray")
    again = sweep([MODEL], precisions=("fp32",), targets=targets, out=tmp_path / "ray", num_cpus=2, **QUICK)
    assert again.reused == len(on_ray.rows) and _cells_on_disk(tmp_path / "ray") == before  # nothing rerun
    assert [r["latency_ms"] for r in again.rows] == [r["latency_ms"] for r in on_ray.rows]


def test_received_rows_are_checked(tmp_path):
    cell = Cell(MODEL, "fp32", "onnxruntime")
    good = cellmod.failed_row(cell, "boom")
    assert cellmod.validate_row(good, cell)["reason"] == "boom"
    for bad in ({**good, "status": "great"}, {**good, "model": "vgg19"}, {**good, "latency_ms": float("nan")},
                {**good, "reason": None}, {**good, "status": "ok"}, {**good, "cosine": "1.0"}, ["not", "a", "row"]):
        with pytest.raises(ArtifactError):
            cellmod.validate_row(bad, cell)
    assert "\\x1b" in cellmod.validate_row({**good, "reason": "\x1b[2Jgone"}, cell)["reason"]
    # a cell file this machine did not write is neither reused nor replaced
    planted = tmp_path / store.CELLS / f"{cell.request_key}.json"
    planted.parent.mkdir(parents=True)
    planted.write_text(json.dumps(good))
    rows, notes = store.finished(tmp_path, [cell])
    assert rows == {} and "not written by this machine" in notes[0]
    with pytest.raises(ConfigError, match="did not write it"):
        store.save_cell(tmp_path, good)
    (tmp_path / store.MATRIX).write_text("{}")  # someone's file where the matrix goes: refused before any work
    with pytest.raises(ConfigError, match="did not write it"):
        sweep([MODEL], out=tmp_path, use_ray=False, **QUICK)


def test_pareto_front_and_options(tmp_path):
    assert pareto_front([(1.0, 0.5), (2.0, 0.7), (1.5, 0.4), (3.0, 0.7)]) == [0, 1]
    (tmp_path / "m.toml").write_text('models = ["squeezenet1_1"]\nprecisions = ["fp32"]\nresolution = 32\n')
    assert store.read_toml(tmp_path / "m.toml")["resolution"] == 32
    for bad, why in (('modles = ["x"]', "unknown key"), ("resolution = \"32\"", "must be int"), ("[[", "not valid")):
        (tmp_path / "bad.toml").write_text(bad)
        with pytest.raises(ConfigError, match=why):
            store.read_toml(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="need Ray|cluster's --address"):
        sweep([MODEL], devices=("jetson_orin",), out="/nonexistent", **QUICK)
    with pytest.raises(ConfigError, match="token authentication"):
        sweep([MODEL], address="192.0.2.1:6379", out="/nonexistent", **QUICK)


@pytest.fixture(scope="module")
def cluster(cache):
    """A head node without the device and one node that is the 'tinydev' device class; token auth on."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # this process reads the mode again (Ray caches it): the driver sends the token too
    AuthenticationTokenLoader.instance().reset_cache()  # ...and this token, not a local Ray's earlier one
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    device = c.add_node(num_cpus=1, resources={"tinydev": 1})
    c.wait_for_nodes()
    yield c, device
    ray.shutdown()
    c.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_cluster_device_cells_run_on_their_node_and_survive_its_loss(tmp_path, cluster):
    c, device = cluster
    out = tmp_path / "farm"
    result: dict = {}
    opts = dict(precisions=("fp32", "int8"), devices=("tinydev",), address=c.address, out=out, node_wait_s=120,
                **QUICK)

    def run():
        try:
            result["r"] = sweep([MODEL], **opts)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["e"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 150
    while not list((out / store.CELLS).glob("*.json")) and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.2)
    first = _cells_on_disk(out)
    assert len(first) == 1, (first, result)
    c.remove_node(device)  # mid-sweep: the other cell's node is gone
    time.sleep(1)
    c.add_node(num_cpus=1, resources={"tinydev": 1})  # ...and comes back
    t.join(200)
    assert not t.is_alive() and "e" not in result, result.get("e")
    rows = result["r"].rows
    assert {r["precision"] for r in rows} == {"fp32", "int8"}
    assert all(r["status"] in ("ok", "lost") for r in rows), [r["reason"] for r in rows]
    assert any(r["status"] == "ok" for r in rows)
    assert {k: v for k, v in _cells_on_disk(out).items() if k in first} == first  # the finished cell kept
    head = c.head_node.node_id
    for r in rows:
        if r["status"] == "ok":
            assert r["node_id"] != head and r["facts"]["versions"]["ray"] == ray.__version__
    again = sweep([MODEL], **opts)  # resumed: reruns nothing finished
    assert again.reused == sum(r["status"] == "ok" for r in rows)
    assert all(r["status"] == "ok" for r in again.rows)
