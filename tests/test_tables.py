"""Every table keeps its meaning at any width (issue 21): at 80, 100 and 200 columns, piped, with $COLUMNS, each
row still shows its default marker and its verdict, a failing row takes at most two lines, no number is cut
into '1.00…'. And the small output items: no 'nan' for a figure that does not exist, bench names the --batch
values it cannot honour, `edgecnn list` reads a precomputed catalogue (no model built), one --json convention.

The tables are rendered from result objects built directly (no export); one end-to-end test runs the real CLI,
piped at COLUMNS=80, on a tiny ONNX export.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecnn import catalogue, cli, layout
from edgecnn.artifact import INPUT_NAME, OUTPUT_NAME, Artifact
from edgecnn.harness.bench import ORIGINAL_ONNX, BenchReport, honoured_batches
from edgecnn.harness.check import CheckReport
from edgecnn.harness.predict import Prediction, PredictReport
from edgecnn.manifest import Manifest
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.report import bench_table, check_table, export_table, layers_table, predict_table
from edgecnn.results import ArtifactResult
from edgecnn.timing import Latency

WIDTHS = (80, 100, 200)
LONG_ERROR = ("could not compile model.int8.qdq.xml: No reorder available for the following tensor descriptors: "
              "abcde and aBDec16c64b4c (OpenVINO's AMX kernels have no grouped int8 convolution of this shape)")
FAILURES = ("cosine 0.91234 < 0.98", "top-1 agreement on confident inputs 83.3% < 97%",
            "relative L2 0.123 > 0.02 on 12 of 12 inputs")
# how each ArtifactResult.verdict reads in a table (results.py decides the verdict; the table only names it)
LABELS = {"pass": "pass", "advisory": "advisory", "not judged": "not judged", "FAIL": "FAIL", "failed": "failed"}


def parity(cosine: float, precision: str = "int8", failures: tuple[str, ...] = ()) -> ParityResult:
    return ParityResult("x", precision, 12, 0.123456, 0.0123, 0.0123, cosine, 33.1, 0.9167, 0.8333, 12, 0.9667,
                        Tolerance.for_precision(precision), failures)


def acc(top1: float) -> dict:
    return {"n": 12, "top1": top1, "top5": 1.0, "delta_top1": top1 - 0.8333, "delta_top5": 0.0}


def results() -> list[ArtifactResult]:
    """One of each kind: passing fp32, a failing int8 with three reasons, a failing alternative, an advisory
    default, a route that failed to build with a long error, and the default of the OpenVINO routes."""
    lat = Latency(20, 1, 1.234, 1.5, 1.9, 1.3, 0.1)
    return [
        ArtifactResult("simplify", "fp32", runtime="onnxruntime", parity=parity(1.0, "fp32"), accuracy=acc(0.8333),
                       latency=lat),
        ArtifactResult("int8", "int8", runtime="onnxruntime", parity=parity(0.91234, failures=FAILURES),
                       accuracy=acc(0.75), latency=lat, slower_than_fp32=1.23),
        ArtifactResult("openvino-int8-qdq", "int8", runtime="openvino", parity=parity(0.97, failures=FAILURES[:1]),
                       alternative=True, accuracy=acc(0.75), latency=lat),
        ArtifactResult("openvino-int8-nncf", "int8", runtime="openvino", parity=parity(0.95, failures=FAILURES[:1]),
                       advisory="random weights: int8 fidelity is judged only with trained weights", latency=lat),
        ArtifactResult("openvino-int8-pot", "int8", runtime="openvino", error=LONG_ERROR, alternative=True),
        ArtifactResult("openvino-fp32", "fp32", runtime="openvino", parity=parity(1.0, "fp32"), accuracy=acc(0.8333),
                       latency=lat),
    ]


DEFAULT = "openvino-int8-nncf"


def manifest() -> Manifest:
    rs = {r.artifact: r for r in results()}
    arts = [Artifact(k, "openvino" if k.startswith("openvino") else "onnx", r.precision, Path(f"/x/{k}"),
                     bytes=3_500_000, runtime=r.runtime) for k, r in rs.items() if r.error is None]
    return Manifest("mobilenet_v2", {}, [1, 3, 224, 224], None, {}, {}, {}, {}, artifacts=arts, results=rs,
                    selected={"openvino:int8": {"default": DEFAULT,
                                                "candidates": ["openvino-int8-qdq", DEFAULT, "openvino-int8-pot"]}},
                    evaluation={"original": "torch", "accuracy": {"n": 12, "top1": 0.8333, "top5": 1.0}})


def check_report() -> CheckReport:
    return CheckReport("mobilenet_v2", "/x", 12, "/data/val (an ImageFolder of 4 classes)", results(),
                       original={"n": 12, "top1": 0.8333, "top5": 1.0}, defaults=[DEFAULT])


def bench_report(onnx_source: bool = False) -> BenchReport:
    lat = Latency(100, 1, 12.3456, 13.5, 19.25, 12.9, 0.4)
    base = ArtifactResult(ORIGINAL_ONNX if onnx_source else "torch-eager", "fp32",
                          runtime="onnxruntime" if onnx_source else "torch", latency=lat, batch=1, speedup=1.0,
                          speedup_vs_best_torch=None if onnx_source else 1.0)
    rows = [base] + [ArtifactResult(r.artifact, r.precision, runtime=r.runtime, batch=1, error=r.error,
                                    latency=None if r.error else Latency(100, 1, 3.21, 3.5, 4.1, 3.3, 0.1),
                                    speedup=None if r.error else 3.85,
                                    speedup_vs_best_torch=None if r.error or onnx_source else 3.85)
                     for r in results()]
    return BenchReport("mobilenet_v2", [1, 3, 224, 224], None, 10, 100, None,
                       {"cpu": {"model": "AMD EPYC 7B13 64-Core Processor", "cores": 2}}, {}, results=rows,
                       defaults=[DEFAULT])


def render(table_or_tables, con) -> str:
    for t in table_or_tables if isinstance(table_or_tables, list) else [table_or_tables]:
        con.print(t)
    return con.file.getvalue()


def piped_console(width: int | None = None):
    """What a command gets in a pipe (a StringIO is not a terminal): layout.console(), $COLUMNS or 100 wide."""
    return layout.console(file=io.StringIO(), width=width)


def row_lines(text: str, key: str) -> list[str]:
    """The lines of the row whose first cell is ``key`` (a default's: 'key *'): its line and the continuation
    lines under it (first cell blank)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}( \*)?\s", line))
    out = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" ") or not line.strip():
            break
        out.append(line)
    return out


def verdict_label(r: ArtifactResult) -> str:
    return LABELS.get(r.verdict, r.verdict)


def bench_label(r: ArtifactResult) -> str:  # bench judges no parity: a row ran, or failed and says why
    return "ok" if r.error is None else "failed"


def assert_rows(text: str, rows: list[ArtifactResult], defaults: set[str], width: int, label_of=verdict_label) -> None:
    assert "…" not in text, text  # nothing cut with an ellipsis: no '1.00…'
    assert all(len(line) <= width for line in text.splitlines()), text
    for r in rows:
        lines = row_lines(text, r.artifact)
        assert len(lines) <= 2, (r.artifact, lines)  # every row explains itself in at most two lines
        assert lines[0].startswith(r.artifact + (" *" if r.artifact in defaults else " ")), lines
        assert (r.artifact in defaults) == lines[0].startswith(r.artifact + " *")
        body = " ".join(" ".join(lines).split())
        label = label_of(r)
        assert label in body, (r.artifact, label, lines)
        reason = r.error or ("; ".join(r.parity.failures) if r.parity is not None and label != "pass" else "")
        if reason:  # the reason's first words are on the row; all of it there or in a note keyed by the row
            assert " ".join(reason.split()[:2]) in body, (r.artifact, lines)
            flat = " ".join(text.split())
            mark = re.search(r"(\[\d+\])$", body.split(label, 1)[1].strip())
            assert reason in body or (mark and f"{mark.group(1)} {r.artifact}: {reason}" in flat), (r.artifact, text)


@pytest.mark.parametrize("width", WIDTHS)
def test_export_table_keeps_marker_and_verdict(width):
    text = render(export_table(manifest(), con=piped_console(width)), piped_console(width))
    assert_rows(text, results(), {DEFAULT}, width)
    assert "* the default of several routes" in text
    if width == 200:  # room for every column: nothing dropped, every figure whole
        assert "not shown" not in text and "0.91234" in text and "75.0% (-8.3)" in text and "1.23" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_check_table_keeps_marker_and_verdict(width):
    text = render(check_table(check_report(), con=piped_console(width)), piped_console(width))
    assert_rows(text, results(), {DEFAULT}, width)
    if width < 200:  # something had to go: said, never squeezed
        assert f"({width} columns:" in text and "not shown" in text


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("onnx_source", [False, True])
def test_bench_table_keeps_marker_and_result(width, onnx_source):
    report = bench_report(onnx_source)
    text = render(bench_table([report], con=piped_console(width)), piped_console(width))
    measured = [r for r in report.results if r.artifact in {x.artifact for x in results()}]
    assert_rows(text, measured, {DEFAULT}, width, bench_label)
    assert "nan" not in text.lower()
    if onnx_source:
        assert "no PyTorch baseline for an ONNX source" in text


def test_predict_and_layers_tables_fit():
    pred = PredictReport("/x", "int8", "onnxruntime", "int8", "manifest.json", [
        Prediction("a_very_long_image_file_name_from_a_camera_roll_0001.jpg",
                   [{"label": "space shuttle, a rocket-propelled reusable orbiter", "probability": 0.5123},
                    {"label": "missile", "probability": 0.2}])])
    layers = {"int8": {"against": "fp32", "layers": 53, "worst": [
        {"tensor": "/features/features.16/conv/conv.2/Conv_output_0_QuantizeLinear_Output", "sqnr_db": 12.345,
         "quant_sqnr_db": 23.456}]}}
    for width in WIDTHS:
        con = piped_console(width)
        text = render([predict_table(pred, con=con), *layers_table(layers, con=con)], con)
        assert "…" not in text and "51.2%" in text and "12.3" in text
        assert all(len(line) <= width for line in text.splitlines())


def test_one_width_for_every_command(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    monkeypatch.delenv("COLUMNS", raising=False)
    assert layout.width() == layout.DEFAULT_WIDTH == 100  # a pipe, a CI log
    monkeypatch.setenv("COLUMNS", "80")
    assert layout.width() == 80 and piped_console().width == 80  # $COLUMNS is honoured, piped too
    text = render(check_table(check_report(), con=piped_console()), piped_console())
    assert_rows(text, results(), {DEFAULT}, 80)
    monkeypatch.setenv("COLUMNS", "12")
    assert layout.width() == layout.MIN_WIDTH
    monkeypatch.setenv("COLUMNS", "wide")
    assert layout.width() == 100


def test_a_terminal_gives_its_own_width(monkeypatch):
    import fcntl
    import struct
    import termios

    monkeypatch.delenv("COLUMNS", raising=False)
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 91, 0, 0))
            assert layout.width(tty) == 91
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))  # size unknown
            assert layout.width(tty) == 100
            monkeypatch.setenv("COLUMNS", "120")  # $COLUMNS wins
            assert layout.width(tty) == 120
    finally:
        os.close(master)
        os.close(slave)


def test_a_reason_is_cut_between_words_and_given_whole_in_a_note():
    con = piped_console(80)
    text = render(check_table(check_report(), con=con), con)
    int8 = " ".join(row_lines(text, "int8")[0:2])
    assert int8.rstrip().endswith("[1]")  # cut short: the note under the table has it all
    assert "[1] int8: " + "; ".join(FAILURES) in " ".join(text.split())
    assert not re.search(r"\d\.\s*\[", int8)  # never a number cut before its last digits


# ---- no nan for a figure that does not exist ----------------------------------------------------------------

def test_a_figure_that_does_not_exist_is_a_dash():
    from edgecnn.parity import compare

    wrong_shape = compare(np.ones((4, 10)), np.ones((4, 5)), precision="int8")  # NaN figures, a failure
    r = ArtifactResult("int8", "int8", runtime="onnxruntime", parity=wrong_shape)
    report = CheckReport("m", "/x", 4, "photos", [r])
    m = Manifest("m", {}, [1, 3, 8, 8], None, {}, {}, {}, {}, artifacts=[
        Artifact("int8", "onnx", "int8", Path("/x/int8"), bytes=1000, runtime="onnxruntime")], results={"int8": r})
    for width in WIDTHS:
        con = piped_console(width)
        text = render([check_table(report, con=con), export_table(m, con=con)], con)
        assert "nan" not in text.lower() and "output shape" in text, text


def test_bench_json_says_why_a_speedup_is_missing():
    d = bench_report(onnx_source=True).to_dict()
    row = next(r for r in d["results"] if r["artifact"] == "simplify")
    assert row["speedup_vs_best_torch"] is None and row["why"] == "no PyTorch baseline for an ONNX source"
    assert "why" not in next(r for r in bench_report().to_dict()["results"] if r["artifact"] == "simplify")
    assert "why" not in next(r for r in d["results"] if r["error"])  # its error says why
    assert BenchReport.from_dict(json.loads(json.dumps(d))).results[1].speedup == 3.85  # still readable


# ---- bench --batch on a fixed-batch export ---------------------------------------------------------------------

def test_bench_names_the_batches_a_fixed_export_cannot_run():
    fixed = SimpleNamespace(input_shape=[1, 3, 8, 8], dynamic_batch=None)
    dynamic = SimpleNamespace(input_shape=[1, 3, 8, 8], dynamic_batch=32)
    assert honoured_batches(fixed, None) == ((1,), [])
    assert honoured_batches(dynamic, (1, 4)) == ((1, 4), [])
    batches, skipped = honoured_batches(fixed, (1, 4, 8))
    assert batches == (1,) and len(skipped) == 1 and "--batch 4, 8" in skipped[0] and "fixed at 1" in skipped[0]
    from edgecnn.errors import ConfigError

    with pytest.raises(ConfigError, match="fixed at 1.*--dynamic-batch"):
        honoured_batches(fixed, (4,))


# ---- edgecnn list: the precomputed catalogue ---------------------------------------------------------------------

def test_every_registered_model_is_in_the_catalogue():
    from edgecnn.models import get_spec, list_models

    rows = {r["name"]: r for r in catalogue.load()}
    assert list(rows) == list_models()
    for name, r in rows.items():
        spec = get_spec(name)
        assert (r["family"], r["resolution"], r["in_chans"], r["weights"], r["top1"]) == \
            (spec.family, spec.resolution, spec.in_chans, [w.name for w in spec.weights], spec.published.top1), name


@pytest.mark.parametrize("name", ["lenet5", "squeezenet1_1", "mobilenet_v2", "resnet18"])
def test_catalogue_counts_match_the_models(name):
    assert next(r for r in catalogue.load() if r["name"] == name) == catalogue.entry(name)


@pytest.mark.slow
def test_the_whole_catalogue_matches_the_models():
    assert catalogue.main([]) == 0  # rebuilt from every model: the file is up to date


def test_list_builds_no_model(monkeypatch, capsys):
    from edgecnn import accounting
    from edgecnn.models import _factory

    def refuse(*_a, **_k):
        raise AssertionError("edgecnn list built a model")

    monkeypatch.setattr(accounting, "model_stats", refuse)
    monkeypatch.setattr(_factory, "build_model", refuse)
    assert cli.main(["list", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(catalogue.load()) and {"params", "macs"} <= set(rows[0])
    # and in a fresh interpreter: torch is never even imported
    code = "import sys; from edgecnn.cli import main; main(['list']); assert 'torch' not in sys.modules, 'torch'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                       "COLUMNS": "80"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "mobilenet_v2" in r.stdout and "…" not in r.stdout


def test_list_family_unknown_is_an_error_and_a_prefix_names_several(capsys):
    assert cli.main(["list", "--family", "mobilenetv2"]) == 2
    err = capsys.readouterr().err
    assert "unknown family 'mobilenetv2'" in err and "mobilenet_v2" in err and "resnet" in err
    assert cli.main(["list", "--family", ""]) == 2 and "unknown family ''" in capsys.readouterr().err
    assert cli.main(["list", "--family", "mobilenet", "--json"]) == 0
    assert {r["family"] for r in json.loads(capsys.readouterr().out)} == {"mobilenet_v1", "mobilenet_v2",
                                                                           "mobilenet_v3"}
    assert cli.main(["list", "--family", "efficientnet", "--json"]) == 0  # a family's own name: that family only
    assert {r["family"] for r in json.loads(capsys.readouterr().out)} == {"efficientnet"}


# ---- one --json convention -------------------------------------------------------------------------------------

def test_json_file_or_stdout_for_every_command(tmp_path, capsys):
    parser = cli.build_parser()
    for command in (["check", "d"], ["bench", "d"], ["predict", "d", "i.jpg"], ["list"], ["info", "lenet5"]):
        assert parser.parse_args([*command, "--json", "-"]).json == "-"
        assert parser.parse_args([*command, "--json", "r.json"]).json == "r.json"
    assert parser.parse_args(["info", "lenet5", "--json"]).json == "-"  # --json alone, as before: stdout
    assert cli.main(["list", "--family", "lenet", "--json", str(tmp_path / "l.json")]) == 0
    assert json.loads((tmp_path / "l.json").read_text())[0]["name"] == "lenet5"
    assert "lenet5" in capsys.readouterr().out  # a file: the table is printed too
    assert cli.main(["info", "lenet5", "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["params"] == 61706


# ---- the real CLI, piped, COLUMNS=80, on a tiny ONNX export ---------------------------------------------------

def tiny_onnx(path: Path) -> Path:
    """3x32x32 -> Conv -> GAP -> 10 logits near zero: no input is confident (top-1 agreement has no figure)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, s).astype(np.float32), n)
             for n, s in (("w", (4, 3, 3, 3)), ("b", (4,)), ("fw", (10, 4)), ("fb", (10,)))]
    nodes = [helper.make_node("Conv", [INPUT_NAME, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], [OUTPUT_NAME],
                                                                        transB=1)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def edgecnn_80(*args: str) -> subprocess.CompletedProcess:
    """The CLI as in a CI log: stdout a pipe, COLUMNS=80."""
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"})


def test_cli_piped_at_80_columns(tmp_path):
    from edgecnn import runtimes

    targets = "onnxruntime,openvino" if runtimes.availability()["openvino"] is None else "onnxruntime"
    out = tmp_path / "out"
    r = edgecnn_80("export", str(tiny_onnx(tmp_path / "tiny.onnx")), "--int8", "--calib-size", "8", "--out", str(out),
                   "--targets", targets)
    assert r.returncode == 0, r.stdout + r.stderr
    m = Manifest.load(out)
    text = r.stdout
    assert "nan" not in text.lower(), text  # no confident input: '-', never 'nan%'
    table = text[text.rfind("\n", 0, text.index("artifacts vs")) + 1:]  # the table, not the log lines above it
    assert_rows(table, list(m.results.values()), m.defaults(), 80)
    if "openvino" in targets:
        assert "top-1 on confident inputs - (no confident input)" in " ".join(r.stdout.split())

    r = edgecnn_80("check", str(out), "--num-images", "4", "--json", "-")
    assert r.returncode == 0, r.stderr
    check = json.loads(r.stdout)  # --json -: only the JSON on stdout, the table on stderr
    assert_rows(r.stderr, [ArtifactResult.from_dict(d) for d in check["results"] if "@" not in d["artifact"]],
                set(check["defaults"]), 80)

    r = edgecnn_80("bench", str(out), "--iterations", "3", "--warmup", "1", "--batch", "1,4", "--runtimes",
                   "onnxruntime", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    assert "nan" not in r.stdout.lower() and "no PyTorch baseline for an ONNX source" in r.stdout
    assert "skipped --batch 4: the export's batch is fixed at 1" in " ".join(r.stdout.split())
    bench = json.loads((tmp_path / "b.json").read_text())
    assert {row["batch"] for row in bench["results"]} == {1}
    assert all(row["speedup_vs_best_torch"] is None and row["why"] for row in bench["results"])

    r = edgecnn_80("bench", str(out), "--batch", "4,8")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "fixed at 1" in r.stderr and "Traceback" not in r.stderr


def test_info_tables_keep_whole_numbers_at_80_columns(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["info", "squeezenet1_1", "--layers"]) == 0
    text = capsys.readouterr().out
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    params = next(r for r in catalogue.load() if r["name"] == "squeezenet1_1")["params"]
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert f"{params:,}" in total  # the per-layer total, whole
    assert "measured" in text and "torchvision card" in text
    monkeypatch.setenv("COLUMNS", "200")  # room for every column: the dtype the README promises is there
    assert cli.main(["info", "lenet5", "--layers"]) == 0
    head = capsys.readouterr().out.splitlines()
    header = next(line for line in head if line.startswith("layer"))
    assert header.split() == ["layer", "type", "output", "dtype", "activations", "bytes", "params", "MACs"]
    assert next(line for line in head if line.startswith("input")).split()[3] == "float32"
