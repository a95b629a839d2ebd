"""Every own-model mistake is one line that names its cause (exit 2, no traceback); output folders keep
the source's identity and a second source never silently replaces the first's export; the README's
claims about this path (check and --trust-source, info --layers, the metadata one-liner) hold.

Tiny models (an 8-filter convolution at 16 px) so the whole file runs in well under a minute."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecnn.manifest import Manifest
from edgecnn.models.mistakes import state_dict_problems
from edgecnn.models.sources import source_name
from test_security import Run, edgecnn_cli  # noqa: F401 - Run: the type of what edgecnn_cli returns

README = Path(__file__).resolve().parents[1] / "README.md"
ONNX_ONLY = ("--targets", "onnxruntime", "--quiet")

HEADS = '''
import sys
import torch
import torch.nn as nn


class Small(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def build(num_classes=4, checkpoint=None):
    torch.manual_seed(0)  # the same model each call: check --trust-source calls it again
    model = Small(num_classes)
    if checkpoint:
        model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model


def strict():
    return nn.Sequential(nn.Conv2d(3, 4, 5), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def deep():
    return _lookup({})


def _lookup(table):
    return table["classifier"]  # the line the error names


def exits():
    sys.exit(3)


def returns_none():
    return None


class Pair(Small):
    def forward(self, x):
        y = super().forward(x)
        return y, y


def pair():
    return Pair()
'''

SIDE_EFFECT = '''
from pathlib import Path
Path(__file__).with_suffix(".ran").write_text("this file was executed")


def build():
    raise RuntimeError("never called")


def make_model():
    raise RuntimeError("never called")
'''




def one_line(r: Run, *needles: str) -> str:
    assert r.code == 2 and "Traceback" not in r.err and len(r.lines) == 1, (r.code, r.err, r.out[-800:])
    for needle in needles:
        assert needle in r.lines[0], (needle, r.lines[0])
    return r.lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_errors")
    (root / "heads.py").write_text(HEADS)
    (root / "sidefx.py").write_text(SIDE_EFFECT)
    (root / "broken.py").write_text("def build(:\n    pass\n")
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).eval()
    x = torch.zeros(1, 3, 16, 16)
    torch.export.save(torch.export.export(small, (x,)), root / "small.pt2")
    torch.onnx.export(small, (x,), str(root / "small.onnx"), dynamo=False)
    torch.save(small.state_dict(), root / "state.pt2")  # a checkpoint named like a program
    (root / "garbage.pt2").write_bytes(b"not a zip")
    # a checkpoint of heads.build with 10 classes, and one with renamed keys
    torch.manual_seed(0)
    ten = nn.ModuleDict({"features": nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), "classifier": nn.Linear(8, 10)})
    torch.save(ten.state_dict(), root / "ten.pth")
    torch.save({"head.weight": torch.zeros(4, 8), **{k: v for k, v in ten.state_dict().items()
                                                     if k.startswith("features")}}, root / "renamed.pth")
    return root


# --- 1. one line for each mistake --------------------------------------------------------------------
def test_state_dict_mismatch_names_the_shapes_and_the_line(ws):
    line = one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:build", "--model-arg", f"checkpoint={ws / 'ten.pth'}",
                                "--input-shape", "1,3,16,16", *ONNX_ONLY, "--out", ws / "o-ten"),
                    "factory heads.py:build: load_state_dict: the checkpoint does not fit Small",
                    "size mismatch for classifier.weight: checkpoint [10, 8] vs model [4, 8]",
                    "size mismatch for classifier.bias: checkpoint [10] vs model [4]")
    assert line.endswith(f"(at heads.py:{HEADS.splitlines().index('        model.load_state_dict(torch.load(checkpoint, weights_only=True))') + 1})"), line
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:build", "--model-arg", f"checkpoint={ws / 'renamed.pth'}",
                         "--input-shape", "1,3,16,16", *ONNX_ONLY, "--out", ws / "o-renamed"),
             "missing 2 keys (classifier.weight, classifier.bias)", "unexpected 1 key (head.weight)")


def test_state_dict_problems_count_what_they_do_not_show():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(6)])
    with pytest.raises(RuntimeError) as e:
        model.load_state_dict({f"{i}.weight": torch.zeros(3, 2) for i in range(6)})
    said = state_dict_problems(str(e.value))
    assert said is not None and "\n" not in said
    assert "missing 6 keys (0.bias, 1.bias, 2.bias, 3.bias, +2 more)" in said, said
    assert "size mismatch for 0.weight: checkpoint [3, 2] vs model [2, 2]" in said and "(and 2 more mismatches)" in said
    assert state_dict_problems("some other error") is None


def test_factory_exception_names_type_message_and_the_users_line(ws):
    line_no = HEADS.splitlines().index('    return table["classifier"]  # the line the error names') + 1
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:deep", "--input-shape", "1,3,16,16", *ONNX_ONLY,
                         "--out", ws / "o-deep"),
             "factory heads.py:deep raised KeyError: 'classifier'", f"(at heads.py:{line_no})")
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:exits", "--input-shape", "1,3,16,16", *ONNX_ONLY,
                         "--out", ws / "o-exit"), "factory heads.py:exits raised SystemExit: 3")
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:returns_none", "--input-shape", "1,3,16,16", *ONNX_ONLY,
                         "--out", ws / "o-none"), "returned NoneType, not a torch.nn.Module")
    one_line(edgecnn_cli("export", f"{ws / 'broken.py'}:build", "--input-shape", "1,3,16,16", *ONNX_ONLY,
                         "--out", ws / "o-broken"), "importing broken.py raised SyntaxError", "broken.py:1")


def test_wrong_channel_count_is_said_before_the_export(ws):
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:build", "--input-shape", "1,1,16,16", *ONNX_ONLY,
                         "--out", ws / "o-gray"),
             "the model expects 3 input channels, --input-shape 1,1,16,16 gives 1")
    one_line(edgecnn_cli("export", f"{ws / 'heads.py'}:strict", "--input-shape", "1,3,2,2", *ONNX_ONLY,
                         "--out", ws / "o-tiny"),
             "heads.py:strict cannot run on --input-shape 1,3,2,2: RuntimeError:", "Kernel size")
    assert not (ws / "o-gray").exists() and not (ws / "o-tiny").exists()


def test_python_file_without_function_lists_its_functions_without_running_it(ws):
    one_line(edgecnn_cli("export", ws / "heads.py", *ONNX_ONLY, "--out", ws / "o-py"),
             "heads.py is a Python file: name the function that builds the model, e.g.",
             f"{ws / 'heads.py'}:build", "functions in it: build, strict, deep, exits")
    one_line(edgecnn_cli("export", ws / "sidefx.py", *ONNX_ONLY, "--out", ws / "o-fx"),
             "sidefx.py:build", "functions in it: build, make_model")
    assert not (ws / "sidefx.ran").exists()  # read with ast, never executed
    one_line(edgecnn_cli("export", ws / "broken.py", *ONNX_ONLY), "broken.py is a Python file that does not parse",
             "line 1")


@pytest.mark.parametrize("case", ["missing-file", "missing-py", "missing-function", "not-a-program", "not-a-zip",
                                  "missing-checkpoint", "checkpoint-as-model", "num-classes-vs-head",
                                  "two-outputs", "info-own-model", "unknown-model-arg"])
def test_other_own_model_mistakes(ws, case):
    heads = ws / "heads.py"
    args, needles = {
        "missing-file": ((f"{ws / 'nope.py'}:build",), ("factory file not found", "nope.py")),
        "missing-py": ((ws / "nope.py",), ("factory file not found", "file.py:function")),
        "missing-function": ((f"{heads}:buld",), ("heads.py has no function 'buld'; did you mean heads.py:build?",
                                                  "it defines: build")),
        "not-a-program": ((ws / "state.pt2",), ("state.pt2 is not a torch.export program: it is a torch.save file",
                                                "torch.export.save")),
        "not-a-zip": ((ws / "garbage.pt2",), ("garbage.pt2 is not a torch.export program: it is not a zip archive",)),
        "missing-checkpoint": ((f"{heads}:build", "--model-arg", f"checkpoint={ws / 'gone.pth'}", "--input-shape",
                                "1,3,16,16"), ("raised FileNotFoundError", "gone.pth", "(at heads.py:")),
        "checkpoint-as-model": ((ws / "ten.pth",), ("ten.pth is a checkpoint, not a model", "--weights")),
        "two-outputs": ((f"{heads}:pair", "--input-shape", "1,3,16,16"),
                        ("heads.py:pair returns a tuple of 2, not one tensor",)),
        "unknown-model-arg": ((f"{heads}:build", "--model-arg", "classes=3", "--input-shape", "1,3,16,16"),
                              ("factory heads.py:build: --model-arg does not fit it (got an unexpected keyword "
                               "argument 'classes'); it takes (num_classes=4, checkpoint=None)",)),
        "info-own-model": ((f"{heads}:build",), ("info measures the zoo's models", "edgecnn bench")),
        "num-classes-vs-head": (("lenet5", "--weights", ws / "lenet7.pth", "--num-classes", "5"),
                                ("--num-classes 5 does not match the checkpoint's head (7 classes, lenet7.pth)",
                                 "pass --num-classes 7")),
    }[case]
    if case == "num-classes-vs-head":
        import edgecnn
        torch.save(edgecnn.create_model("lenet5", weights="random", num_classes=7).state_dict(), ws / "lenet7.pth")
    if case == "info-own-model":
        one_line(edgecnn_cli("info", *args), *needles)
    else:
        one_line(edgecnn_cli("export", *args, *ONNX_ONLY, "--out", ws / f"o-{case}"), *needles)
    assert not (ws / f"o-{case}" / "manifest.json").exists()


# --- 2. folders that keep the source's identity --------------------------------------------------------
def test_default_folder_names_keep_the_source():
    assert source_name("mobilenet_v2") == "mobilenet_v2"
    assert source_name("x/small.pt2") == "small.pt2" and source_name("small.onnx") == "small.onnx"
    assert source_name("models/heads.py:build") == "heads.py-build"
    assert source_name("timm:create_model") == "timm-create_model"
    assert source_name("pkg.sub:make") == "pkg.sub-make"
    names = [source_name(s) for s in ("a.pt2", "a.onnx", "a.py:a", "a:a", "a")]
    assert len(set(names)) == len(names) and not any(":" in n or "/" in n for n in names)


@pytest.fixture(scope="module")
def exported(ws, tmp_path_factory):
    """small.pt2 and small.onnx exported with the default --out, from the folder they are in."""
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        for source in ("small.pt2", "small.onnx"):
            r = edgecnn_cli("export", source, *ONNX_ONLY)
            assert r.code == 0 and "Traceback" not in r.err, r.err
    finally:
        os.chdir(cwd)
    return ws / "edgecnn_out"


def test_two_sources_of_one_stem_get_two_folders(exported):
    assert sorted(p.name for p in exported.iterdir()) == ["small.onnx", "small.pt2"]
    assert Manifest.load(exported / "small.pt2").source["kind"] == "program"
    assert Manifest.load(exported / "small.onnx").source["kind"] == "onnx"


def test_another_source_never_silently_replaces_an_export(exported, ws, tmp_path):
    folder = tmp_path / "pt2"  # exported here, not copied: a copied folder is not this machine's (the ledger)
    assert edgecnn_cli("export", ws / "small.pt2", *ONNX_ONLY, "--out", folder).code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    line = one_line(edgecnn_cli("export", ws / "small.onnx", *ONNX_ONLY, "--out", folder),
                    f"{folder} holds an export of small.pt2; this is small.onnx: choose another --out, or pass --force")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before, line
    # a zoo name into a factory's folder: the same refusal
    one_line(edgecnn_cli("export", "lenet5", *ONNX_ONLY, "--out", folder), "holds an export of small.pt2; this is lenet5")
    # the same source again is no collision (the build cache reuses it)
    assert edgecnn_cli("export", ws / "small.pt2", *ONNX_ONLY, "--out", folder).code == 0
    # --force replaces it, and says so
    r = edgecnn_cli("export", ws / "small.onnx", "--targets", "onnxruntime", "--out", folder, "--force")
    assert r.code == 0 and "--force: replacing the export of small.pt2" in " ".join(r.out.split()), r.out + r.err
    assert Manifest.load(folder).source["kind"] == "onnx"


# --- 3. the README's claims ----------------------------------------------------------------------------
def test_check_calls_a_factory_only_with_trust_source(ws, tmp_path):
    out = tmp_path / "factory"
    ok = edgecnn_cli("export", f"{ws / 'heads.py'}:build", "--input-shape", "1,3,16,16", *ONNX_ONLY, "--out", out)
    assert ok.code == 0, ok.err
    text = " ".join(README.read_text().split())
    assert "`check` calls it again only with `--trust-source`" in text
    plain = edgecnn_cli("check", out)
    assert plain.code == 0 and "only with --trust-source" in " ".join(plain.out.split()), plain.out
    trusted = edgecnn_cli("check", out, "--trust-source")
    assert trusted.code == 0 and "--trust-source" not in trusted.out, trusted.out


def test_info_layers_as_the_readme_says():
    text = " ".join(README.read_text().split())
    assert "`--layers` is the CS231n table, one row per allocated tensor, input included, with its bytes" in text
    assert "`--json` carries all of it, with per-layer bytes and dtypes" in text
    r = edgecnn_cli("info", "lenet5", "--layers", "--json")
    rows = json.loads(r.out)["layers"]
    assert rows[0]["name"] == "input"
    for row in rows:
        assert row["bytes"] == row["activations"] * torch.empty(0, dtype=getattr(torch, row["dtype"])).element_size()


def test_readme_metadata_one_liner_prints_only_edgecnn_keys(exported, tmp_path):
    line = next(line.strip() for line in README.read_text().splitlines()
                if line.strip().startswith("python -c") and "metadata_props" in line)
    argv = shlex.split(line)
    argv[0] = sys.executable
    path = re.search(r"'([^']+\.onnx)'", argv[2]).group(1)
    argv[2] = argv[2].replace(path, str(exported / "small.onnx" / "model.sim.onnx"))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import ast
    keys = set(ast.literal_eval(r.stdout.strip()))
    assert "edgecnn.preprocessing" in keys and all(k.startswith("edgecnn.") for k in keys), keys
    import onnx
    every = {p.key for p in onnx.load(str(exported / "small.onnx" / "model.sim.onnx")).metadata_props}
    assert every - keys, "the file holds other tools' keys too: the filter is what the test is about"


# --- 4. the fuzz: own-model arguments -----------------------------------------------------------------
REFS = ["heads.py", "heads.py:build", "heads.py:strict", "heads.py:nope", "heads.py:deep", "heads.py:exits",
        "heads.py:returns_none", "heads.py:pair", "heads.py:", "heads.py:build:x", ":build", "nope.py:build", "nope.py", "broken.py",
        "broken.py:build", "sidefx.py", "small.pt2", "small.onnx", "state.pt2", "garbage.pt2", "gone.pt2",
        "ten.pth", "os:getcwd", "no_such_module_xyz:build", "a b.py:c", "heads.py:__init__", "../heads.py:build"]
ARGS = st.sampled_from(["num_classes=-1", "num_classes=0", "num_classes=3", "checkpoint=ten.pth",
                        "checkpoint=/nonexistent.pth", "checkpoint=renamed.pth", "x=1", "num_classes=[1,2]",
                        "num_classes=1e309", "checkpoint=None"])
SHAPES = st.tuples(*(st.sampled_from(v) for v in ((0, 1, 2), (0, 1, 3, 4), (0, 1, 5, 16), (1, 5, 16, 17))))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ref=st.sampled_from(REFS), args=st.lists(ARGS, max_size=2), shape=st.none() | SHAPES,
       extra=st.lists(st.sampled_from(["--num-classes", "3", "--weights", "random", "--batch", "2",
                                       "--dynamic-batch", "--force"]), max_size=2))
def test_fuzz_own_model_arguments(ws, ref, args, shape, extra):
    out = ws / "fuzz-out"
    local = ref.split(":")[0].endswith((".py", ".pt2", ".onnx", ".pth"))
    argv = ["export", str(ws / ref) if local else ref, *ONNX_ONLY, "--out", out, *extra]
    for a in args:
        key, _, value = a.partition("=")
        argv += ["--model-arg", f"{key}={ws / value}" if value.endswith(".pth") and not value.startswith("/") else a]
    if shape is not None:
        argv += ["--input-shape", ",".join(map(str, shape))]
    r = edgecnn_cli(*argv)
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
    assert r.code in (0, 1, 2), (r.code, r.err)
    if r.code == 2:
        assert r.lines and r.lines[-1].startswith("edgecnn"), r.err
        assert all(line.startswith("edgecnn") for line in r.lines), r.err  # nothing but our own lines
    assert not (ws / "sidefx.ran").exists()
    if out.exists():
        shutil.rmtree(out)


def test_package_factory_exception_names_the_packages_line(ws, monkeypatch):
    pkg = ws / "own_pkg_errors"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("from .inner import make\n")
    (pkg / "inner.py").write_text("def make(n=1):\n    return _helper(n)\n\n\ndef _helper(n):\n    return 1 / (n - 1)\n")
    monkeypatch.syspath_prepend(str(ws))
    one_line(edgecnn_cli("export", "own_pkg_errors:make", *ONNX_ONLY, "--out", ws / "o-pkg"),
             "factory own_pkg_errors:make raised ZeroDivisionError: division by zero (at own_pkg_errors/inner.py:6)")


def test_info_json_before_the_model_name():
    """`info --json MODEL`: the bare --json must not take the model's name for its file."""
    first, last = edgecnn_cli("info", "--json", "lenet5"), edgecnn_cli("info", "lenet5", "--json")
    assert first.code == 0 and json.loads(first.out) == json.loads(last.out)
    missing = edgecnn_cli("info", "--json")
    assert missing.code == 2 and "required: model" in missing.err, missing.err
