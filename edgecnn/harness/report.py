"""Tables and plots: the export summary, bench tables, and reports merged across machines."""
from __future__ import annotations


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def export_table(manifest):
    """rich Table: artifact, size, parity against the original, quick p50 latency."""
    from rich.table import Table

    table = Table(title=f"{manifest.model}: artifacts vs the PyTorch original "
                        f"({manifest.results and next(iter(manifest.results.values()))['parity'].get('n', '?')} held-out images)")
    for col in ("artifact", "runtime", "precision", "size", "cosine", "max abs err", "top-1 (confident)", "p50 ms", "parity"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision", "parity") else "right")
    defaults = set(manifest.selected.values())
    for art in manifest.artifacts:
        res = manifest.results.get(art.key, {})
        p, lat = res.get("parity", {}), res.get("latency") or {}
        ok = p.get("passed")
        name = art.stage + (" (default)" if art.stage in defaults else "")
        table.add_row(
            name, art.runtime or "-", art.precision, _fmt_bytes(art.bytes),
            f"{p['cosine']:.5f}" if "max_abs" in p else "-",
            f"{p['max_abs']:.2e}" if "max_abs" in p else "-",
            f"{p['top1_confident']:.0%} of {p['n_confident']}" if p.get("n_confident") else "-",
            f"{lat['p50_ms']:.2f}" if lat else "-",
            _verdict(ok, res.get("advisory"), p.get("failures", [])),
        )
    if any(r.get("advisory") for r in manifest.results.values()):
        table.caption = "advisory: " + next(r["advisory"] for r in manifest.results.values() if r.get("advisory"))
    return table


def _verdict(ok: bool | None, advisory: str | None, failures: list[str]) -> str:
    if ok:
        return "[green]pass[/]"
    if advisory:
        return "[yellow]advisory[/] (random weights)"
    return f"[red]FAIL[/] {'; '.join(failures)[:70]}"
