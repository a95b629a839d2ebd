"""The ``edgecnn`` command: a thin layer over the Python API.

Errors a user can act on (:class:`edgecnn.errors.EdgecnnError`, a bad option, a full disk) become
one line on stderr and exit code 2; Ctrl-C exits 130 and SIGTERM 143, both
cleaning up the same way; warnings are one line each. Progress bars
are drawn only on a terminal. Heavy imports happen inside the subcommand that needs them, so
``edgecnn --help`` and ``edgecnn list`` start fast and work without optional backends.
"""
from __future__ import annotations

import argparse
import ast
import json
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from . import __version__, backends
from .errors import ConfigError, EdgecnnError, first_line
from .exporters.int8 import CALIBRATION_METHODS, PRESETS, recipe_for
from .fileio import atomic_path, writable_dir, write_failure
from .guard import check_limit, clip, read_bounded, safe_text, safe_tree
from .timing import BASELINES, MODES, SCENARIOS

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
MESSAGE_CHARS = 2000  # an error or warning line, at most (received text inside is clipped shorter where quoted)


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong + where to look), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def bounded(name: str) -> Callable[[str], int]:
    """An argparse type: a positive integer within the limit ``name`` (:data:`edgecnn.guard.LIMITS`)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        try:
            return check_limit(name, value, "")
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).strip()) from None

    return parse


def path_arg(text: str) -> str:
    """An argparse type for a file or folder name: valid UTF-8, each part at most 255 bytes."""
    try:
        parts = [p.encode("utf-8") for p in Path(text).parts]
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{safe_text(ascii(text))} is not valid UTF-8") from None
    if not text or any(len(p) > 255 for p in parts) or "\x00" in text:
        raise argparse.ArgumentTypeError(f"{safe_text(text[:60])}...: a file name is at most 255 bytes")
    return text


def model_name(text: str) -> str:
    """An argparse type for the model: a name or path of a sane length (checked before any lookup)."""
    try:
        check_limit("name", len(text), "model name length")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path_arg(text) if text else text


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal: in logs and pipes they are noise (and carriage returns)."""
    return not args.quiet and sys.stderr.isatty()


def _say(console, text: str, style: str | None = None) -> None:
    """Print text that may hold file names, received text or tool output: '[...]' in it is not rich markup,
    and control and invisible characters are shown escaped."""
    from rich.markup import escape

    console.print(escape(safe_text(text, newlines=True)), style=style)


def _console(args: argparse.Namespace | None = None):
    """Every command's console: $COLUMNS wide when set, else the terminal's width, else 100 (edgecnn.layout);
    on standard error when ``--json -`` keeps standard output for the JSON alone."""
    from .layout import console

    return console(stderr=getattr(args, "json", None) == "-")


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


@command
def cmd_list(args: argparse.Namespace) -> int:
    """The zoo from its precomputed catalogue (edgecnn.catalogue): no torch, no model built."""
    from . import catalogue
    from .layout import Col, fit

    rows = catalogue.select(catalogue.load(), args.family)
    if args.json:
        _write_json(rows, args.json)
        if args.json == "-":
            return 0
    console = _console(args)
    cols = [Col("name", "left"), Col("family", "left", drop=3), Col("params"), Col("MACs"),
            Col("input", "left", drop=2), Col("top-1", drop=1), Col("weights", "left", drop=4)]
    console.print(fit(cols, [[r["name"], r["family"], _human(r["params"]), _human(r["macs"]),
                              f"{r['in_chans']}x{r['resolution']}x{r['resolution']}",
                              f"{r['top1']:.1f}" if r["top1"] else "-", ", ".join(r["weights"]) or "-"] for r in rows],
                      title=f"edgecnn models ({len(rows)})", con=console))
    return 0


def _source_label(src) -> str:
    return {"torchvision": "torchvision card", "reference": "reference impl.", "computed": "computed",
            "lecture": "lecture"}.get(src.kind, "paper")


def _gap(check, figure: str) -> str:
    gap = check.gap(figure)
    return "" if gap is None or abs(gap) < 0.0005 else f" ({gap:+.1%})"


@command
def cmd_info(args: argparse.Namespace) -> int:
    from .accounting import compare_sources
    from .models import get_spec

    if ":" in args.model or Path(args.model).suffix.lower() in (".py", ".pt2", ".onnx"):
        raise ConfigError(f"info measures the zoo's models (edgecnn list); {args.model} is a model of your own: "
                          "export it (edgecnn export) and measure the folder with edgecnn bench")
    spec = get_spec(args.model)
    options = dict(args.model_arg or ())
    if args.num_classes:
        options["num_classes"] = args.num_classes
    stats, checks = compare_sources(args.model, resolution=args.resolution, options=options)
    memory = train = None
    if args.memory or args.measure:
        from .harness.memory import inference_memory
        from .harness.training import training_memory as autograd_memory

        memory = inference_memory(args.model, resolution=stats.resolution, options=options, measure=args.measure)
        train = autograd_memory(args.model, stats.resolution, **options)
    if args.json:
        out = stats.to_dict(layers=args.layers)
        out.update(family=spec.family, paper=spec.paper, mean=list(spec.mean), std=list(spec.std), options=options,
                   published=[_source_dict(c) for c in checks])
        if memory is not None:
            out["inference_memory"] = memory.to_dict(layers=args.layers)
            out["training_memory_autograd"] = train.to_dict()
        _write_json(out, args.json)
        if args.json == "-":
            return 0
    from rich.markup import escape

    from .layout import Col, fit

    console = _console(args)
    if args.layers:
        cols = [Col("layer", "left"), Col("type", "left", drop=5), Col("output", "left", drop=4),
                Col("dtype", "left", drop=6), Col("activations"), Col("bytes", drop=1), Col("params", drop=2),
                Col("MACs", drop=3)]
        rows = [[escape(layer.name), escape(layer.type), "x".join(map(str, layer.output_shape[1:])), layer.dtype,
                 f"{layer.activations:,}", f"{layer.bytes:,}" if layer.bytes else "0", f"{layer.params:,}",
                 f"{layer.macs:,}"] for layer in stats.layers]
        rows.append([f"[bold]{c}[/]" if c else "" for c in ("total", "", "", "", f"{stats.activations:,}",
                                                           f"{stats.activation_bytes:,}", f"{stats.params:,}",
                                                           f"{stats.macs:,}")])
        console.print(fit(cols, rows, title=f"{escape(args.model)} @ {stats.resolution}x{stats.resolution}, per layer "
                                            "(batch 1)", con=console))
    title = f"{escape(args.model)} ({spec.family}) @ {stats.resolution}x{stats.resolution}"
    title += f", {escape(str(options))}" if options else ""
    rows = [[f"[bold]{c}[/]" for c in ("measured", str(stats.resolution), f"{stats.params:,}", _human(stats.macs),
                                        f"{stats.activations:,}", "-", "-")]]
    for check in checks:
        src, own = check.source, check.stats
        if own is not stats:  # the source's figures hold under other conditions: measure under those
            where = ", ".join([f"{own.resolution} px"] + [f"{k}={v}" for k, v in check.options.items()])
            rows.append([escape(f"  measured ({where})"), str(own.resolution), f"{own.params:,}", _human(own.macs),
                         f"{own.activations:,}", "-", "-"])
        rows.append([_source_label(src), str(own.resolution),
                     f"{src.params:,}{_gap(check, 'params')}" if src.params else "-",
                     f"{_human(src.macs)}{_gap(check, 'macs')}" if src.macs else "-",
                     f"{src.activations:,}{_gap(check, 'activations')}" if src.activations else "-",
                     f"{src.top1:.2f}%" if src.top1 else "-", f"{src.top5:.2f}%" if src.top5 else "-"])
    cols = [Col("", "left"), Col("input", drop=3), Col("params"), Col("multiply-adds"), Col("activations", drop=2),
            Col("top-1", drop=1), Col("top-5", drop=4)]
    console.print(fit(cols, rows, title=title, con=console))
    for check in checks:
        src = check.source
        line = f"{_source_label(src)}: {src.source}"
        if check.departures:
            line += f"\n  differs by more than 1% ({', '.join(check.departures)}): {src.note or 'no reason recorded'}"
        elif src.note:
            line += f"\n  note: {src.note}"
        _say(console, line)
    _say(console, f"paper link: {spec.paper}")
    mib = 2**20
    _say(console, f"activations (batch 1, training view: every forward tensor incl. input, BatchNorm outputs, "
                  f"residual adds, concatenations): {stats.activations:,} = "
                  f"{stats.activation_bytes / mib:.1f} MiB fp32")
    if memory is not None:
        for line in train.lines():
            _say(console, line)
        console.print(memory.table(con=console))
        for line in memory.notes():
            _say(console, line)
    return 0


def _source_dict(check) -> dict:
    src = check.source
    return {"kind": src.kind, "source": src.source, "params": src.params, "macs": src.macs, "top1": src.top1,
            "top5": src.top5, "activations": src.activations, "resolution": check.stats.resolution,
            "options": check.options, "note": src.note, "measured": {"params": check.stats.params,
                                                                    "macs": check.stats.macs,
                                                                    "activations": check.stats.activations},
            "departs_over_1pct": check.departures}


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _names(kind: str, known: Callable[[], Sequence[str]]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma list of names, each one of ``known()`` (read from its registry)."""

    def parse(text: str) -> tuple[str, ...]:
        names, valid = _csv(text), list(known())
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {kind} '{bad[0] if bad else text}'; {kind}s are: "
                                             f"{', '.join(valid)}")
        return names

    return parse


def _floats(text: str) -> tuple[float, ...]:
    """An argparse type: a comma list of numbers (``0.485,0.456,0.406``)."""
    try:
        values = tuple(float(v) for v in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _shape(text: str) -> tuple[int, ...]:
    """An argparse type: N,C,H,W (``1,3,224,224``)."""
    try:
        dims = tuple(int(v) for v in _csv(text))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected four positive integers N,C,H,W (e.g. 1,3,224,224), got {text!r}")
    return dims


def model_arg(text: str) -> tuple[str, object]:
    """An argparse type for ``--model-arg KEY=VALUE``: VALUE read as a Python literal (3, 0.5, True, None,
    [1, 2], 'text'; true/false/none too), else kept as the string typed."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    lowered = {"true": True, "false": False, "none": None}
    if raw.strip().lower() in lowered:
        return key, lowered[raw.strip().lower()]
    try:
        return key, ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return key, raw


def _runtime_names() -> list[str]:
    from .runtimes import RUNTIMES  # loads torch: only when --runtimes is actually given

    return RUNTIMES.names()


def _device(text: str) -> str:
    """An argparse type: one device some runtime runs on (read from the runtimes, only when given)."""
    from .runtimes import DEVICES

    if text not in DEVICES:
        raise argparse.ArgumentTypeError(f"unknown device '{text}'; devices are: {', '.join(DEVICES)}")
    return text


DEVICE_HELP = ("run every artifact on this device, skipping runtimes that cannot (default: each runtime's own: "
               "TensorRT engines on cuda, the rest on cpu)")


@command
def cmd_export(args: argparse.Namespace) -> int:
    from .pipeline import ExportConfig, run_export
    from .report import export_table

    int8 = recipe_for(args.int8_preset, calibration=args.calib_method, per_channel=False if args.per_tensor else None,
                      bias_correction=False if args.no_bias_correction else None,
                      equalize=True if args.equalize else None) if args.int8 else False
    cfg = ExportConfig(
        model=args.model, weights=args.weights, num_classes=args.num_classes, resolution=args.resolution,
        batch=args.batch, dynamic_batch=args.dynamic_batch, opset=args.opset, fp16=args.fp16, int8=int8,
        calib_dir=args.calib_dir, calib_size=args.calib_size, eval_dir=args.images, targets=args.targets,
        out=args.out, force=args.force, max_drop=args.max_drop, threads=args.threads, progress=_progress(args),
        model_args=dict(args.model_arg or ()), input_shape=args.input_shape, mean=args.mean, std=args.std,
        resize=args.resize, crop=args.crop, labels=args.labels, int8_cosine=args.int8_cosine, int8_top1=args.int8_top1,
    )
    console = _console()
    _say(console, f"edgecnn export {cfg.model} -> {cfg.out_dir}", "bold")
    result = run_export(cfg, log=(lambda m: _say(console, m)) if not args.quiet else (lambda _m: None))
    console.print(export_table(result.manifest, con=console))
    for target, why in result.missing_targets.items():
        _say(console, f"{target}: not built: {backends.missing(target) or why}", "yellow")
    _say(console, f"manifest: {result.out_dir / 'manifest.json'}")
    if not result.passed:
        manifest = result.manifest
        unreplaced = [s for s in manifest.failures() if s not in manifest.alternatives()]
        if unreplaced:
            console.print(f"[red]build FAILED for {', '.join(unreplaced)} (see the table)[/]")
        console.print("[red]parity FAILED for at least one artifact (see the table)[/]" if not unreplaced else
                      "[red]export FAILED[/]")
        return 1
    return 0


def _wait_and_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true",
                   help="fail at once if an export is writing the folder (default: wait for it to finish)")
    p.add_argument("--trust-source", action="store_true",
                   help="run the Python factory manifest.json names, and read a source or checkpoint it names "
                        "outside the folder, to rebuild the original (default: the exported model.onnx stands in), "
                        "and load TensorRT engines this machine did not build (native code); never for a folder "
                        "you received from someone you do not trust")


def _int8_thresholds(p: argparse.ArgumentParser) -> None:
    """export and check judge int8 by the same rule, with the same two overrides (parity.int8_tolerance)."""
    p.add_argument("--int8-cosine", type=float, metavar="C", help="override the int8 cosine threshold (default 0.98)")
    p.add_argument("--int8-top1", type=float, metavar="FRACTION",
                   help="override the int8 top-1 agreement threshold on confident inputs (default 0.97; it fails "
                        "only when the agreement's 95%% upper confidence bound is below it)")


def _check_outputs(*paths: str | None) -> None:
    """Result files must be writable before minutes of work, not after."""
    for path in paths:
        if path and path != "-":
            writable_dir(Path(path).resolve().parent)


def _write_json(data: dict | list, path: str) -> None:
    """``path`` '-': standard output."""
    if path == "-":
        print(json.dumps(data, indent=2, default=str))
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))


@command
def cmd_check(args: argparse.Namespace) -> int:
    from .harness.check import check_dir
    from .parity import Tolerance, int8_tolerance
    from .report import check_table, layers_table

    _check_outputs(args.json, args.csv)
    tolerances = {}
    if (int8 := int8_tolerance(cosine=args.int8_cosine, top1=args.int8_top1)) is not None:
        tolerances["int8"] = int8
    if args.fp32_atol is not None:
        tolerances["fp32"] = Tolerance(max_abs_rel=args.fp32_atol, cosine=Tolerance.for_precision("fp32").cosine)
    result = check_dir(args.out_dir, images=args.images, runtimes=args.runtimes, n_images=args.num_images,
                       threads=args.threads, tolerances=tolerances, layers=args.layers, device=args.device,
                       trust_source=args.trust_source, wait=not args.no_wait, emulate=args.emulate)
    console = _console(args)
    console.print(check_table(result, con=console))
    for line in result.skipped:
        _say(console, f"skipped {line}", "yellow")
    if args.csv:
        from .report import write_check_csv

        write_check_csv(result.to_dict(), args.csv)
    if args.layers:
        for t in layers_table(result.layers, con=console):
            console.print(t)
        if "note" in result.layers:
            console.print(result.layers["note"])
    if args.json:
        _write_json(result.to_dict(), args.json)
        if args.json != "-":
            _say(console, f"results: {args.json}")
    console.print("[green]all artifacts pass[/]" if result.passed else "[red]parity FAILED[/]")
    return 0 if result.passed else 1


@command
def cmd_bench(args: argparse.Namespace) -> int:
    from .harness.bench import bench_dir
    from .report import bench_table, plot, plot_timeline, scenario_lines, write_csv

    _check_outputs(args.json, args.csv, args.plot)
    console = _console(args)
    if args.mode:
        _say(console, f"note: --mode is deprecated: --mode {args.mode} is --scenario "
                      f"{'single-stream' if args.mode == 'latency' else 'offline'}", "yellow")
    result = bench_dir(args.out_dir, runtimes=args.runtimes, batches=args.batch, threads=args.threads,
                       warmup=args.warmup, iterations=args.iterations, duration_s=args.duration, mode=args.mode,
                       baselines=args.baselines, device=args.device, progress=_progress(args),
                       trust_source=args.trust_source, wait=not args.no_wait, scenario=args.scenario,
                       images=args.images, samples_per_query=args.samples_per_query, sustained_min=args.sustained)
    if args.label:
        result.label = args.label
    cpu = result.host["cpu"]
    console.print(f"host: {cpu['model']}, {cpu['cores']} cores, ISA {' '.join(cpu['isa']) or '-'}; "
                  f"threads {args.threads or 'runtime default'}; GPU {result.host['gpu'] or 'none'}")
    if cpu.get("disagree"):
        _say(console, f"note: {cpu['disagree']}", "yellow")
    console.print(bench_table([result], con=console))
    for line in result.skipped:
        _say(console, f"skipped {line}", "yellow")
    if result.noisy:
        console.print(f"[yellow]warning: high variation (cv > 15%) for {', '.join(result.noisy)}: "
                      "close other programs, pin --threads, or use --duration for longer runs[/]")
    if args.json:
        _write_json(result.to_dict(), args.json)
    if args.csv:
        write_csv([result], args.csv)
    for line in scenario_lines(result):
        _say(console, line, "yellow" if "INVALID" in line or "machine state" in line else None)
    if args.plot:
        (plot_timeline if args.sustained else plot)([result], args.plot)
    failed = any(r.error or ((r.scenario or {}).get("output_check") or {}).get("passed") is False
                 for r in result.results)  # an artifact that computed something else while timed fails
    return 1 if failed else 0


@command
def cmd_predict(args: argparse.Namespace) -> int:
    from .harness.predict import predict_dir
    from .report import predict_table

    _check_outputs(args.json)
    result = predict_dir(args.out_dir, args.images, runtime=args.runtime, artifact=args.artifact, top=args.top,
                         threads=args.threads, trust_source=args.trust_source)
    console = _console(args)
    console.print(predict_table(result, con=console))
    if result.note:
        _say(console, result.note, "yellow")
    if args.json:
        _write_json(result.to_dict(), args.json)
    return 0


@command
def cmd_report(args: argparse.Namespace) -> int:
    from .harness.bench import BenchReport
    from .report import accuracy_markdown, bench_table, markdown, plot, settings_groups

    _check_outputs(args.markdown, args.plot)
    from .matrix.command import is_sweep, report as sweep_report

    if any(is_sweep(p) for p in args.results):  # a sweep's matrix: its table and Pareto plot per device
        if not all(is_sweep(p) for p in args.results):
            raise ConfigError("report sweep results (sweep.json) on their own, without bench or check results")
        return sweep_report(args.results, markdown=args.markdown, plot=args.plot)
    benches, fidelity, checks = [], {}, []
    for path in args.results:
        try:
            data = safe_tree(json.loads(read_bounded(path, "results file")))
        except EdgecnnError as e:
            raise ConfigError(str(e)) from None
        except (json.JSONDecodeError, RecursionError) as e:
            raise ConfigError(f"cannot read results file {safe_text(path)}: {type(e).__name__}") from None
        rows = data.get("results") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ConfigError(f"{safe_text(path)} is not an edgecnn bench or check result")
        try:  # every field read and rendered once here, so a malformed file is named, not a traceback later
            if "n_images" in data:  # a check result: fidelity (and accuracy, where labelled) per artifact
                cosines = {str(r["artifact"]): (r.get("parity") or {}).get("cosine") for r in rows}
                fidelity.update({k: None if c is None else float(c) for k, c in cosines.items()})
                accuracy_markdown([data])
                checks.append(data)
            else:
                bench = BenchReport.from_dict(data)
                bench_table([bench])
                markdown([bench])
                benches.append(bench)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ConfigError(f"{safe_text(path)} is not a well-formed edgecnn bench or check result "
                              f"({type(e).__name__}: {safe_text(first_line(e, 80))})") from None
    accuracy = accuracy_markdown(checks)
    if not benches and not accuracy:
        raise ConfigError("no bench results among the files (pass the JSON written by `edgecnn bench --json`)")
    if benches:
        console = _console()
        for why, group in settings_groups(benches):  # like with like: one table per scenario's settings
            if why:
                _say(console, why, "yellow")
            console.print(bench_table(group, con=console))
    if accuracy:
        print(accuracy)
    if args.markdown:
        with atomic_path(args.markdown) as tmp:
            tmp.write_text((markdown(benches) if benches else "") + accuracy)
    if args.plot and benches:
        plot(benches, args.plot, fidelity or None)
    return 0


@command
def cmd_sweep(args: argparse.Namespace) -> int:
    from .matrix.command import run

    return run(args)


def _json_option(p: argparse.ArgumentParser, *, bare: bool = False) -> None:
    """Every command's ``--json FILE``; ``-`` is standard output (only the JSON there: tables and messages go to
    standard error). ``bare``: ``--json`` alone means ``-`` too (list and info, whose output is only the JSON)."""
    p.add_argument("--json", type=lambda t: t if t == "-" else path_arg(t), metavar="FILE",
                   **({"nargs": "?", "const": "-"} if bare else {}),
                   help="write the results as JSON to FILE ('-': to standard output, the rest to standard error)"
                        + ("; --json alone: JSON only, to standard output" if bare else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgecnn", description="Export classic CNNs to ONNX / OpenVINO / TensorRT, quantize them, prove parity.")
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.subcommands = sub.choices

    p = sub.add_parser("list", help="all models with family, params, MACs, input size")
    p.add_argument("--family", help="only this family (a prefix names several: mobilenet = mobilenet_v1/v2/v3)")
    _json_option(p, bare=True)

    p = sub.add_parser("info", help="params, multiply-adds and activation memory of one model")
    p.add_argument("model", type=model_name, nargs="?")  # optional only so that `info --json MODEL` parses
    p.add_argument("--resolution", type=bounded("resolution"), help="input size (default: the model's)")
    p.add_argument("--num-classes", type=bounded("num_classes"))
    p.add_argument("--layers", action="store_true", help="per-layer table")
    p.add_argument("--memory", action="store_true",
                   help="training memory per image and the deployed inference peak (exports the model to ONNX)")
    p.add_argument("--measure", action="store_true",
                   help="with --memory: measure the deployed peak in a fresh process with edgecnn's ONNX Runtime "
                        "settings, beside the estimate")
    p.add_argument("--model-arg", action="append", type=model_arg, metavar="KEY=VALUE",
                   help="builder option, repeatable (e.g. --model-arg width_mult=0.75 --model-arg aux_logits=true)")
    _json_option(p, bare=True)

    p = sub.add_parser("export", help="torch -> ONNX -> simplify -> fp16/int8 -> OpenVINO/TensorRT, with parity")
    p.add_argument("model", type=model_name, help="a zoo name (edgecnn list), file.py:factory or package.module:factory (a function "
                                 "returning an nn.Module), a torch.export program (.pt2) or an ONNX file (.onnx)")
    p.add_argument("--model-arg", action="append", type=model_arg, metavar="KEY=VALUE",
                   help="keyword argument for the factory (zoo: a builder option); repeatable")
    p.add_argument("--weights", help="zoo models: 'imagenet', 'random' or a checkpoint (default: the published "
                                     "ImageNet weights where installed, cached or downloadable, else random)")
    p.add_argument("--num-classes", type=bounded("num_classes"),
                   help="zoo models: a new head of N classes (default: read from the checkpoint's head)")
    p.add_argument("--resolution", type=bounded("resolution"))
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="input shape where the model does not say it (factories; ONNX with free dimensions)")
    p.add_argument("--mean", type=_floats, metavar="M1,M2,M3", help="normalisation mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=_floats, metavar="S1,S2,S3", help="normalisation std, e.g. 0.229,0.224,0.225")
    p.add_argument("--resize", type=bounded("resolution"), metavar="N", help="resize the shorter side to N before the crop")
    p.add_argument("--crop", type=bounded("resolution"), metavar="N", help="centre crop N (the model's input size)")
    p.add_argument("--labels", metavar="FILE",
                   help="class names, one per line, in output order (default: the ImageFolder's class folders, "
                        "or the weights' label set)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=bounded("batch"), default=1, help="fixed batch size (default 1)")
    g.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension")
    p.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    p.add_argument("--fp16", action="store_true", help="also build fp16 artifacts")
    p.add_argument("--int8", action="store_true", help="also build int8 artifacts (static PTQ on real images)")
    p.add_argument("--calib-dir", help="calibration images: a flat folder or an ImageFolder (default: bundled photos)")
    p.add_argument("--calib-size", type=bounded("images"), default=128, help="calibration inputs (default 128)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, help="int8 calibration (default: minmax)")
    p.add_argument("--int8-preset", choices=list(PRESETS),
                   help="int8 layout for ONNX Runtime (default: chosen from this CPU's ISA)")
    p.add_argument("--max-drop", type=float, metavar="FRACTION",
                   help="int8 accuracy budget (1 - logit cosine, e.g. 0.01): keep the fewest layers in float to meet it")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel int8 weights")
    p.add_argument("--no-bias-correction", action="store_true",
                   help="keep the int8 biases as quantized (default: correct the mean shift int8 weights cause)")
    p.add_argument("--equalize", action="store_true",
                   help="cross-layer equalisation of Conv-Relu-Conv pairs before int8 (helps per-tensor weights)")
    _int8_thresholds(p)
    p.add_argument("--images", help="held-out images for the parity table (default: bundled photos); an ImageFolder "
                                    "(class sub-folders) also gives accuracy against its labels")
    p.add_argument("--targets", type=_names("target", lambda: backends.TARGETS),
                   help=f"comma list of {','.join(backends.TARGETS)} (default: the installed ones)")
    p.add_argument("--threads", type=positive_int, help="threads for the parity/latency runs")
    p.add_argument("--out", type=path_arg, help="output folder (default edgecnn_out/MODEL: a zoo name, a file's "
                                                "name with its suffix, or file.py-function for a factory)")
    p.add_argument("--force", action="store_true", help="rebuild even if identical artifacts exist; replace the "
                                                        "export of another model in --out")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("check", help="parity of every artifact against the original (and accuracy, with labels)")
    p.add_argument("out_dir")
    p.add_argument("--images", help="image folder (default: the bundled held-out photos); an ImageFolder (class "
                                    "sub-folders) adds accuracy against its labels, using every image once")
    p.add_argument("--num-images", type=bounded("images"), default=32, help="held-out inputs from a flat folder")
    p.add_argument("--runtimes", type=_names("runtime", _runtime_names),
                   help="comma list (default: every runtime that reads each artifact)")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--device", type=_device, help=DEVICE_HELP)
    p.add_argument("--layers", action="store_true", help="localise int8 error: worst layers by SQNR")
    p.add_argument("--emulate", metavar="CPU", help="run the ONNX artifacts on ONNX Runtime's and the IRs on "
                   "OpenVINO's ARM kernels under qemu-aarch64 -cpu CPU (cortex-a72: Raspberry Pi 4; cortex-a76: "
                   "Jetson-class; max,sve=off: Apple-like): what that CPU computes, and whether each IR compiles "
                   "there, nothing about its speed")
    _int8_thresholds(p)
    p.add_argument("--fp32-atol", type=float, help="override fp32 max abs error / max |logit| (default 1e-3)")
    _json_option(p)
    p.add_argument("--csv", type=path_arg, metavar="FILE", help="one row per artifact x runtime: parity and accuracy")
    _wait_and_trust(p)

    p = sub.add_parser("predict", help="top-K labels of image files on a deployed artifact")
    p.add_argument("out_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--runtime", type=lambda t: _names("runtime", _runtime_names)(t)[0],
                   help="runtime to run it on (default: onnxruntime)")
    p.add_argument("--artifact", metavar="STAGE",
                   help="artifact to run, e.g. int8, simplify, openvino-fp32 (default: the passing int8, else fp32)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K")
    p.add_argument("--threads", type=positive_int)
    _json_option(p)
    p.add_argument("--trust-source", action="store_true",
                   help="load a TensorRT engine this machine did not build (an engine is native code)")

    p = sub.add_parser("bench", help="latency of every artifact and of PyTorch eager, in one run")
    p.add_argument("out_dir")
    p.add_argument("--runtimes", type=_names("runtime", _runtime_names))
    p.add_argument("--batch", type=lambda t: tuple(bounded("batch")(v) for v in _csv(t)) or None,
                   help="comma list of batch sizes (default: the export's); a fixed-batch export runs only at its "
                        "own batch: the others are named and skipped, exit 2 when none can run")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--scenario", choices=SCENARIOS,
                   help="single-stream (default): one query of one image at a time, VALID/INVALID with the "
                        "early-stopping p90; multi-stream: queries of --samples-per-query images (default 8), p99; "
                        "offline: every core busy for --duration seconds (default 5), images/s")
    p.add_argument("--mode", choices=MODES, help="deprecated: latency = --scenario single-stream, "
                                                  "throughput = --scenario offline")
    p.add_argument("--images", type=path_arg, metavar="DIR",
                   help="the sample library's images (default: the bundled photos)")
    p.add_argument("--samples-per-query", type=bounded("batch"), metavar="N", help="multi-stream: images per query")
    p.add_argument("--sustained", type=float, metavar="MINUTES",
                   help="run the latency scenario for MINUTES in ten windows (steady state); --plot draws "
                        "latency over time")
    p.add_argument("--baselines", type=_names("baseline", lambda: BASELINES), default=("eager",),
                   help=f"PyTorch baselines to measure besides eager: comma list of {','.join(BASELINES)} "
                        "(compile = torch.compile with inductor; its compile time is reported separately)")
    p.add_argument("--device", type=_device, help=DEVICE_HELP)
    p.add_argument("--warmup", type=lambda t: positive_int(t) if t.strip() != "0" else 0, default=10)
    p.add_argument("--iterations", type=positive_int, metavar="N",
                   help="minimum queries per row (default 100; multi-stream 662)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="minimum seconds per row (default 2; only --iterations given: none); offline: the run's")
    p.add_argument("--label", help="name of this machine in merged reports")
    _json_option(p)
    p.add_argument("--csv", type=path_arg, metavar="FILE")
    p.add_argument("--plot", type=path_arg, metavar="FILE.png")
    p.add_argument("--quiet", action="store_true")
    _wait_and_trust(p)

    p = sub.add_parser("report", help="merge bench (and check) results from several machines")
    p.add_argument("results", nargs="+", metavar="RESULTS.json")
    p.add_argument("--markdown", type=path_arg, metavar="FILE")
    p.add_argument("--plot", type=path_arg, metavar="FILE.png")

    from .matrix.command import add_parser as add_sweep

    add_sweep(sub, path_arg=path_arg, positive_int=positive_int)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, ``kill``, a container stopping): unwinds exactly like Ctrl-C."""


def _terminate_like_ctrl_c() -> None:
    def raise_terminated(_signum, _frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if args.command == "info" and args.model is None:
        # `info --json MODEL`: the bare --json took the model name as its file; there is no other reading of it
        if args.json in (None, "-"):
            parser.subcommands["info"].error("the following arguments are required: model")  # exits 2
        args.model, args.json = args.json, "-"
    prog = f"edgecnn {args.command}"
    _terminate_like_ctrl_c()
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_a, **_k: print(
            f"{prog}: warning: {clip(' '.join(str(message).split()), MESSAGE_CHARS)}", file=sys.stderr)
        try:
            return COMMANDS[args.command](args)
        except EdgecnnError as e:
            print(f"{prog}: error: {clip(' '.join(str(e).splitlines()), MESSAGE_CHARS)}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            what, code = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
            print(f"{prog}: {what}; nothing half-written was kept", file=sys.stderr)
            return code
        except MemoryError:
            print(f"{prog}: error: out of memory", file=sys.stderr)
            return 2
        except RuntimeError as e:  # torch's allocator says it this way ("DefaultCPUAllocator: can't allocate ...")
            if "can't allocate" not in str(e):
                raise
            print(f"{prog}: error: out of memory ({safe_text(first_line(e, 160))})", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `edgecnn list --json | head`: the reader left mid-print; say nothing more
            from .layout import stdout_to_devnull

            stdout_to_devnull()
            return 141
        except OSError as e:  # a full disk or read-only folder met outside the artifact writers
            error = write_failure(e, e.filename or "output")
            if error is None:
                raise
            print(f"{prog}: error: {error}", file=sys.stderr)
            return error.exit_code
        finally:
            if argv is None:  # run as the program: a Ctrl-C from here on would only hit the interpreter's teardown
                signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    raise SystemExit(main())
