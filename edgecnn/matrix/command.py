"""``edgecnn sweep`` on the command line, and ``edgecnn report`` of a sweep's matrix (table + Pareto plot).

Kept out of cli.py so that file only registers the subcommand; nothing heavy is imported here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..guard import read_bounded, safe_text
from .cells import LOCAL, PRECISIONS


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_parser(sub, *, path_arg, positive_int) -> None:
    p = sub.add_parser("sweep", help="the model x precision x runtime x device matrix, here or on a Ray cluster")
    p.add_argument("models", nargs="*", metavar="MODEL")
    p.add_argument("--matrix", type=path_arg, metavar="FILE.toml",
                   help="the matrix as a TOML file (models, precisions, targets, devices, images, scenario, ...); "
                        "options given on the command line win")
    p.add_argument("--precisions", type=_csv, help=f"comma list of {','.join(PRECISIONS)} (default: all three)")
    p.add_argument("--targets", type=_csv, help="comma list of onnxruntime,openvino,tensorrt (default: onnxruntime)")
    p.add_argument("--devices", type=_csv, help="comma list of device classes: Ray custom resources of the "
                   f"cluster's nodes (default: {LOCAL}, any node); needs --address")
    p.add_argument("--images", type=path_arg, metavar="DIR",
                   help="an ImageFolder: calibration, judging, and accuracy from its class folders")
    p.add_argument("--scenario", help="bench scenario (single-stream, multi-stream, offline) where bench has them")
    p.add_argument("--weights", help="random, imagenet or a checkpoint (default: the zoo's)")
    p.add_argument("--resolution", type=positive_int)
    p.add_argument("--iterations", type=positive_int)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--address", help="a Ray cluster (ray://host:10001, host:6379, or auto); default: a new local "
                   "Ray on this machine's loopback interface only")
    p.add_argument("--insecure", action="store_true",
                   help="join a cluster without Ray's token authentication: anyone who can reach it can run code "
                        "on every node, and on this machine through the results")
    p.add_argument("--no-ray", action="store_true", help="run the cells one after another in this process")
    p.add_argument("--out", type=path_arg, help="the sweep's folder (default: sweep_out)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from . import sweep

    opts = {}
    if args.matrix:
        from .store import read_toml

        opts = read_toml(args.matrix)
    for k in ("precisions", "targets", "devices", "images", "scenario", "weights", "resolution", "iterations",
              "threads", "address", "out"):
        if getattr(args, k) is not None:
            opts[k] = getattr(args, k)
    opts["models"] = list(args.models) or opts.get("models") or []
    opts["insecure"] = args.insecure or opts.get("insecure", False)
    models = opts.pop("models")
    result = sweep(models, **{k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()},
                   use_ray=False if args.no_ray else None, progress=not args.quiet)
    print_matrix(result.rows)
    for what, path in result.paths.items():
        print(f"{what}: {path}")
    failed = result.failed
    if failed:
        print(f"{len(failed)} of {len(result.rows)} cell(s) did not finish ok (see 'reason')")
    return 0 if not failed else 1


def print_matrix(rows: list[dict]) -> None:
    """The matrix at the console's width (:func:`edgecnn.layout.fit`): the cell's key columns and its status with
    the reason stay; peak memory, int8 share, p90 and size drop first."""
    from rich.markup import escape

    from ..layout import Col, Verdict, console, fit

    cols = [("model", Col("model", "left")), ("precision", Col("prec", "left")), ("runtime", Col("runtime", "left", 2)),
            ("device", Col("device", "left", 1)), ("latency_ms", Col("ms")), ("p90_ms", Col("p90 ms", drop=4)),
            ("size_bytes", Col("MiB", drop=3)), ("peak_mib", Col("peak MiB", drop=6)),
            ("int8_share", Col("int8 MACs", drop=5)), ("cosine", Col("cosine", drop=2)),
            ("status", Col("status", "left"))]
    table_rows = []
    for r in rows:
        size = r.get("size_bytes")
        cells = [escape(safe_text(_cell(size / 2**20 if c == "size_bytes" and size is not None else r.get(c))))
                 for c, _col in cols[:-1]]
        label = {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(r.get("status"), "[yellow]lost[/]")
        table_rows.append(cells + [Verdict(label, safe_text(r.get("reason") or ""))])
    con = console(stderr=True)
    con.print(fit([c for _k, c in cols], table_rows, title="sweep", con=con))


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def is_sweep(path: str) -> bool:
    try:
        data = json.loads(read_bounded(path, "results file"))
    except Exception:  # noqa: BLE001 - not a sweep: the bench/check reader names the problem
        return False
    return isinstance(data, dict) and data.get("kind") == "edgecnn-sweep"


def report(paths: list[str], *, markdown: str | None, plot: str | None) -> int:
    """``edgecnn report sweep.json...``: the matrix, its Markdown, and the Pareto plot per device."""
    from .store import read_matrix, to_markdown, write_new

    rows = [r for p in paths for r in read_matrix(p)["rows"]]
    print_matrix(rows)
    if markdown:
        write_new(Path(markdown), to_markdown(rows))
    if plot:
        pareto_plot(rows, plot)
    return 0


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower latency, higher quality), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(rows: list[dict], path: str) -> None:
    """Latency against accuracy (where labels gave one to every ok cell of a device; else against size, smaller
    is better), one panel per device class, with the Pareto front drawn."""
    from ..report import pyplot, save_figure

    plt = pyplot()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("latency_ms") is not None]
    devices = list(dict.fromkeys(r["device"] for r in ok))
    if not devices:
        raise ConfigError("no finished cell to plot")
    fig, axes = plt.subplots(1, len(devices), figsize=(6 * len(devices), 5), squeeze=False)
    for ax, device in zip(axes[0], devices):
        mine = [r for r in ok if r["device"] == device]
        by_accuracy = all(r.get("accuracy_top1") is not None for r in mine)
        quality = [r["accuracy_top1"] if by_accuracy else -(r.get("size_bytes") or 0) / 2**20 for r in mine]
        pts = [(r["latency_ms"], q) for r, q in zip(mine, quality)]
        ax.scatter([p[0] for p in pts], [abs(p[1]) if not by_accuracy else p[1] for p in pts], color="tab:blue")
        for r, (x, y) in zip(mine, pts):
            ax.annotate(f"{r['model']} {r['precision']} {r['runtime']}", (x, abs(y) if not by_accuracy else y),
                        fontsize=7)
        front = [pts[i] for i in pareto_front(pts)]
        ax.plot([p[0] for p in front], [abs(p[1]) if not by_accuracy else p[1] for p in front], color="tab:red",
                marker="o", mfc="none", ms=11, label="Pareto front")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("top-1 accuracy" if by_accuracy else "size (MiB), smaller is better")
        ax.set_title(safe_text(device))
        ax.legend()
    save_figure(fig, path)
