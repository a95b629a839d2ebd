"""Tables and plots: the export summary, bench tables, and reports merged across machines."""
from __future__ import annotations

from rich.markup import escape


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def export_table(manifest):
    """rich Table: artifact, size, parity against the original, quick p50 latency."""
    from rich.table import Table

    table = Table(title=f"{manifest.model}: artifacts vs the PyTorch original "
                        f"({manifest.results and next(iter(manifest.results.values()))['parity'].get('n', '?')} held-out images)")
    for col in ("artifact", "runtime", "precision", "size", "cosine", "max abs err", "top-1 (confident)", "p50 ms", "parity"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision", "parity") else "right")
    defaults, alternatives = manifest.defaults(), manifest.alternatives()
    for art in manifest.artifacts:
        res = manifest.results.get(art.key, {})
        p, lat = res.get("parity", {}), res.get("latency") or {}
        ok = p.get("passed")
        name = art.stage + (" (default)" if art.stage in defaults else " (alternative)" if art.stage in alternatives else "")
        slower = f" [yellow]{res['slower_than_fp32']:.2f}x slower than fp32[/]" if res.get("slower_than_fp32") else ""
        table.add_row(
            name, art.runtime or "-", art.precision, _fmt_bytes(art.bytes),
            f"{p['cosine']:.5f}" if "max_abs" in p else "-",
            f"{p['max_abs']:.2e}" if "max_abs" in p else "-",
            f"{p['top1_confident']:.0%} of {p['n_confident']}" if p.get("n_confident") else "-",
            f"{lat['p50_ms']:.2f}" if lat else "-",
            _verdict(ok, res.get("advisory"), p.get("failures", []), art.stage in alternatives, res.get("error"))
            + slower,
        )
    for stage, why in manifest.failed.items():
        note = " (not the default)" if stage in alternatives else ""
        table.add_row(stage, "-", "-", "-", "-", "-", "-", "-", f"[red]failed{note}:[/] {escape(why)[:70]}")
    if any(r.get("advisory") for r in manifest.results.values()):
        table.caption = "advisory: " + next(r["advisory"] for r in manifest.results.values() if r.get("advisory"))
    return table


def _verdict(ok: bool | None, advisory: str | None, failures: list[str], alternative: bool = False,
             error: str | None = None) -> str:
    if error:  # could not be built, loaded or run: a failure whatever the weights, never "advisory"
        return f"[red]failed{' (not the default)' if alternative else ''}:[/] {escape(error)[:70]}"
    if ok:
        return "[green]pass[/]"
    if advisory:
        return "[yellow]advisory[/] (random weights)"
    if alternative:
        return f"[yellow]fail, not the default[/] {'; '.join(failures)[:60]}"
    return f"[red]FAIL[/] {'; '.join(failures)[:70]}"


def check_table(result: dict):
    from rich.table import Table

    table = Table(title=f"{result['model']}: parity against the PyTorch original ({result['n_images']} images: {result['images']})")
    for col in ("artifact", "runtime", "precision", "cosine", "max abs", "rel L2", "SQNR dB", "top-1", "top-1 conf.", "top-5", "verdict"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision", "verdict") else "right")
    for r in result["results"]:
        p = r["parity"]
        if "max_abs" not in p:
            table.add_row(r["artifact"], r["runtime"], r["precision"], *["-"] * 7,
                          _verdict(False, None, p["failures"], r.get("alternative", False), r.get("error")))
            continue
        table.add_row(r["artifact"], r["runtime"], r["precision"], f"{p['cosine']:.5f}", f"{p['max_abs']:.2e}",
                      f"{p['rel_l2']:.2e}", f"{p['sqnr_db']:.1f}", f"{p['top1']:.1%}",
                      f"{p['top1_confident']:.1%} /{p['n_confident']}" if p["n_confident"] else "-",
                      f"{p['top5_overlap']:.2f}", _verdict(p["passed"], r.get("advisory"), p["failures"],
                                                            r.get("alternative", False)))
    return table


def layers_table(layers: dict):
    from rich.table import Table

    tables = []
    for key, info in layers.items():
        if key == "note":
            continue
        t = Table(title=f"{key}: worst layers by SQNR against {info['against']} ({info['layers']} tensors compared)")
        t.add_column("tensor")
        t.add_column("SQNR vs fp32 (dB)", justify="right")
        t.add_column("own quantization SQNR (dB)", justify="right")
        for row in info["worst"]:
            t.add_row(row["tensor"], f"{row['sqnr_db']:.1f}", f"{row['quant_sqnr_db']:.1f}")
        tables.append(t)
    return tables


def bench_rows(result: dict) -> list[dict]:
    """Flat rows (one per artifact x runtime x batch) with the host attached, for tables and CSV."""
    host = result.get("host", {}).get("cpu", {})
    label = result.get("label") or f"{host.get('model', '?')} ({host.get('cores', '?')} cores)"
    return [{"host": label, "model": result["model"], **{k: v for k, v in r.items() if k != "versions"}}
            for r in result["results"]]


def bench_table(results: list[dict]):
    from rich.table import Table

    table = Table(title="latency (ms); speedup = PyTorch eager fp32 p50 / p50, same run")
    cols = ("host", "model", "artifact", "runtime", "precision", "batch", "p50", "p90", "p99", "mean", "cv", "img/s", "speedup")
    for c in cols:
        table.add_column(c, justify="right" if c not in ("host", "model", "artifact", "runtime", "precision") else "left")
    for res in results:
        for r in bench_rows(res):
            if "error" in r:
                table.add_row(r["host"], r["model"], r["artifact"], r["runtime"], r["precision"], str(r["batch"]),
                              *["-"] * 6, f"[red]{r['error'][:40]}[/]")
                continue
            cv = f"{r['cv']:.0%}" + (" [yellow]noisy[/]" if r.get("noisy") else "")
            table.add_row(r["host"], r["model"], r["artifact"], r["runtime"], r["precision"], str(r["batch"]),
                          f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['mean_ms']:.2f}", cv,
                          f"{r['throughput_ips']:.0f}", f"{r.get('speedup_vs_torch', float('nan')):.2f}x")
    return table


def markdown(results: list[dict]) -> str:
    lines = ["| host | model | artifact | runtime | precision | batch | p50 ms | p90 ms | cv | speedup vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in bench_rows(res):
            if "error" in r:
                lines.append(f"| {r['host']} | {r['model']} | {r['artifact']} | {r['runtime']} | {r['precision']} | "
                             f"{r['batch']} | error | | | {r['error'][:60]} |")
                continue
            lines.append(f"| {r['host']} | {r['model']} | {r['artifact']} | {r['runtime']} | {r['precision']} | "
                         f"{r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['cv']:.0%} | "
                         f"{r.get('speedup_vs_torch', float('nan')):.2f}x |")
    return "\n".join(lines) + "\n"


def write_csv(results: list[dict], path) -> None:
    import csv

    from ..exporters.artifact import atomic_path

    rows = [r for res in results for r in bench_rows(res)]
    fields = sorted({k for r in rows for k in r})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def plot(results: list[dict], path, fidelity: dict | None = None) -> None:
    """Bar chart of p50 latency per artifact/runtime (one bar group per host); a second panel plots
    latency against logit cosine when parity results are given (``{artifact: cosine}``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import MissingBackendError

        raise MissingBackendError("matplotlib", extra="plot", reason="needed for --plot") from None
    from ..exporters.artifact import atomic_path

    rows = [r for res in results for r in bench_rows(res) if "p50_ms" in r]
    panels = 2 if fidelity else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 0.35 * len(rows) + 2), squeeze=False)
    labels = [f"{r['host'][:24]} | {r['artifact']}@{r['runtime']} b{r['batch']}" for r in rows]
    ax = axes[0][0]
    ax.barh(labels, [r["p50_ms"] for r in rows], xerr=[r["std_ms"] for r in rows], color="tab:blue")
    ax.set_xlabel("p50 latency (ms), error bar = std")
    ax.invert_yaxis()
    if fidelity:
        ax2 = axes[0][1]
        for r in rows:
            if r["artifact"] in fidelity:
                ax2.scatter(r["p50_ms"], fidelity[r["artifact"]], label=f"{r['artifact']}@{r['runtime']}")
        ax2.set_xlabel("p50 latency (ms)")
        ax2.set_ylabel("logit cosine vs PyTorch fp32")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
