"""``edgecnn sweep``: the model x precision x runtime x device matrix, on this machine or a Ray cluster.

    edgecnn.sweep(["mobilenet_v2", "squeezenet1_1"], precisions=("fp32", "int8"), out="sweep_out")

Each cell (:mod:`.cells`) is exported, judged and timed on the node that runs it (:mod:`.engine`: Ray when
installed, else one after another here); finished cells are files (:mod:`.store`), so an interrupted or
repeated sweep runs only what is missing; the matrix is written as JSON, CSV and Markdown.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArtifactError, ConfigError
from ..guard import check_limit, clip, safe_text
from . import engine, store
from .cells import LOCAL, PRECISIONS, Cell, facts_key, failed_row, node_facts, validate_row, weights_hash

__all__ = ["sweep", "SweepResult", "Cell"]
DEFAULT_TARGETS = ("onnxruntime",)


@dataclass
class SweepResult:
    out: Path
    rows: list[dict]
    engine: str  # "ray" | "sequential"
    reused: int = 0
    notes: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("status") != "ok"]


def plan_cells(models, *, precisions=("fp32", "fp16", "int8"), targets=DEFAULT_TARGETS, devices=(LOCAL,),
               weights=None, resolution=None, images=None, scenario=None, iterations=100, warmup=10,
               threads=None) -> list[Cell]:
    """Every cell of the matrix, each option checked first (before any cluster is joined)."""
    from ..backends import TARGETS

    models = list(dict.fromkeys(models))
    if not models:
        raise ConfigError("name at least one model to sweep")
    for what, names, known in (("precision", precisions, PRECISIONS), ("target", targets, TARGETS)):
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise ConfigError(f"unknown {what} '{clip(bad[0] if bad else '', 40)}'; {what}s are: {', '.join(known)}")
    for d in devices:
        if not d or not all(ch.isalnum() or ch in "_-." for ch in d):
            raise ConfigError(f"device class '{clip(d, 40)}' must be a Ray resource name (letters, digits, _ - .)")
    if images is not None and not Path(images).is_dir():
        raise ConfigError(f"--images {safe_text(images)} is not a folder")
    check_limit("images", len(models) * len(precisions) * len(targets) * len(devices), "cells in a sweep")
    wsha = weights_hash(weights)
    return [Cell(m, p, t, d, weights=weights, weights_sha256=wsha, resolution=resolution,
                 images=str(Path(images).resolve()) if images else None, scenario=scenario, iterations=iterations,
                 warmup=warmup, threads=threads)
            for d in dict.fromkeys(devices) for m in models for p in dict.fromkeys(precisions)
            for t in dict.fromkeys(targets)]


def sweep(models, *, precisions=("fp32", "fp16", "int8"), targets=DEFAULT_TARGETS, devices=(LOCAL,),
          weights=None, resolution=None, images=None, scenario=None, iterations=100, warmup=10, threads=None,
          address: str | None = None, insecure: bool = False, out: str | Path = "sweep_out",
          use_ray: bool | None = None, num_cpus: int | None = None, node_wait_s: float = 300.0,
          progress: bool = True, log=engine.say) -> SweepResult:
    """Run (or complete) the sweep into ``out``; ``use_ray``: None = Ray where installed, False = in this process.

    ``address``: a Ray cluster (``auto``: the one this machine belongs to); ``devices``: the device classes
    (Ray custom resources) to measure on, ``local`` = any node. Returns every cell's row, finished or not."""
    cells = plan_cells(models, precisions=precisions, targets=targets, devices=devices, weights=weights,
                       resolution=resolution, images=images, scenario=scenario, iterations=iterations,
                       warmup=warmup, threads=threads)
    out = Path(out)
    store.check_writable(out)
    ray = engine.ray_module() if use_ray is not False else None
    if use_ray and ray is None:
        raise ConfigError(f"Ray is not installed: {engine.INSTALL}")
    if ray is None:
        if address is not None or any(c.device != LOCAL for c in cells):
            raise ConfigError(f"--address and --devices need Ray: {engine.INSTALL}")
        log(f"Ray is not installed: running the cells one after another in this process ({engine.INSTALL} "
            "to run them on Ray)" if use_ray is None else "running the cells one after another in this process")
    elif address is None and any(c.device != LOCAL for c in cells):
        raise ConfigError("--devices names Ray resources of a cluster's nodes: give the cluster's --address")
    done, notes = store.finished(out, cells)
    for n in notes:
        log(f"note: {n}")
    started = False
    try:
        if ray is not None and address is not None:  # a cluster: every node's versions and facts, first
            ray, started = engine.connect(address=address, insecure=insecure, num_cpus=num_cpus)
            if not insecure and not engine.auth_on(ray):
                raise ConfigError("the cluster does not enforce token authentication; refusing (--insecure to go on)")
            facts = engine.probe_nodes(ray, sorted({c.device for c in cells}))
            classes = {d: {facts_key(facts[n["NodeID"]]) for n in engine.nodes_of(engine.alive_nodes(ray), d)
                           if n["NodeID"] in facts} for d in {c.device for c in cells}}
        else:  # this machine: its own facts (a local Ray runs this same interpreter and packages)
            classes = {LOCAL: {node_facts()["facts_key"]}}
        reuse = {k: r for k, r in done.items() if (r.get("facts") or {}).get("facts_key") in
                 classes.get(r["device"], ())}
        todo = [c for c in cells if c.request_key not in reuse]
        if reuse:
            log(f"reusing {len(reuse)} finished cell(s) of {len(cells)}; running {len(todo)}")
        if ray is not None and address is None and todo:
            ray, started = engine.connect(address=None, insecure=insecure, num_cpus=num_cpus)
        rows = dict(reuse)
        bar = _Progress(todo, enabled=progress)

        def on_row(cell: Cell, row: object) -> None:
            try:
                row = validate_row(row, cell)
            except ArtifactError as e:
                row = validate_row(failed_row(cell, f"result rejected: {e}"), cell)
            rows[cell.request_key] = row
            if row["status"] != "lost":
                store.save_cell(out, row)
            bar.done(cell, row["status"])

        work_root = str((out / "work").resolve()) if address is None else None
        t0 = time.perf_counter()
        try:
            if ray is not None:
                engine.run_ray(ray, todo, work_root=work_root, on_row=on_row, node_wait_s=node_wait_s)
            else:
                engine.run_sequential(todo, work_root=work_root, on_row=on_row)
        finally:
            bar.close()
            ordered = [rows.get(c.request_key) or _unfinished(c) for c in cells]
            settings = {"engine": "ray" if ray is not None else "sequential", "address": address,
                        "wall_s": round(time.perf_counter() - t0, 3), "cells": len(cells), "reused": len(reuse)}
            paths = store.write_matrix(out, ordered, settings)
    finally:
        if started:
            ray.shutdown()
    return SweepResult(out=out, rows=ordered, engine=settings["engine"], reused=len(reuse), notes=notes, paths=paths)


def _unfinished(cell: Cell) -> dict:
    return {**failed_row(cell, "not run (interrupted): run the sweep again to complete it", status="lost")}


class _Progress:
    """Cells done / failed / to go per device class, on one tqdm bar (standard error)."""

    def __init__(self, cells: list[Cell], *, enabled: bool):
        self.counts = {d: {"done": 0, "failed": 0, "to go": 0} for d in dict.fromkeys(c.device for c in cells)}
        for c in cells:
            self.counts[c.device]["to go"] += 1
        self.bar = None
        if enabled and cells:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(cells), desc="sweep", unit="cell", leave=False)
            self._show()

    def done(self, cell: Cell, status: str) -> None:
        c = self.counts[cell.device]
        c["to go"] -= 1
        c["done" if status == "ok" else "failed"] += 1
        if self.bar is not None:
            self.bar.update(1)
            self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str("; ".join(f"{d}: {c['done']} done, {c['failed']} failed, {c['to go']} to go"
                                           for d, c in self.counts.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

