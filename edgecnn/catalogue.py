"""The zoo's catalogue for ``edgecnn list``: every registered model's family, input, weights, published top-1 and
its parameters and multiply-adds, precomputed into ``catalogue.json`` (shipped with the package), so listing the
zoo neither imports torch nor builds a model.

The file is generated from the models themselves: ``python -m edgecnn.catalogue --write`` (after adding or
changing a model), and tests/test_tables.py checks it against the registry and against the real models.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import ConfigError

CATALOGUE = Path(__file__).with_name("catalogue.json")


def entry(name: str) -> dict:
    """One model's row, measured: its spec's fields, and params/MACs counted on a meta-device build."""
    from .accounting import model_stats
    from .models import get_spec

    spec, stats = get_spec(name), model_stats(name)
    return {"name": name, "family": spec.family, "params": stats.params, "macs": stats.macs,
            "resolution": spec.resolution, "in_chans": spec.in_chans, "weights": [w.name for w in spec.weights],
            "top1": spec.published.top1}


def build() -> list[dict]:
    from .models import list_models

    return [entry(name) for name in list_models()]


def load() -> list[dict]:
    """Every model's row, from the shipped file (in the registry's order)."""
    return json.loads(CATALOGUE.read_text())


def families(rows: list[dict]) -> list[str]:
    return sorted({r["family"] for r in rows})


def select(rows: list[dict], family: str | None) -> list[dict]:
    """The rows of ``family``: a family's name, or a prefix naming several (``mobilenet``: mobilenet_v1, _v2,
    _v3); anything else is a :class:`ConfigError` listing the families."""
    if family is None:
        return rows
    known = families(rows)
    chosen = {family} if family in known else {f for f in known if family and f.startswith(family)}
    if not chosen:
        raise ConfigError(f"unknown family '{family}'; families are: {', '.join(known)}")
    return [r for r in rows if r["family"] in chosen]


def dumps(rows: list[dict]) -> str:
    """One model a line: a change to the zoo is a readable diff."""
    return "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecnn.catalogue", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {CATALOGUE.name} from the models")
    args = parser.parse_args(argv)
    text = dumps(build())
    if args.write:
        CATALOGUE.write_text(text)
        print(f"wrote {CATALOGUE}")
        return 0
    same = CATALOGUE.is_file() and CATALOGUE.read_text() == text
    print(f"{CATALOGUE.name} is {'up to date' if same else 'out of date: `python -m edgecnn.catalogue --write` rewrites it'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
