"""Tables and plots: the export summary, check and bench tables, and reports merged across machines.

Everything here renders typed results (:class:`~edgecnn.results.ArtifactResult` inside a manifest, a
:class:`~edgecnn.harness.check.CheckReport` or a :class:`~edgecnn.harness.bench.BenchReport`); the
verdict of a result comes from the result itself, never re-derived here.
"""
from __future__ import annotations

import csv

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import MissingBackendError
from .fileio import atomic_path
from .guard import markdown_cell as md
from .guard import safe_text
from .harness.bench import BenchReport
from .harness.check import CheckReport
from .layout import Col, Verdict, fit
from .manifest import Manifest
from .results import ArtifactResult


def _t(text: object) -> str:
    """Text from a received file (a model name, a stage, a label) as a rich cell: no control characters,
    no bidi overrides, and no '[...]' read as markup."""
    return escape(safe_text(text))


def _num(value: float | None, fmt: str) -> str:
    """A figure, or '-' where it does not exist (None, or NaN: e.g. the cosine of outputs of the wrong shape)."""
    return "-" if value is None or value != value else format(value, fmt)


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def verdict(r: ArtifactResult) -> Verdict:
    """The result's verdict (:attr:`ArtifactResult.verdict`, never re-derived here) as a label and what failed."""
    v, failures = r.verdict, "; ".join(r.parity.failures) if r.parity is not None else ""
    slower = f"{r.slower_than_fp32:.2f}x slower than fp32" if r.slower_than_fp32 else ""
    low = r.low_int8  # the execution record explains a slow int8 (its float layers), or says it is not that
    if slower and not low and r.int8_share is not None:
        slower += f" (though {r.int8_share:.0%} of its MACs ran in int8)"
    slower = "; ".join(x for x in (slower, safe_text(low or "")) if x)
    if r.minus128:
        slower = "; ".join(x for x in (slower, "int8 weights hold -128: wraps on ARM, saturates on AVX2") if x)
    if v == "failed":  # could not be built, loaded or run: a failure whatever the weights, never "advisory"
        return Verdict(f"[red]failed{' (not the default)' if r.alternative else ''}:[/]", safe_text(r.error or ""))
    label = {"pass": "[green]pass[/]", "advisory": "[yellow]advisory[/]",
             "FAIL": "[red]FAIL[/]", "not judged": "[dim]not judged[/]"}.get(v, _t(v))
    reason = safe_text(r.not_judged or "") if v == "not judged" else safe_text(failures) if v != "pass" else ""
    return Verdict(label, "; ".join(x for x in (reason, slower) if x))


def accuracy_cells(acc: dict | None, top5: bool) -> list[str]:
    """'top-1 (change vs the original, in points)' and, with more than 5 classes, 'top-5'."""
    def cell(k: str) -> str:
        if not acc or k not in acc:
            return "-"
        delta = acc.get(f"delta_{k}")
        return f"{acc[k]:.1%}" + (f" ({delta * 100:+.1f})" if delta is not None else "")

    return [cell("top1")] + ([cell("top5")] if top5 else [])


def int8_cell(r: ArtifactResult | None) -> str:
    """The share of the MACs that ran in int8 ("71%"), or '-' where the runtime did not say."""
    share = r.int8_share if r is not None else None
    return "-" if share is None else f"{share:.0%}"


INT8_COL = "int8 MACs"  # the execution record's column: the first to go when the width is short
# The mark of what a selection group chose (Manifest.defaults): its default, which runs on every CPU architecture,
# and a route recorded for one architecture (OpenVINO int8 on x86: the faster u8-activation IR).
CHOSEN = "* the default of several routes, or a CPU architecture's own route"


def _accuracy_columns(original: dict | None) -> list[Col]:
    """The accuracy columns when the images carried labels (top-5 with more than 5 classes)."""
    if not original:
        return []
    return [Col("acc@1 (pts)", drop=2)] + ([Col("acc@5", drop=5)] if "top5" in original else [])


def _original_caption(original: dict | None, what: str) -> str | None:
    if not original:
        return None
    return (f"accuracy against the true labels ({original['n']} images): {what} top-1 {original['top1']:.1%}"
            + (f", top-5 {original['top5']:.1%}" if "top5" in original else ""))


def export_table(manifest: Manifest, *, con: Console | None = None) -> Table:
    """rich Table: artifact (* :data:`CHOSEN`), size, parity against the original, accuracy
    where labelled, quick p50 latency and the verdict, fitted to the console (:func:`edgecnn.layout.fit`)."""
    n = next((r.parity.n for r in manifest.results.values() if r.parity is not None), "?")
    original = (manifest.evaluation or {}).get("accuracy")
    what = "the original" if (manifest.evaluation or {}).get("original") != "torch" else "the PyTorch original"
    acc_cols = _accuracy_columns(original)
    cols = [Col("artifact", "left"), Col("runtime", "left", drop=7), Col("prec", "left", drop=4),
            Col("size", drop=8), Col("cosine", drop=1), Col("max abs", drop=9), Col("top-1 conf.", drop=3),
            *acc_cols, Col("p50 ms", drop=6), Col(INT8_COL, drop=11), Col("verdict", "left")]
    defaults, alternatives = manifest.defaults(), manifest.alternatives()
    rows = []
    for key, art in [(a.key, a) for a in manifest.artifacts] + [(k, None) for k in manifest.failures()]:
        res = manifest.results.get(key) or ArtifactResult(key, art.precision if art else "-")
        p, lat = res.parity, res.latency
        rows.append([
            _t(key) + (" *" if key in defaults else ""), (art.runtime if art else None) or "-",
            res.precision if art else "-", _fmt_bytes(art.bytes) if art else "-",
            _num(p.cosine if p is not None else None, ".5f"),  # a failing ParityResult is falsy: 'is not None'
            _num(p.max_abs if p is not None else None, ".2e"),
            p.agreement(digits=0) if p is not None else "-",
            *(accuracy_cells(res.accuracy, len(acc_cols) > 1) if original else []),
            f"{lat.p50_ms:.2f}" if lat else "-", int8_cell(res), verdict(res)])
    notes = []
    if defaults:
        notes.append(CHOSEN + " (" + ", ".join(sorted(alternatives)) + ": alternatives)")
    advisory = next((r.advisory for r in manifest.results.values() if r.advisory), None)
    notes += [safe_text(c) for c in (_original_caption(original, what), advisory and "advisory: " + advisory) if c]
    return fit(cols, rows, title=f"{_t(manifest.model)}: artifacts vs {what} ({n} held-out images)", caption=notes,
               con=con)


def check_table(report: CheckReport, *, con: Console | None = None) -> Table:
    """Parity (and accuracy) of every artifact x runtime and its verdict, fitted to the console."""
    acc_cols = _accuracy_columns(report.original)
    cols = [Col("artifact", "left"), Col("runtime", "left"), Col("prec", "left", drop=4), Col("cosine", drop=1),
            Col("max abs", drop=8), Col("rel L2", drop=10), Col("SQNR dB", drop=9), Col("top-1", drop=6),
            Col("top-1 conf.", drop=3), Col("top-5", drop=7), *acc_cols, Col(INT8_COL, drop=11),
            Col("peak MiB", drop=12), Col("verdict", "left")]
    defaults = set(report.defaults)
    rows = []
    for r in report.results:
        p = r.parity
        acc = accuracy_cells(r.accuracy, len(acc_cols) > 1) if report.original else []
        head = [_t(r.artifact) + (" *" if r.artifact in defaults else ""), _t(r.runtime), _t(r.precision)]
        if r.error is not None or p is None:
            rows.append([*head, *["-"] * (7 + len(acc)), int8_cell(r), _mib(r.peak_rss_mib), verdict(r)])
            continue
        rows.append([*head, _num(p.cosine, ".5f"), _num(p.max_abs, ".2e"), _num(p.rel_l2, ".2e"),
                     _num(p.sqnr_db, ".1f"), _num(p.top1, ".1%"),
                     p.agreement(),
                     f"{p.top5_overlap:.2f}" if p.top5_overlap is not None else "-", *acc, int8_cell(r),
                     _mib(r.peak_rss_mib), verdict(r)])
    notes = [safe_text(c) for c in (_original_caption(report.original, "the original"), *report.notes) if c]
    if any(r.peak_rss_mib is not None for r in report.results):
        notes.append(PEAK_NOTE)
    if defaults:
        notes.insert(0, CHOSEN + "; the others of its group are alternatives")
    return fit(cols, rows, title=f"{_t(report.model)}: parity against the original ({report.n_images} images: "
                                 f"{_t(report.images)})", caption=notes, con=con)


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
                     "delta_top5": a.get("delta_top5"), "peak_rss_mib": r.get("peak_rss_mib"), "ok": r.get("ok"),
                     "error": r.get("error")})
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


def predict_table(report, *, con: Console | None = None) -> Table:
    """The top-K labels of each image (a harness.predict.PredictReport)."""
    rows = [[_t(pred.image) if rank == 1 else "", str(rank), _t(t["label"]), f"{t['probability']:.1%}"]
            for pred in report.predictions for rank, t in enumerate(pred.top, 1)]
    return fit([Col("image", "left"), Col("rank"), Col("label", "left"), Col("probability")], rows,
               title=f"{_t(report.artifact)} ({_t(report.precision)}) on {_t(report.runtime)}; labels from "
                     f"{_t(report.labels_from)}", con=con)


def layers_table(layers: dict, *, con: Console | None = None) -> list[Table]:
    tables = []
    for key, info in layers.items():
        if key == "note":
            continue
        rows = [[_t(row["tensor"]), f"{row['sqnr_db']:.1f}", f"{row['quant_sqnr_db']:.1f}"] for row in info["worst"]]
        tables.append(fit([Col("tensor", "left"), Col("SQNR vs fp32 (dB)"), Col("own quantization SQNR (dB)", drop=1)],
                          rows, title=f"{_t(key)}: worst layers by SQNR against {_t(info['against'])} "
                                      f"({info['layers']} tensors compared)", con=con))
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
               "speedup_vs_eager": r.speedup, "speedup_vs_best_torch": r.speedup_vs_best_torch,
               "int8_macs": r.int8_share, "peak_rss_mib": r.peak_rss_mib}
        if why := report.speedup_why(r):
            row["speedup_why"] = why
        if r.error is not None:
            row["error"] = r.error
        if r.latency is not None:  # its batch: the images per query (multi-stream: the query's samples)
            row.update(r.latency.to_dict(), batch=r.batch, images_per_query=r.latency.batch)
        if r.throughput is not None:
            row.update(throughput_ips=r.throughput.images_per_s, streams=r.throughput.streams,
                       requests=r.throughput.requests)
        if r.scenario:
            row.update(scenario_row(r.scenario))
        rows.append(row)
    return rows


def scenario_row(sc: dict) -> dict:
    """A row's scenario record, flat: its verdict and reasons, the early-stopping estimate, stability, the output
    check and the throttle flag (the JSON keeps all of it)."""
    es, st, check, state = (sc.get("early_stopping") or {}), (sc.get("stability") or {}), \
        (sc.get("output_check") or {}), (sc.get("machine") or {})
    return {"scenario": sc.get("scenario"), "verdict": sc.get("verdict"), "reasons": "; ".join(sc.get("reasons") or []),
            "queries": sc.get("queries"), "es_percentile": es.get("percentile"), "es_estimate_ms": es.get("estimate_ms"),
            "es_discarded": es.get("discarded"), "stable": st.get("stable"), "windows": len(st.get("windows") or []),
            "output_checked": check.get("checked"), "output_mismatched": check.get("mismatched"),
            "throttled": state.get("throttled") if state else None}


def scenario_verdict(sc: dict | None) -> Verdict:
    """VALID, or INVALID with every reason; 'ok' for a row measured before scenarios existed."""
    if not sc:
        return Verdict("ok")
    if sc.get("verdict") == "VALID":
        return Verdict("[green]VALID[/]")
    return Verdict("[yellow]INVALID[/]", safe_text("; ".join(sc.get("reasons") or [])))


def settings_key(report: BenchReport) -> str:
    """What `report` compares like with like on: the scenario's settings (seeds, minimums, samples per query, the
    sample library's hash), none for a result from before scenarios."""
    import json

    return json.dumps(report.settings, sort_keys=True) if report.settings else "none"


def _settings_text(settings: dict | None) -> str:
    if not settings:
        return "no scenario settings recorded (bench before scenarios)"
    try:
        return _describe(settings)
    except (TypeError, ValueError, AttributeError, KeyError):  # a received file's settings: named, never a traceback
        return "settings that cannot be read"


def _describe(settings: dict) -> str:
    lib = settings.get("library") or {}
    spq = f", {settings['samples_per_query']} samples per query" if settings.get("scenario") == "multi-stream" else ""
    unit = "samples" if settings.get("scenario") == "offline" else "queries"
    return (f"{_t(settings.get('scenario'))}: min {settings.get('min_duration_s'):g} s and "
            f"{settings.get('min_queries')} {unit}{spq}; {lib.get('library_size')} samples of "
            f"{_t(lib.get('images'))} (crop seed {lib.get('library_seed')}, sha256 {str(lib.get('library_sha256'))[:12]}), "
            f"query seed {settings.get('sample_seed')}, check seed {settings.get('check_seed')}"
            + (", sustained" if settings.get("sustained") else ""))


def settings_groups(reports: list[BenchReport]) -> list[tuple[str | None, list[BenchReport]]]:
    """The reports grouped by their settings, each group with the line that says why it is apart (None: one group)."""
    groups: dict[str, list[BenchReport]] = {}
    for rep in reports:
        groups.setdefault(settings_key(rep), []).append(rep)
    if len(groups) == 1:
        return [(None, reports)]
    return [(f"results measured under other settings are not compared with each other: this table is "
             f"{_settings_text(g[0].settings)}", g) for g in groups.values()]


def scenario_lines(report: BenchReport) -> list[str]:
    """The lines bench prints under its table: the settings, how far they are from MLPerf's, the machine state."""
    if not report.settings:
        return []
    lines = [_settings_text(report.settings)]
    if report.settings.get("note"):
        lines.append(safe_text(report.settings["note"]) + " (a quick check, not a submission)")
    if report.scenario != "offline":
        lines.append("VALID: min duration and queries met, early stopping met, the last 3 windows agree within 10%, "
                     "sampled timed outputs equal the accuracy pass, no clock fell")
    invalid = [r for r in report.results if (r.scenario or {}).get("verdict") == "INVALID"]
    if invalid:
        lines.append(f"INVALID: {len(invalid)} of {sum(1 for r in report.results if r.scenario)} rows (reasons above)")
    if report.machine_note:
        lines.append(safe_text(report.machine_note))
    return lines


def bench_table(reports: list[BenchReport], *, con: Console | None = None) -> Table:
    """One machine: the host in the title. Several (``edgecnn report``): a host column. Fitted to the console."""
    merged = len({host_label(r) for r in reports}) > 1 or len({r.model for r in reports}) > 1
    throughput = {r.mode for r in reports} == {"throughput"}
    several_batches = len({r.batch for rep in reports for r in rep.results}) > 1
    scenarios = {r.scenario for r in reports if r.scenario} - {"offline"}
    what = "throughput (img/s, every core busy)" if throughput else \
        f"{'/'.join(sorted(scenarios)) + ' ' if scenarios else ''}latency (ms)"
    es_pct = sorted({float(r.scenario["early_stopping"]["percentile"]) for rep in reports for r in rep.results
                     if (r.scenario or {}).get("early_stopping")})
    es_header = f"p{es_pct[0] * 100:g} est." if len(es_pct) == 1 else "ES est."
    title = f"{what}; speedups against PyTorch eager and the fastest PyTorch baseline, same run"
    if not merged:
        rep = reports[0]
        title = f"{_t(rep.model)} on {_t(host_label(rep))}, {_t(rep.threads or 'default')} threads: " + title
    lead = [Col("host", "left"), Col("model", "left")] if merged else []
    latency = [Col("p50"), Col("p90", drop=6), Col("p99", drop=7), *([Col(es_header, drop=5)] if es_pct else [])]
    cols = [*lead, Col("artifact", "left"), Col("runtime", "left"), Col("prec", "left", drop=5),
            Col("b", drop=0 if several_batches else 4),
            *([Col("streams", drop=8), Col("img/s"), *latency] if throughput else [*latency, Col("img/s", drop=3)]),
            Col("x eager", drop=2), Col("x best", drop=1), Col(INT8_COL, drop=11), Col("peak MiB", drop=12),
            Col("result", "left")]
    rows, why = [], {}
    for rep in reports:
        defaults = set(rep.defaults)
        for res, r in zip(rep.results, bench_rows(rep)):
            head = [_t(r["host"]), _t(r["model"])] if merged else []
            head += [_t(r["artifact"]) + (" *" if r["artifact"] in defaults else ""), _t(r["runtime"]),
                     _t(r["precision"]), _t(r["batch"])]
            if "error" in r:
                rows.append([*head, *["-"] * (len(cols) - len(head) - 1),
                             Verdict("[red]failed:[/]", safe_text(r["error"]))])
                continue
            noisy = "[yellow]![/]" if r.get("noisy") and not throughput and "verdict" not in r else ""
            lat = [f"{r['p50_ms']:.2f}{noisy}", f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}"]
            if es_pct:
                lat.append(_num(r.get("es_estimate_ms"), ".2f"))
            body = [str(r["streams"]), f"{r['throughput_ips']:.1f}", *lat] if throughput else \
                [*lat, f"{r['throughput_ips']:.0f}"]
            if r.get("speedup_why"):
                why.setdefault(r["speedup_why"], None)
            rows.append([*head, *body, _x(r["speedup_vs_eager"]), _x(r["speedup_vs_best_torch"]),
                         "-" if r.get("int8_macs") is None else f"{r['int8_macs']:.0%}", _mib(r["peak_rss_mib"]),
                         scenario_verdict(res.scenario)])
    best = {r.artifact for rep in reports for r in rep.results
            if r.runtime == "torch" and r.speedup_vs_best_torch == 1.0}
    notes = [f"x best: against the fastest PyTorch baseline ({', '.join(sorted(best)) or '-'})"]
    notes += [f"- : {w}" for w in why]
    if not throughput:
        notes.append("img/s = images per query / p50" + ("" if es_pct else "; ! = noisy (cv > 15%)"))
    if es_pct:
        notes.append(f"{es_header}: MLPerf loadgen's early-stopping estimate of the percentile (99% confidence)")
    if any(r.peak_rss_mib is not None for rep in reports for r in rep.results):
        notes.append(PEAK_NOTE)
    if any(rep.defaults for rep in reports):
        notes.append(CHOSEN)
    return fit(cols, rows, title=title, caption=notes, con=con, key=len(lead))


PEAK_NOTE = ("peak MiB: resident-memory growth of the worker process that loaded and ran the artifact (after "
             "importing its runtime), measured; - where it ran in this process")


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _x(v: float | None) -> str:
    """A speedup, or '-' where there is none (no PyTorch baseline to divide by): never 'nanx'."""
    return "-" if v is None else f"{v:.2f}x"


def markdown(reports: list[BenchReport]) -> str:
    """One table per group of equal settings (:func:`settings_groups`), each under the line that says why."""
    lines = []
    for why, group in settings_groups(reports):
        lines += [f"\n{md(why)}\n"] if why else []
        lines += ["| host | model | mode | artifact | runtime | precision | batch | p50 ms | p90 ms | ES est. ms | cv | "
                  "img/s | x eager | x best torch | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rep in group:
            for r in bench_rows(rep):
                head = (f"| {md(r['host'])} | {md(r['model'])} | {md(r.get('scenario') or r['mode'])} | "
                        f"{md(r['artifact'])} | {md(r['runtime'])} | {md(r['precision'])} | {md(r['batch'])} |")
                if "error" in r:
                    lines.append(f"{head} error | | | | | | | | {md(r['error'][:60])} |")
                    continue
                verdict = (r.get("verdict") or "-") + (f": {r['reasons']}" if r.get("reasons") else "")
                lines.append(f"{head} {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {_num(r.get('es_estimate_ms'), '.2f')} | "
                             f"{r['cv']:.0%} | {r['throughput_ips']:.1f} | {_x(r['speedup_vs_eager'])} | "
                             f"{_x(r['speedup_vs_best_torch'])} | {md(verdict)} |")
    return "\n".join(lines) + "\n"


def write_csv(reports: list[BenchReport], path) -> None:
    _write_rows([r for rep in reports for r in bench_rows(rep)], path)


def _write_rows(rows: list[dict], path) -> None:
    fields = sorted({k for r in rows for k in r})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or the error that names the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingBackendError("matplotlib", extra="plot", reason="needed for --plot") from None
    return plt


def save_figure(fig, path) -> None:
    """Lay out, write through a temp name this machine owns, close."""
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)
    pyplot().close(fig)


def plot(reports: list[BenchReport], path, fidelity: dict | None = None) -> None:
    """Bar chart of p50 latency (throughput mode: images/s) per artifact/runtime; a second panel plots
    latency against logit cosine when parity results are given (``{artifact: cosine}``), or, in
    throughput mode, images/s against per-request latency across the batch sizes (one line per artifact)."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_timeline(reports: list[BenchReport], path) -> None:
    """``--sustained``: the median latency over time of every row (one line each), to see the steady state."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for rep in reports:
        for r in rep.results:
            points = (r.scenario or {}).get("timeline") or []
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], lw=1,
                        label=f"{safe_text(r.artifact)}@{safe_text(r.runtime)} b{r.batch}")
    ax.set_xlabel("seconds since the row's first timed query")
    ax.set_ylabel("median latency per time bucket (ms)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
