"""One cell of a sweep: a model at one precision on one runtime, on one device class.

A cell runs where it is measured (an engine or an ISA-chosen int8 preset is only valid where it was built):
:func:`export_cell` exports and judges it there, :func:`bench_cell` times the artifact there. Both return a
plain row (JSON types only); whatever comes back from another node is checked by :func:`validate_row` before
anything reads it, like any received file.

Keys: :func:`request_key` (what was asked: model, weights and their hash, precision, runtime, device class,
scenario, options) and :func:`facts_key` (where it ran: CPU model and ISA, GPU, OS, the int8 preset this node
picks, every tool's version). A finished row is reused only when both match a node of its class today.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ArtifactError, ConfigError, EdgecnnError, first_line
from ..guard import clip, hash_bounded, limit, safe_text

PRECISIONS = ("fp32", "fp16", "int8")
STATUSES = ("ok", "failed", "lost")
LOCAL = "local"  # the device class of a sweep without --devices: any node
REASON_CHARS = 300
SCHEMA = 1


@dataclass(frozen=True)
class Cell:
    model: str
    precision: str
    runtime: str
    device: str = LOCAL
    weights: str | None = None  # None: the zoo default; "random"; "imagenet"; a checkpoint path
    weights_sha256: str | None = None  # a checkpoint file's hash, read on this machine
    resolution: int | None = None
    images: str | None = None  # an ImageFolder: calibration, judging and accuracy (labels from its folders)
    scenario: str | None = None
    iterations: int = 100
    warmup: int = 10
    threads: int | None = None

    @property
    def request_key(self) -> str:
        return _digest(asdict(self))

    @property
    def label(self) -> str:
        return f"{self.model} {self.precision} {self.runtime} @{self.device}"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def weights_hash(weights: str | None) -> str | None:
    """The sha256 of a checkpoint file named by ``weights`` (None for the zoo's named weights)."""
    if weights is None or weights in ("random", "imagenet") or not Path(weights).is_file():
        return None
    return hash_bounded(weights, what="checkpoint")[0]


def node_facts() -> dict:
    """This node, as the key and the results matrix record it: CPU model and ISA, GPU, OS, the int8 preset
    this node's CPU picks, Python, Ray (where installed) and every tool version."""
    from .. import hostinfo
    from ..exporters.int8 import default_preset

    cpu = hostinfo.cpu_info()
    facts = {"cpu": cpu["model"], "arch": cpu["arch"], "cores": cpu["cores"], "isa": cpu["isa"],
             "gpu": (hostinfo.gpu_info() or {}).get("name"), "os": platform.platform(),
             "power_mode": os.environ.get("EDGECNN_POWER_MODE"),  # a label the user sets (Jetson: nvpmodel's)
             "int8_preset": default_preset(), "versions": hostinfo.versions()}
    try:
        import ray

        facts["versions"]["ray"] = ray.__version__
    except ImportError:
        pass
    facts["facts_key"] = facts_key(facts)
    return facts


def facts_key(facts: dict) -> str:
    """The fingerprint of a node that decides whether its finished cells stand (hostname excluded: a rebuilt
    board with the same hardware and tools gives the same figures)."""
    return _digest({k: facts.get(k) for k in ("cpu", "arch", "isa", "gpu", "os", "power_mode", "int8_preset",
                                              "versions")})


def cell_key(cell: Cell, facts: dict) -> str:
    return _digest([cell.request_key, facts_key(facts)])


# ---- running a cell (on the node that measures it) -------------------------------------------------------

def base_row(cell: Cell, facts: dict | None = None) -> dict:
    row = {"schema": SCHEMA, **asdict(cell), "request_key": cell.request_key, "status": "ok", "reason": None}
    if facts is not None:
        row.update(key=cell_key(cell, facts), facts=facts)
    return row


def failed_row(cell: Cell, reason: str, *, status: str = "failed", facts: dict | None = None) -> dict:
    return {**base_row(cell, facts), "status": status, "reason": clip(" ".join(str(reason).split()), REASON_CHARS)}


def export_cell(cell: Cell, work_root: str | None) -> dict:
    """Export and judge ``cell`` into this node's work folder; a failure is a row with its one-line reason."""
    facts = node_facts()
    t0 = time.perf_counter()
    try:
        from ..pipeline import ExportConfig, run_export

        folder = _work_folder(cell, facts, work_root)
        cfg = ExportConfig(cell.model, weights=cell.weights, resolution=cell.resolution, targets=(cell.runtime,),
                           fp16=cell.precision == "fp16", int8=cell.precision == "int8", out=str(folder),
                           calib_dir=cell.images if cell.precision == "int8" else None, eval_dir=cell.images,
                           threads=cell.threads, latency=False, progress=False)
        result = run_export(cfg, log=lambda _line: None)
        row = {**base_row(cell, facts), "folder": str(folder), "node_id": _node_id(),
               "export_s": round(time.perf_counter() - t0, 3)}
        row.update(_judged(cell, result.manifest))
        return row
    except (EdgecnnError, MemoryError, RuntimeError, OSError, ValueError) as e:
        return failed_row(cell, "out of memory" if isinstance(e, MemoryError) else first_line(e), facts=facts)


def _work_folder(cell: Cell, facts: dict, work_root: str | None) -> Path:
    from ..ledger import cache_dir

    root = Path(work_root) if work_root else cache_dir() / "sweep"
    return root / cell_key(cell, facts)[:24]


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None


def _judged(cell: Cell, manifest) -> dict:
    """The cell's artifact (the default of its precision on its runtime, else the last built) and its verdict."""
    from ..runtimes import RUNTIMES

    formats = RUNTIMES.get(cell.runtime).formats
    mine = [a for a in manifest.artifacts if a.precision == cell.precision and a.format in formats]
    if not mine:
        why = manifest.failures()
        reason = "; ".join(f"{k}: {v}" for k, v in why.items()) or f"no {cell.precision} artifact was built"
        return {"status": "failed", "reason": clip(reason, REASON_CHARS)}
    defaults = manifest.defaults()
    art = next((a for a in reversed(mine) if a.key in defaults), mine[-1])
    res = manifest.results.get(art.key)
    out = {"artifact": art.key, "size_bytes": sum(f.stat().st_size for f in art.files)}
    if res is not None:
        out.update(verdict=res.verdict, cosine=res.parity.cosine if res.parity else None,
                   top1_agreement=res.parity.top1 if res.parity else None,
                   accuracy_top1=(res.accuracy or {}).get("top1"))
        if res.error is not None or res.verdict == "FAIL":
            out.update(status="failed", reason=clip(res.error or f"parity FAIL (cosine {res.parity.cosine:.4f})",
                                                    REASON_CHARS))
    return out


def bench_kwargs(cell: Cell, bench_dir) -> dict:
    """The options bench takes for ``cell``: ``scenario`` only where this bench accepts it (the one place)."""
    import inspect

    kw = dict(runtimes=(cell.runtime,), threads=cell.threads, warmup=cell.warmup, iterations=cell.iterations,
              progress=False)
    if cell.scenario is not None:
        if "scenario" not in inspect.signature(bench_dir).parameters:
            raise ConfigError("--scenario needs the bench of edgecnn's scenario release; this bench has none")
        kw["scenario"] = cell.scenario
    return kw


def bench_cell(cell: Cell, exported: dict) -> dict:
    """Time the cell's artifact with ``edgecnn bench`` (the same code and options as the command)."""
    row = dict(exported)
    t0 = time.perf_counter()
    try:
        from ..harness.bench import bench_dir

        report = bench_dir(exported["folder"], **bench_kwargs(cell, bench_dir))
        r = next((r for r in report.results if r.artifact == exported["artifact"] and r.runtime == cell.runtime),
                 None)
        if r is None:
            return {**row, "status": "failed", "reason": f"bench did not run {exported['artifact']}"}
        if r.error is not None:
            return {**row, "status": "failed", "reason": clip(r.error, REASON_CHARS)}
        d = r.to_dict()  # fields other releases add (scenario, executed, peak_rss_mib) read where present
        lat = d.get("latency") or {}
        scenario = d.get("scenario") or {}
        macs = (d.get("executed") or {}).get("macs") or {}
        row.update(p50_ms=lat.get("p50_ms"), p90_ms=lat.get("p90_ms"), cv=r.latency.cv if r.latency else None,
                   throughput_ips=(d.get("throughput") or {}).get("images_per_s") or lat.get("throughput_ips"),
                   latency_ms=scenario.get("headline_ms") or lat.get("p50_ms"),
                   scenario_valid=scenario.get("valid"), peak_mib=d.get("peak_rss_mib"), int8_share=macs.get("int8"),
                   bench_s=round(time.perf_counter() - t0, 3))
        return row
    except (EdgecnnError, MemoryError, RuntimeError, OSError, ValueError) as e:
        return {**row, "status": "failed", "reason": "out of memory" if isinstance(e, MemoryError)
                else clip(first_line(e), REASON_CHARS)}


# ---- what comes back is untrusted text --------------------------------------------------------------------

_NUMBERS = {"p50_ms": 1e7, "p90_ms": 1e7, "latency_ms": 1e7, "cv": 1e3, "throughput_ips": 1e9, "size_bytes": 1e15,
            "peak_mib": 1e9, "int8_share": 1.0, "cosine": 1.0, "top1_agreement": 1.0, "accuracy_top1": 1.0,
            "export_s": 1e6, "bench_s": 1e6, "cell_s": 1e6}
_TEXTS = ("model", "precision", "runtime", "device", "weights", "weights_sha256", "images", "scenario", "status",
          "reason", "artifact", "verdict", "folder", "node_id", "key", "request_key")
_FACT_TEXTS = ("cpu", "arch", "gpu", "os", "power_mode", "int8_preset", "facts_key")
ROW_CHARS = 64 << 10


def validate_row(obj: object, cell: Cell) -> dict:
    """A row from a node (or a results file), checked field by field: known fields only, text made safe and
    bounded, numbers finite and in range, and the cell it claims to be is ``cell``. ``ArtifactError`` else."""
    if not isinstance(obj, dict):
        raise ArtifactError(f"a result for {cell.label} is not a table of fields ({type(obj).__name__})")
    if len(json.dumps(obj, default=str)) > min(ROW_CHARS, limit("file_bytes")):
        raise ArtifactError(f"the result for {cell.label} is above {ROW_CHARS} characters")
    row = {"schema": SCHEMA}
    for k in _TEXTS:
        v = obj.get(k)
        if v is not None and not isinstance(v, str):
            raise ArtifactError(f"the result for {cell.label}: {k} is not text")
        row[k] = None if v is None else clip(v, REASON_CHARS if k == "reason" else 400)
    for k, high in _NUMBERS.items():
        v = obj.get(k)
        if v is None:
            row[k] = None
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not -1.0 <= v <= high:
            raise ArtifactError(f"the result for {cell.label}: {k} is not a number in range ({clip(v, 40)})")
        else:
            row[k] = v
    for k in ("resolution", "iterations", "warmup", "threads"):
        row[k] = obj.get(k) if isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool) else None
    row["scenario_valid"] = obj.get("scenario_valid") if isinstance(obj.get("scenario_valid"), bool) else None
    row["facts"] = _facts(obj.get("facts"), cell)
    if row["status"] not in STATUSES:
        raise ArtifactError(f"the result for {cell.label} has an unknown status {clip(row['status'], 40)}")
    if row["status"] != "ok" and not row["reason"]:
        raise ArtifactError(f"the result for {cell.label} failed without a reason")
    claimed = (row["model"], row["precision"], row["runtime"], row["device"], row["request_key"])
    if claimed != (cell.model, cell.precision, cell.runtime, cell.device, cell.request_key):
        raise ArtifactError(f"a result claims to be {safe_text(' '.join(map(str, claimed[:4])))}, not {cell.label}")
    if row["status"] == "ok" and (row["latency_ms"] is None or row["key"] is None):
        raise ArtifactError(f"the result for {cell.label} says ok but has no latency or key")
    if row["key"] is not None and row["facts"] is not None and row["key"] != cell_key(cell, row["facts"]):
        raise ArtifactError(f"the result for {cell.label} has a key that does not match its cell and node")
    return row


def _facts(facts: object, cell: Cell) -> dict | None:
    if facts is None:
        return None
    if not isinstance(facts, dict):
        raise ArtifactError(f"the result for {cell.label}: facts is not a table")
    out = {k: None if facts.get(k) is None else clip(facts[k], 400) for k in _FACT_TEXTS}
    cores = facts.get("cores")
    out["cores"] = cores if isinstance(cores, int) and not isinstance(cores, bool) else None
    isa, versions = facts.get("isa"), facts.get("versions")
    if not isinstance(isa, list) or not isinstance(versions, dict) or len(isa) > 64 or len(versions) > 64:
        raise ArtifactError(f"the result for {cell.label}: the node's ISA or versions are malformed")
    out["isa"] = [clip(x, 40) for x in isa]
    out["versions"] = {clip(k, 40): clip(v, 80) for k, v in versions.items()}
    if out["facts_key"] != facts_key(out):
        raise ArtifactError(f"the result for {cell.label}: the node's facts do not match their key")
    return out
