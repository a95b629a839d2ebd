"""Where the cells run: Ray (a local one, or a cluster at ``address``), or one after another in this process.

Ray (``pip install 'edgecnn[sweep]'``) is the engine; this module only says what each cell needs:

- a cell of device class ``jetson_orin`` asks for a sliver of the custom resource ``jetson_orin`` (a board
  started with ``ray start --resources '{"jetson_orin": 1}'``), so it runs only there; class ``local`` runs
  anywhere;
- the export (1 CPU) runs wherever Ray places it, several at once; the timing then runs on **the same node**
  (a hard node affinity: the artifact, its engine or int8 preset, was made there) and asks for **every CPU of
  that node**: the per-node exclusive resource, so no export and no other timing shares a core with it;
- Ray retries a task whose node or worker died (``max_retries``), never one whose code raised
  (``retry_exceptions=False``): a compile error fails its cell once, with its reason.

Security: a local Ray is started listening on the loopback interface only (checked after start); a cluster is
joined only at the address the user gave, and only with Ray's token authentication on (``RAY_AUTH_MODE=token``)
unless ``insecure``. Before any cell is submitted every node is asked its Ray, Python and edgecnn versions.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable

from ..errors import ConfigError, MissingBackendError
from ..guard import clip, safe_text
from .cells import LOCAL, Cell, bench_cell, export_cell, failed_row, node_facts

INSTALL = "pip install 'edgecnn[sweep]'"
PROBE_S = 120.0  # a node's probe must answer within this (a version mismatch stops its workers from starting)
LOOPBACK = ("127.", "::1", "localhost")


def ray_module():
    """Ray, or None where it is not installed."""
    try:
        import ray
    except ImportError:
        return None
    return ray


def connect(*, address: str | None, insecure: bool, num_cpus: int | None = None) -> tuple[object, bool]:
    """Ray connected (``address``: a cluster, else a new local instance on the loopback interface); and whether
    this call started it (and so must shut it down)."""
    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read at import: the node IP is 127.0.0.1
    ray = ray_module()
    if ray is None:
        raise MissingBackendError("ray", "sweep")
    if ray.is_initialized():  # the caller's own Ray (a notebook, a test): used as it is, never shut down here
        return ray, False
    if address is not None:
        token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        if not token and not insecure:
            raise ConfigError(f"--address {clip(address, 80)}: a Ray cluster runs any code sent to it; join it only "
                              "with token authentication on (RAY_AUTH_MODE=token and the cluster's token, see the "
                              "README's Security model), or pass --insecure to join a cluster anyone who can reach "
                              "it can also run code on")
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        return ray, True
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # Ray was imported before the variable was set (same meaning)
    asked = os.environ.get("RAY_AUTH_MODE")
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # Ray turns token auth on for a local instance by setting RAY_AUTH_MODE in this process: restore the user's
    # value, so a later --address in this process is judged by what the user set, not by what Ray did here
    if asked is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = asked
    wide = [n["NodeManagerAddress"] for n in ray.nodes() if not str(n["NodeManagerAddress"]).startswith(LOOPBACK)]
    if wide:
        ray.shutdown()
        raise ConfigError(f"the local Ray listened on {safe_text(wide[0])}, beyond this machine: stopped it")
    return ray, True


def auth_on(ray) -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:
        return False
    return is_token_auth_enabled()


def alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def nodes_of(nodes: list[dict], device: str) -> list[dict]:
    return nodes if device == LOCAL else [n for n in nodes if n.get("Resources", {}).get(device, 0) > 0]


def probe_nodes(ray, devices: list[str]) -> dict[str, dict]:
    """Every alive node's facts (node id -> facts), after checking that it runs this machine's Ray, Python and
    edgecnn; a device class no node offers is an error naming the resource to start one with."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes(ray)
    for device in devices:
        if not nodes_of(nodes, device):
            raise ConfigError(f"no node of the cluster offers the device class '{safe_text(device)}': start one with "
                              f"ray start --address ... --resources '{{\"{safe_text(device)}\": 1}}'")
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote() for n in nodes}
    here = _versions()
    facts = {}
    for node in nodes:
        address = safe_text(node.get("NodeManagerAddress"))
        ready, _ = ray.wait([refs[node["NodeID"]]], timeout=PROBE_S)
        if not ready:
            raise ConfigError(f"node {address} did not answer within {PROBE_S:.0f} s (a Ray or Python version that "
                              f"differs from this machine's, Ray {here['ray']} on Python {here['python']}, stops "
                              "its workers from starting)")
        there = ray.get(ready[0])
        if not isinstance(there, dict) or not isinstance(there.get("versions"), dict):
            raise ConfigError(f"node {address} answered the version probe with something else")
        theirs = _versions(there["versions"])
        if theirs != here:
            raise ConfigError(f"node {address} runs Ray {clip(theirs['ray'], 20)} on Python "
                              f"{clip(theirs['python'], 20)} with edgecnn {clip(theirs['edgecnn'], 20)}; this "
                              f"machine runs Ray {here['ray']} on Python {here['python']} with edgecnn "
                              f"{here['edgecnn']}: every node needs the same (README: Sweeping the matrix)")
        facts[node["NodeID"]] = there
    return facts


def _probe() -> dict:
    return node_facts()


def _versions(v: dict | None = None) -> dict:
    if v is None:
        from .. import __version__
        import ray

        v = {"ray": ray.__version__, "python": platform.python_version(), "edgecnn": __version__}
    py = str(v.get("python", "?")).split(".")
    return {"ray": str(v.get("ray")), "python": ".".join(py[:2]), "edgecnn": str(v.get("edgecnn"))}


def run_ray(ray, cells: list[Cell], *, work_root: str | None, on_row: Callable[[Cell, dict], None],
            on_start: Callable[[Cell], None] = lambda c: None, node_wait_s: float = 300.0,
            lost_retries: int = 1) -> None:
    """Submit every cell; ``on_row(cell, row)`` as each finishes (untrusted: the caller validates it)."""
    from ray.exceptions import (NodeDiedError, ObjectLostError, OutOfMemoryError, RayTaskError,
                                TaskUnschedulableError, WorkerCrashedError)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    lost_errors = (NodeDiedError, ObjectLostError, WorkerCrashedError, TaskUnschedulableError)
    export = ray.remote(max_retries=3, retry_exceptions=False)(export_cell)
    bench = ray.remote(max_retries=3, retry_exceptions=False)(bench_cell)

    def submit_export(cell: Cell):
        res = {} if cell.device == LOCAL else {cell.device: 0.001}
        return export.options(num_cpus=1, resources=res).remote(cell, work_root)

    pending = {}  # ref -> (stage, cell, attempt)
    for cell in cells:
        pending[submit_export(cell)] = ("export", cell, 0)
        on_start(cell)
    missing_since: dict[str, float] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
        for ref in ready:
            stage, cell, attempt = pending.pop(ref)
            try:
                row = ray.get(ref)
            except lost_errors as e:
                if attempt < lost_retries:  # the node came back, or another of its class took over
                    pending[submit_export(cell)] = ("export", cell, attempt + 1)
                else:
                    on_row(cell, failed_row(cell, f"lost: {type(e).__name__} (its node left the cluster)",
                                            status="lost"))
                continue
            except OutOfMemoryError:
                on_row(cell, failed_row(cell, "out of memory (Ray's memory monitor killed its worker)"))
                continue
            except RayTaskError as e:
                on_row(cell, failed_row(cell, str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)))
                continue
            if stage == "export" and isinstance(row, dict) and row.get("status") == "ok" and row.get("node_id"):
                node = next((n for n in alive_nodes(ray) if n["NodeID"] == row["node_id"]), None)
                cpus = (node or {}).get("Resources", {}).get("CPU", 1)
                strategy = NodeAffinitySchedulingStrategy(str(row["node_id"]), soft=False)
                pending[bench.options(num_cpus=cpus, scheduling_strategy=strategy).remote(cell, row)] = \
                    ("bench", cell, attempt)
            else:
                on_row(cell, row)
        _give_up_on_missing(ray, pending, missing_since, node_wait_s, on_row)


def _give_up_on_missing(ray, pending: dict, missing_since: dict, node_wait_s: float, on_row) -> None:
    """Cells of a device class no alive node offers wait for one to (re)join; after ``node_wait_s`` they are
    reported lost (a rerun completes them)."""
    nodes = alive_nodes(ray)
    now = time.monotonic()
    for device in {c.device for _s, c, _a in pending.values()}:
        if nodes_of(nodes, device):
            missing_since.pop(device, None)
            continue
        since = missing_since.setdefault(device, now)
        if now - since < node_wait_s:
            continue
        for ref, (_stage, cell, _a) in list(pending.items()):
            if cell.device == device:
                ray.cancel(ref, force=True)
                del pending[ref]
                on_row(cell, failed_row(cell, f"lost: no node of class '{device}' came back within "
                                              f"{node_wait_s:.0f} s", status="lost"))


def run_sequential(cells: list[Cell], *, work_root: str | None, on_row: Callable[[Cell, dict], None],
                   on_start: Callable[[Cell], None] = lambda c: None) -> None:
    """The fallback without Ray: the same cell functions, one after another, in this process."""
    for cell in cells:
        on_start(cell)
        row = export_cell(cell, work_root)
        if row.get("status") == "ok":
            row = bench_cell(cell, row)
        on_row(cell, row)


def say(line: str) -> None:
    print(line, file=sys.stderr)
