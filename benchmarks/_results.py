"""Where the benchmark scripts put what they measured: JSON and a Markdown table, each written atomically."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_json(path: str | Path, data) -> None:
    from edgecnn.fileio import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str))


def save(stem: str | Path, data, table: str) -> None:
    """``stem``.json and ``stem``.md."""
    from edgecnn.fileio import atomic_path

    stem = Path(stem)
    save_json(stem.with_name(stem.name + ".json"), data)
    with atomic_path(stem.with_name(stem.name + ".md")) as tmp:
        tmp.write_text(table)
