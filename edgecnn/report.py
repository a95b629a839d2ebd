"""Tables and plots: the export summary, check and bench tables, and reports merged across machines.

Everything here renders typed results (:class:`~edgecnn.results.ArtifactResult` inside a manifest, a
:class:`~edgecnn.harness.check.CheckReport` or a :class:`~edgecnn.harness.bench.BenchReport`); the
verdict of a result comes from the result itself, never re-derived here.
"""
from __future__ import annotations

import csv

from rich import box
from rich.markup import escape
from rich.table import Table

from .errors import MissingBackendError
from .fileio import atomic_path
from .guard import markdown_cell as md
from .guard import safe_text
from .harness.bench import BenchReport
from .harness.check import CheckReport
from .manifest import Manifest
from .results import ArtifactResult


def _t(text: object) -> str:
    """Text from a received file (a model name, a stage, a label) as a rich cell: no control characters,
    no bidi overrides, and no '[...]' read as markup."""
    return escape(safe_text(text))


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def verdict(r: ArtifactResult) -> str:
    """The result's verdict as rich markup, with what failed."""
    v, failures = r.verdict, "; ".join(r.parity.failures) if r.parity is not None else ""
    if v == "failed":  # could not be built, loaded or run: a failure whatever the weights, never "advisory"
        return f"[red]failed{' (not the default)' if r.alternative else ''}:[/] {escape(r.error or '')[:70]}"
    if v == "pass":
        return "[green]pass[/]"
    if v == "advisory":
        return "[yellow]advisory[/]"
    if v == "fail":
        return f"[yellow]fail, not the default[/] {escape(failures)[:60]}"
    return f"[red]FAIL[/] {escape(failures)[:70]}"


def accuracy_cells(acc: dict | None, top5: bool) -> list[str]:
    """'top-1 (change vs the original, in points)' and, with more than 5 classes, 'top-5'."""
    def cell(k: str) -> str:
        if not acc or k not in acc:
            return "-"
        delta = acc.get(f"delta_{k}")
        return f"{acc[k]:.1%}" + (f" ({delta * 100:+.1f})" if delta is not None else "")

    return [cell("top1")] + ([cell("top5")] if top5 else [])


def _accuracy_columns(table: Table, original: dict | None) -> bool:
    """Add the accuracy columns when the images carried labels; True when top-5 is shown (> 5 classes)."""
    if not original:
        return False
    top5 = "top5" in original
    table.add_column("acc@1 (pts)", justify="right", no_wrap=True)
    if top5:
        table.add_column("acc@5", justify="right", no_wrap=True)
    return top5


def _original_caption(original: dict | None, what: str) -> str | None:
    if not original:
        return None
    return (f"accuracy against the true labels ({original['n']} images): {what} top-1 {original['top1']:.1%}"
            + (f", top-5 {original['top5']:.1%}" if "top5" in original else ""))


def export_table(manifest: Manifest) -> Table:
    """rich Table: artifact, size, parity against the original, accuracy where labelled, quick p50 latency
    (fits 100 columns)."""
    n = next((r.parity.n for r in manifest.results.values() if r.parity is not None), "?")
    original = (manifest.evaluation or {}).get("accuracy")
    what = "the original" if (manifest.evaluation or {}).get("original") != "torch" else "the PyTorch original"
    table = Table(title=f"{_t(manifest.model)}: artifacts vs {what} ({n} held-out images)",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("artifact", "runtime", "prec", "size", "cosine", "max abs", "top-1 conf."):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "prec") else "right", no_wrap=True)
    top5 = _accuracy_columns(table, original)
    table.add_column("p50 ms", justify="right", no_wrap=True)
    table.add_column("verdict", overflow="fold")
    defaults, alternatives = manifest.defaults(), manifest.alternatives()
    rows = [(a.key, a) for a in manifest.artifacts] + [(k, None) for k in manifest.failures()]
    for key, art in rows:
        res = manifest.results.get(key) or ArtifactResult(key, art.precision if art else "-")
        p, lat = res.parity, res.latency
        name = _t(key) + (" *" if key in defaults else "")
        slower = f" [yellow]{res.slower_than_fp32:.2f}x slower than fp32[/]" if res.slower_than_fp32 else ""
        table.add_row(
            name, (art.runtime if art else None) or "-", res.precision if art else "-",
            _fmt_bytes(art.bytes) if art else "-",
            f"{p.cosine:.5f}" if p is not None else "-",
            f"{p.max_abs:.2e}" if p is not None else "-",
            p.agreement() if p is not None else "-",
            *(accuracy_cells(res.accuracy, top5) if original else []),
            f"{lat.p50_ms:.2f}" if lat else "-",
            verdict(res) + slower,
        )
    notes = []
    if defaults:
        notes.append("* the default of several routes (" + ", ".join(sorted(alternatives)) + ": alternatives)")
    advisory = next((r.advisory for r in manifest.results.values() if r.advisory), None)
    notes += [c for c in (_original_caption(original, what), advisory and "advisory: " + advisory) if c]
    table.caption = "\n".join(notes) or None
    return table


def check_table(report: CheckReport) -> Table:
    table = Table(title=f"{_t(report.model)}: parity against the original ({report.n_images} images: "
                        f"{_t(report.images)})")
    for col in ("artifact", "runtime", "precision", "cosine", "max abs", "rel L2", "SQNR dB", "top-1", "top-1 conf.",
                "top-5"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime", "precision") else "right")
    top5 = _accuracy_columns(table, report.original)
    table.add_column("verdict")
    for r in report.results:
        p = r.parity
        acc = accuracy_cells(r.accuracy, top5) if report.original else []
        if r.error is not None or p is None:
            table.add_row(_t(r.artifact), _t(r.runtime), _t(r.precision), *["-"] * (7 + len(acc)), verdict(r))
            continue
        table.add_row(_t(r.artifact), _t(r.runtime), _t(r.precision), f"{p.cosine:.5f}", f"{p.max_abs:.2e}",
                      f"{p.rel_l2:.2e}", f"{p.sqnr_db:.1f}", f"{p.top1:.1%}",
                      p.agreement(),
                      f"{p.top5_overlap:.2f}" if p.top5_overlap is not None else "-", *acc, verdict(r))
    table.caption = "\n".join(_t(c) for c in (_original_caption(report.original, "the original"), *report.notes)
                              if c) or None
    return table


def check_rows(check: dict) -> list[dict]:
    """Flat rows of a check result (CheckReport.to_dict()): parity and accuracy per artifact x runtime."""
    rows = []
    for r in check["results"]:
        p, a = r.get("parity") or {}, r.get("accuracy") or {}
        rows.append({"model": check["model"], "artifact": r["artifact"], "runtime": r["runtime"],
                     "precision": r["precision"], "cosine": p.get("cosine"), "top1_agreement": p.get("top1"),
                     "top1_confident": p.get("top1_confident") if p.get("n_confident") else None,
                     "n_confident": p.get("n_confident"), "n_agree": p.get("n_agree"), "top1_upper": p.get("top1_upper"),
                     "top5_agreement": p.get("top5_overlap"), "accuracy_top1": a.get("top1"),
                     "accuracy_top5": a.get("top5"), "delta_top1": a.get("delta_top1"),
                     "delta_top5": a.get("delta_top5"), "ok": r.get("ok"), "error": r.get("error")})
    return rows


def write_check_csv(check: dict, path) -> None:
    _write_rows(check_rows(check), path)


def accuracy_markdown(checks: list[dict]) -> str:
    """Accuracy against true labels per artifact and runtime, for the check results that carry it."""
    lines = []
    for check in checks:
        original = check.get("original")
        if not original:
            continue
        lines += [f"\n**{md(check['model'])}**: accuracy on {original['n']} labelled images ({md(check['images'])}); "
                  f"original top-1 {original['top1']:.1%}" + (f", top-5 {original['top5']:.1%}" if "top5" in original
                                                               else ""), "",
                  "| artifact | runtime | precision | top-1 | change (pts) | top-5 |", "|---|---|---|---|---|---|"]
        for r in check_rows(check):
            if r["accuracy_top1"] is None:
                continue
            lines.append(f"| {md(r['artifact'])} | {md(r['runtime'])} | {md(r['precision'])} | {r['accuracy_top1']:.1%} | "
                         f"{(r['delta_top1'] or 0) * 100:+.1f} | "
                         + (f"{r['accuracy_top5']:.1%}" if r["accuracy_top5"] is not None else "-") + " |")
    return "\n".join(lines) + ("\n" if lines else "")


def predict_table(report) -> Table:
    """The top-K labels of each image (a harness.predict.PredictReport)."""
    table = Table(title=f"{report.artifact} ({report.precision}) on {report.runtime}; labels from {report.labels_from}")
    for col in ("image", "rank", "label", "probability"):
        table.add_column(col, justify="right" if col in ("rank", "probability") else "left")
    for pred in report.predictions:
        for rank, t in enumerate(pred.top, 1):
            table.add_row(_t(pred.image) if rank == 1 else "", str(rank), _t(t["label"]), f"{t['probability']:.1%}")
    return table


def layers_table(layers: dict) -> list[Table]:
    tables = []
    for key, info in layers.items():
        if key == "note":
            continue
        t = Table(title=f"{key}: worst layers by SQNR against {info['against']} ({info['layers']} tensors compared)")
        t.add_column("tensor")
        t.add_column("SQNR vs fp32 (dB)", justify="right")
        t.add_column("own quantization SQNR (dB)", justify="right")
        for row in info["worst"]:
            t.add_row(_t(row["tensor"]), f"{row['sqnr_db']:.1f}", f"{row['quant_sqnr_db']:.1f}")
        tables.append(t)
    return tables


def host_label(report: BenchReport) -> str:
    cpu = report.host.get("cpu", {})
    return report.label or f"{cpu.get('model', '?')} ({cpu.get('cores', '?')} cores)"


def bench_rows(report: BenchReport) -> list[dict]:
    """Flat rows (one per artifact x runtime x batch) with the host attached, for tables and CSV."""
    rows = []
    for r in report.results:
        row = {"host": host_label(report), "model": report.model, "mode": report.mode, "artifact": r.artifact,
               "runtime": r.runtime, "precision": r.precision, "batch": r.batch, "device": r.device,
               "speedup_vs_eager": r.speedup, "speedup_vs_best_torch": r.speedup_vs_best_torch}
        if r.error is not None:
            row["error"] = r.error
        if r.latency is not None:
            row.update(r.latency.to_dict())
        if r.throughput is not None:
            row.update(throughput_ips=r.throughput.images_per_s, streams=r.throughput.streams,
                       requests=r.throughput.requests)
        rows.append(row)
    return rows


def bench_table(reports: list[BenchReport]) -> Table:
    """One machine: the host in the title, 100 columns. Several (``edgecnn report``): a host column."""
    merged = len({host_label(r) for r in reports}) > 1 or len({r.model for r in reports}) > 1
    modes = {r.mode for r in reports}
    throughput = modes == {"throughput"}
    what = "throughput (img/s, every core busy)" if throughput else "latency (ms)"
    title = f"{what}; speedups against PyTorch eager and the fastest PyTorch baseline, same run"
    if not merged:
        rep = reports[0]
        title = f"{_t(rep.model)} on {_t(host_label(rep))}, {_t(rep.threads or 'default')} threads: " + title
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    lead = ("host", "model") if merged else ()
    cols = (*lead, "artifact", "runtime", "prec", "b",
            *(("streams", "img/s", "p50", "p90", "p99") if throughput else ("p50", "p90", "p99", "img/s")),
            "x eager", "x best")
    for c in cols:
        table.add_column(c, justify="left" if c in ("host", "model", "artifact", "runtime", "prec") else "right",
                         no_wrap=c != "host", overflow="fold")
    for rep in reports:
        for r in bench_rows(rep):
            head = [_t(r["host"]), _t(r["model"])] if merged else []
            head += [_t(r["artifact"]), _t(r["runtime"]), _t(r["precision"]), _t(r["batch"])]
            if "error" in r:
                table.add_row(*head, *["-"] * (len(cols) - len(head) - 1), f"[red]{_t(r['error'][:40])}[/]")
                continue
            noisy = "[yellow]![/]" if r.get("noisy") and not throughput else ""
            lat = [f"{r['p50_ms']:.2f}{noisy}", f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}"]
            body = [str(r["streams"]), f"{r['throughput_ips']:.1f}", *lat] if throughput else \
                [*lat, f"{r['throughput_ips']:.0f}"]
            table.add_row(*head, *body, f"{_num(r['speedup_vs_eager']):.2f}x",
                          f"{_num(r['speedup_vs_best_torch']):.2f}x")
    best = {r.artifact for rep in reports for r in rep.results if r.runtime == "torch" and r.speedup_vs_best_torch == 1.0}
    notes = [f"x best: against the fastest PyTorch baseline ({', '.join(sorted(best)) or '-'})"]
    if not throughput:
        notes.append("img/s = batch / p50; ! = noisy (cv > 15%)")
    table.caption = "; ".join(notes)
    return table


def _num(v: float | None) -> float:
    return float("nan") if v is None else v


def markdown(reports: list[BenchReport]) -> str:
    lines = ["| host | model | mode | artifact | runtime | precision | batch | p50 ms | p90 ms | cv | img/s | "
             "x eager | x best torch |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        for r in bench_rows(rep):
            head = (f"| {md(r['host'])} | {md(r['model'])} | {md(r['mode'])} | {md(r['artifact'])} | "
                    f"{md(r['runtime'])} | {md(r['precision'])} | {md(r['batch'])} |")
            if "error" in r:
                lines.append(f"{head} error | | | | | | {md(r['error'][:60])} |")
                continue
            lines.append(f"{head} {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['cv']:.0%} | {r['throughput_ips']:.1f} | "
                         f"{_num(r['speedup_vs_eager']):.2f}x | {_num(r['speedup_vs_best_torch']):.2f}x |")
    return "\n".join(lines) + "\n"


def write_csv(reports: list[BenchReport], path) -> None:
    _write_rows([r for rep in reports for r in bench_rows(rep)], path)


def _write_rows(rows: list[dict], path) -> None:
    fields = sorted({k for r in rows for k in r})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def plot(reports: list[BenchReport], path, fidelity: dict | None = None) -> None:
    """Bar chart of p50 latency (throughput mode: images/s) per artifact/runtime; a second panel plots
    latency against logit cosine when parity results are given (``{artifact: cosine}``), or, in
    throughput mode, images/s against per-request latency across the batch sizes (one line per artifact)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingBackendError("matplotlib", extra="plot", reason="needed for --plot") from None
    rows = [r for rep in reports for r in bench_rows(rep) if "p50_ms" in r]
    throughput = {r["mode"] for r in rows} == {"throughput"}
    panels = 2 if fidelity or throughput else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 0.35 * len(rows) + 2), squeeze=False)
    labels = [f"{r['host'][:24]} | {r['artifact']}@{r['runtime']} b{r['batch']}" for r in rows]
    ax = axes[0][0]
    if throughput:
        ax.barh(labels, [r["throughput_ips"] for r in rows], color="tab:green")
        ax.set_xlabel("images/s, every core busy")
    else:
        ax.barh(labels, [r["p50_ms"] for r in rows], xerr=[r["std_ms"] for r in rows], color="tab:blue")
        ax.set_xlabel("p50 latency (ms), error bar = std")
    ax.invert_yaxis()
    if throughput:
        ax2 = axes[0][1]
        for key in dict.fromkeys((r["host"], r["artifact"], r["runtime"]) for r in rows):
            curve = sorted((r for r in rows if (r["host"], r["artifact"], r["runtime"]) == key), key=lambda r: r["batch"])
            ax2.plot([r["p50_ms"] for r in curve], [r["throughput_ips"] for r in curve], marker="o",
                     label=f"{key[1]}@{key[2]}")
            for r in curve:
                ax2.annotate(f"b{r['batch']}", (r["p50_ms"], r["throughput_ips"]), fontsize=6)
        ax2.set_xlabel("p50 latency per request under load (ms)")
        ax2.set_ylabel("images/s")
        ax2.legend(fontsize=7)
    elif fidelity:
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
