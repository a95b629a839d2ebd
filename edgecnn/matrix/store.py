"""The sweep's folder: one file per finished cell, and the results matrix (JSON, CSV, Markdown).

    <out>/cells/<key>.json   each finished cell as it arrives (a Ctrl-C or a lost node leaves these intact)
    <out>/sweep.json         the matrix: every cell asked for, finished or not, with the sweep's settings
    <out>/sweep.csv, .md     the same rows as a table

Every file is written atomically and recorded in the local record (:mod:`edgecnn.ledger`); a file there that
this machine cannot prove it wrote is never replaced (one line, exit 2), and a cell file it cannot prove is
not reused. A cell file read back is checked like one received (:func:`~edgecnn.matrix.cells.validate_row`).
"""
from __future__ import annotations

import csv
import io
import json
import tomllib
from pathlib import Path

from .. import ledger
from ..errors import ArtifactError, ConfigError, EdgecnnError
from ..fileio import atomic_path
from ..guard import clip, markdown_cell, read_bounded, safe_text, safe_tree
from .cells import Cell, validate_row

CELLS = "cells"
MATRIX = "sweep.json"
COLUMNS = ("model", "precision", "runtime", "device", "status", "latency_ms", "p50_ms", "p90_ms", "throughput_ips",
           "size_bytes", "peak_mib", "int8_share", "verdict", "cosine", "accuracy_top1", "scenario", "cpu", "isa",
           "gpu", "os", "power_mode", "reason")
MATRIX_KEYS = {"models": list, "precisions": list, "targets": list, "devices": list, "images": str, "scenario": str,
               "weights": str, "resolution": int, "iterations": int, "warmup": int, "threads": int, "address": str,
               "out": str, "insecure": bool}


def write_new(dest: Path, text: str) -> None:
    """Write ``text`` to ``dest`` atomically, unless a file is there that this machine's edgecnn did not write."""
    if dest.exists() and not ledger.proves(dest.parent, dest):
        raise ConfigError(f"{safe_text(dest)} exists and this machine's edgecnn did not write it (or it was edited "
                          "since): move it away or choose another --out")
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def check_writable(out: Path) -> None:
    """Before any work: the matrix files in ``out`` are absent or this machine's edgecnn wrote them."""
    for name in (MATRIX, "sweep.csv", "sweep.md"):
        dest = out / name
        if dest.exists() and not ledger.proves(out, dest):
            raise ConfigError(f"{safe_text(dest)} exists and this machine's edgecnn did not write it (or it was "
                              "edited since): move it away or choose another --out")


def save_cell(out: Path, row: dict) -> None:
    write_new(out / CELLS / f"{row['request_key']}.json", json.dumps(row, indent=1, sort_keys=True))


def finished(out: Path, cells: list[Cell]) -> tuple[dict[str, dict], list[str]]:
    """The finished rows under ``out`` for ``cells`` (by request key), and a line for each file not used."""
    rows, notes = {}, []
    folder = out / CELLS
    for cell in cells:
        path = folder / f"{cell.request_key}.json"
        if not path.exists():
            continue
        if not ledger.proves(folder, path):
            notes.append(f"{safe_text(path)}: not written by this machine's edgecnn (or edited): not reused")
            continue
        try:
            row = validate_row(json.loads(read_bounded(path, "sweep cell")), cell)
        except (EdgecnnError, json.JSONDecodeError, RecursionError) as e:
            notes.append(f"{safe_text(path)}: {clip(e, 160)}: run again")
            continue
        if row["status"] != "lost":
            rows[cell.request_key] = row
    return rows, notes


def write_matrix(out: Path, rows: list[dict], settings: dict) -> dict[str, Path]:
    """The matrix as JSON, CSV and Markdown; the paths written."""
    data = {"kind": "edgecnn-sweep", "schema": 1, "settings": settings, "rows": rows}
    paths = {"json": out / MATRIX, "csv": out / "sweep.csv", "md": out / "sweep.md"}
    write_new(paths["json"], json.dumps(data, indent=1, default=str))
    write_new(paths["csv"], to_csv(rows))
    write_new(paths["md"], to_markdown(rows))
    return paths


def flat(row: dict) -> dict:
    facts = row.get("facts") or {}
    return {c: (" ".join(facts.get("isa") or []) if c == "isa" else facts.get(c)) if c in
            ("cpu", "isa", "gpu", "os", "power_mode") else row.get(c) for c in COLUMNS}


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for row in rows:  # a leading = + - @ makes a spreadsheet formula: quoted as text
        w.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in flat(row).items()})
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return markdown_cell(v)


def to_markdown(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if c not in ("isa", "os", "power_mode")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(flat(r)[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def read_matrix(path: str | Path) -> dict:
    """A sweep.json (this machine's or received), every row checked; ConfigError naming the file else."""
    try:
        data = json.loads(read_bounded(path, "sweep results"))
    except EdgecnnError as e:
        raise ConfigError(str(e)) from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"cannot read {safe_text(path)}: {type(e).__name__}") from None
    if not isinstance(data, dict) or data.get("kind") != "edgecnn-sweep" or not isinstance(data.get("rows"), list):
        raise ConfigError(f"{safe_text(path)} is not an edgecnn sweep result")
    rows = []
    for obj in data["rows"]:
        try:
            fields = {k: obj.get(k) for k in Cell.__dataclass_fields__} if isinstance(obj, dict) else {}
            cell = Cell(**{k: v for k, v in fields.items() if v is not None})
            rows.append(validate_row(obj, cell))
        except (ArtifactError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{safe_text(path)}: a malformed row ({clip(e, 160)})") from None
    return {"settings": safe_tree(data.get("settings")), "rows": rows}


def read_toml(path: str | Path) -> dict:
    """A matrix file (TOML): the sweep's options, each checked for its type; an unknown key is named."""
    try:
        data = tomllib.loads(read_bounded(path, "matrix file"))
    except EdgecnnError as e:
        raise ConfigError(str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{safe_text(path)} is not valid TOML ({clip(e, 120)})") from None
    for k, v in data.items():
        if k not in MATRIX_KEYS:
            raise ConfigError(f"{safe_text(path)}: unknown key {clip(k, 40)}; keys are: {', '.join(MATRIX_KEYS)}")
        want = MATRIX_KEYS[k]
        if not isinstance(v, want) or isinstance(v, bool) != (want is bool) or \
                (want is list and not all(isinstance(x, str) for x in v)):
            raise ConfigError(f"{safe_text(path)}: {k} must be {'a list of names' if want is list else want.__name__}")
    return data
