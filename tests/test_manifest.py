"""manifest.json and its verification, unit by unit: what is recorded comes back, what was modified or lost
on disk is named, and nothing unreadable is ever trusted (fast: tiny files, no export)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgecnn import ledger
from edgecnn.artifact import describe
from edgecnn.errors import ArtifactError
from edgecnn.manifest import (JOURNAL, MANIFEST, SCHEMA, Manifest, build_key, intact, journal_load, journal_save,
                              reusable, try_load)
from edgecnn.models import get_spec, preprocessing
from edgecnn.parity import ParityResult, Tolerance
from edgecnn.results import ArtifactResult


def _art(root: Path, stage: str, content: bytes = b"model", precision: str = "fp32"):
    path = root / f"model.{stage}.onnx"
    path.write_bytes(content)
    return describe(path, stage=stage, precision=precision, parent="export" if stage != "export" else None)


def _parity(passed: bool) -> ParityResult:
    return ParityResult("x", "int8", 8, 0.1, 0.01, 0.01, 0.99 if passed else 0.5, 30.0, 1.0, 1.0, 8, 1.0,
                        Tolerance.for_precision("int8"), () if passed else ("cosine 0.5 < 0.98",))


def _manifest(root: Path, **kw) -> Manifest:
    fields = dict(model="squeezenet1_1", weights={"source": "random", "seed": 0}, input_shape=[1, 3, 64, 64],
                  dynamic_batch=None, preprocessing=preprocessing(get_spec("squeezenet1_1"), 64).to_dict(), config={"model": "squeezenet1_1", "out": root},
                  versions={"onnxruntime": "1"}, host={"cpu": {"isa": []}})
    fields.update(kw)
    return Manifest(**fields)


def test_save_then_load_gives_back_every_field(tmp_path):
    a, b = _art(tmp_path, "export"), _art(tmp_path, "int8", b"q", "int8")
    results = {"export": ArtifactResult("export", "fp32", parity=_parity(True)),
               "int8": ArtifactResult("int8", "int8", parity=_parity(False), alternative=True)}
    m = _manifest(tmp_path, artifacts=[a, b], results=results, notes=["a note"],
                  selected={"openvino:int8": {"default": "x", "candidates": ["x", "y"]}})
    assert m.save(tmp_path) == tmp_path / MANIFEST
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert raw["schema"] == SCHEMA and [x["path"] for x in raw["artifacts"]] == ["model.export.onnx", "model.int8.onnx"]
    assert raw["config"]["out"] == str(tmp_path)  # paths are written as text
    assert list(raw) == ["schema", "model", "weights", "input_shape", "dynamic_batch", "preprocessing", "config",
                         "versions", "host", "selected", "notes", "source", "labels", "evaluation", "timings",
                         "artifacts", "results"]
    assert (tmp_path / MANIFEST).read_text() == json.dumps(raw, indent=2)  # readable: indented by 2
    back = Manifest.load(tmp_path)
    assert back.artifacts == [a, b] and back.notes == ["a note"] and back.selected == m.selected
    assert back.model == m.model and back.weights == m.weights and back.input_shape == m.input_shape
    assert back.results["int8"].parity.failures == ("cosine 0.5 < 0.98",) and back.results["int8"].alternative
    assert back.results["export"].parity.passed
    assert Manifest.load(tmp_path / MANIFEST).artifacts == [a, b]  # the file itself, or its folder
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # written via a temporary name


@pytest.mark.parametrize("text, why", [("{not json", "JSONDecodeError"), ('{"schema": 1}', "ValueError"), ("{}", "ValueError"),
                                       ('{"schema": 2}', "KeyError"), ("[]", "TypeError"),
                                       ('"text"', "AttributeError"), (b'\xff', "UnicodeDecodeError")])
def test_unreadable_manifest_is_one_error_and_never_trusted(tmp_path, text, why):
    (tmp_path / MANIFEST).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ArtifactError) as e:
        Manifest.load(tmp_path)
    if why == "UnicodeDecodeError":  # refused by the bounded reader before it is parsed
        assert str(e.value) == f"manifest {tmp_path / MANIFEST} is corrupt (not UTF-8 text)"
    else:
        assert str(e.value) == (f"{tmp_path / MANIFEST} is corrupt or from another edgecnn version ({why}); "
                                "export again into this folder to rebuild it")
    assert try_load(tmp_path) is None


def test_no_manifest(tmp_path):
    with pytest.raises(ArtifactError) as e:
        Manifest.load(tmp_path)
    assert str(e.value) == f"no {MANIFEST} in {tmp_path}: run `edgecnn export MODEL --out {tmp_path}` first"
    assert try_load(tmp_path) is None
    _manifest(tmp_path).save(tmp_path)
    assert try_load(tmp_path).model == "squeezenet1_1"


def test_verify_names_the_missing_or_modified_artifact(tmp_path):
    a, b = _art(tmp_path, "export"), _art(tmp_path, "int8", b"q", "int8")
    m = _manifest(tmp_path, artifacts=[a, b])
    m.verify()  # intact: nothing raised
    b.path.write_bytes(b"Q")  # same size, other content
    with pytest.raises(ArtifactError) as e:
        m.verify()
    assert str(e.value) == (f"artifact int8 ({b.path}) is truncated or modified (sha256 differs from manifest.json); "
                            "move it away (edgecnn replaces only files it wrote, unchanged), then run the same "
                            "`edgecnn export squeezenet1_1 ...` into this folder again to rebuild it")
    b.path.unlink()
    with pytest.raises(ArtifactError, match=r"^artifact int8 \(.*\) is missing; run the same `edgecnn export "):
        m.verify()
    a.path.unlink()  # the first one that is wrong is named
    with pytest.raises(ArtifactError, match=r"^artifact export "):
        m.verify()


def test_intact_checks_every_file_of_an_ir_pair(tmp_path):
    (tmp_path / "m.xml").write_text("<xml/>")
    (tmp_path / "m.bin").write_bytes(b"weights")
    ir = describe(tmp_path / "m.xml", stage="openvino-fp32", precision="fp32", parent="simplify", fmt="openvino",
                  runtime="openvino")
    assert intact(ir)
    (tmp_path / "m.bin").write_bytes(b"Weights")
    assert not intact(ir)
    (tmp_path / "m.bin").unlink()
    assert not intact(ir)
    assert not intact(replace(ir, path=tmp_path))  # a folder where the file should be


def test_an_unreadable_artifact_is_not_intact(tmp_path, monkeypatch):
    import os

    a = _art(tmp_path, "export")
    assert intact(a)
    real_open = os.open

    def unreadable(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(a.path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", unreadable)
    assert not intact(a)


def test_selection_groups_decide_alternatives_and_defaults(tmp_path):
    m = _manifest(tmp_path, selected={"openvino:int8": {"default": "nncf", "candidates": ["qdq", "nncf"]},
                                      "tensorrt:int8": {"default": None, "candidates": ["a", "b"]}},
                  artifacts=[_art(tmp_path, "qdq"), _art(tmp_path, "nncf")])
    assert m.alternatives() == {"qdq"} and m.defaults() == {"nncf"}
    # issue 20: a default that is not an artifact here (a "ghost") selects nothing: every artifact is judged
    m.selected["openvino:int8"]["default"] = "ghost"
    assert m.alternatives() == set() and m.defaults() == set()
    assert _manifest(tmp_path).alternatives() == set() and _manifest(tmp_path).defaults() == set()


def test_failures_passed_and_artifact_lookup(tmp_path):
    a = _art(tmp_path, "export")
    results = {"export": ArtifactResult("export", "fp32", parity=_parity(True)),
               "openvino-fp32": ArtifactResult.failed("openvino-fp32", "fp32", "could not convert"),
               "fp16": ArtifactResult("fp16", "fp16", error="ran out of memory at run time"),
               "int8": ArtifactResult("int8", "int8", parity=_parity(True))}  # not built, no error: not a failure
    m = _manifest(tmp_path, artifacts=[a], results=results)
    assert m.failures() == {"openvino-fp32": "could not convert", "fp16": "ran out of memory at run time"}
    results["export"].error = "crashed at run time"  # built, then failed to run: not a build failure
    assert "export" not in m.failures()
    results["export"].error = None
    assert m.artifact("export") == a and m.artifact("int8") is None
    assert not m.passed()
    del results["openvino-fp32"], results["fp16"]
    assert m.passed() and m.failures() == {}
    del results["int8"]
    results["int8"] = ArtifactResult("int8", "int8", parity=_parity(False))
    assert not m.passed()


def test_journal_round_trip_and_unreadable_journal(tmp_path):
    a, b = _art(tmp_path, "export"), _art(tmp_path, "simplify")
    assert journal_load(tmp_path) == []
    journal_save(tmp_path, [a, b])
    assert json.loads((tmp_path / JOURNAL).read_text())["artifacts"][0]["path"] == "model.export.onnx"
    assert journal_load(tmp_path) == [a, b]
    (tmp_path / JOURNAL).write_text("[{")
    assert journal_load(tmp_path) == []
    (tmp_path / JOURNAL).write_text('[{"stage": "x"}]')
    assert journal_load(tmp_path) == []


def test_a_journal_this_machine_did_not_write_is_not_read(tmp_path):
    """The journal names what to reuse only when the local record proves edgecnn wrote it here (issue 20)."""
    a = _art(tmp_path, "export")
    journal_save(tmp_path, [a])
    text = (tmp_path / JOURNAL).read_text()
    (tmp_path / JOURNAL).unlink()
    (tmp_path / JOURNAL).write_text(text)  # the same bytes, written by someone else: the record still holds them
    assert journal_load(tmp_path) == [a]
    (tmp_path / JOURNAL).write_text(text.replace('"stage"', '"stage" ', 1))  # other bytes, same content
    assert journal_load(tmp_path) == []


def test_build_key_and_reuse(tmp_path):
    key = build_key("int8", {"b": 1, "a": Path("/x")}, [1, 2])
    assert len(key) == 32 and int(key, 16) >= 0
    assert key == build_key("int8", {"a": Path("/x"), "b": 1}, [1, 2])  # dict order does not matter
    assert key != build_key("int8", {"a": Path("/y"), "b": 1}, [1, 2]) != build_key("int8", {"b": 1, "a": Path("/x")})
    a = replace(_art(tmp_path, "int8", b"q", "int8"), build_key=key)
    other = replace(_art(tmp_path, "fp16", b"h", "fp16"), build_key=key)
    assert reusable([other, a], "int8", key, tmp_path) is None  # files the local record does not hold: not ours
    ledger.record(tmp_path, a.path)
    ledger.record(tmp_path, other.path)
    assert reusable([other, a], "int8", key, tmp_path) == a
    assert reusable([a], "int8", build_key("int8"), tmp_path) is None  # built from something else
    assert reusable([a], "fp16", key, tmp_path) is None
    assert reusable([replace(a, sha256="0" * 64)], "int8", key, tmp_path) is None  # a record of other bytes
    a.path.write_bytes(b"Q")
    assert reusable([a], "int8", key, tmp_path) is None  # modified on disk
    ledger.record(tmp_path, a.path)
    assert reusable([a], "int8", key, tmp_path) is None  # ours, but not the bytes the artifact record describes
