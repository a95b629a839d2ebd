"""Mutation testing of edgecnn's core modules with mutmut: do the tests fail when the code is wrong?

    pip install -e '.[openvino,test,mutation]'
    nice python benchmarks/mutation.py                 # every module below (~30 min on 2 idle cores)
    nice python benchmarks/mutation.py --only parity   # one module (a substring of its path); the report keeps
                                                       # the other modules' latest results
    python benchmarks/mutation.py --report             # rewrite the report from the results in mutants/
    nice python benchmarks/mutation.py --only models --survivors   # re-run only the last survivors (and the
                                                       # mutants without tests) of these modules, after adding
                                                       # tests: a killed mutant stays killed while the module
                                                       # is unchanged (checked by its sha256) and tests are
                                                       # only added

mutmut (configured in pyproject.toml, [tool.mutmut]) copies the package to mutants/, makes many small
changes to the functions of the modules below (a ``<`` for a ``<=``, a constant plus one, an argument
dropped...) and runs, for each, the fast unit tests that call the changed function. A mutant is *killed*
when a test fails, *timeout* when the tests hang (counted as detected), *survived* when every test
passes: either a blind spot of the tests or an *equivalent* mutant that no test can tell from the
original. The equivalent ones are listed in ``EQUIVALENT`` with the reason, checked against the mutant's
diff so that a stale entry is reported, not silently trusted.

Writes benchmarks/results/mutation.json and .md (atomically): per module generated, killed, timeout,
survived (equivalent or not), no tests, the score (killed + timeout) / generated, and every survivor.
Not part of CI (.ci/run): it takes half an hour; run it after changing a core module or its tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _results import RESULTS, save  # noqa: E402  (benchmarks/_results.py)

ROOT = Path(__file__).resolve().parent.parent
# module file -> functions left out (mutmut's mangled names), with why. Everything else in the file is in scope.
MODULES: dict[str, dict[str, str]] = {
    "edgecnn/parity.py": {},
    "edgecnn/results.py": {},
    "edgecnn/manifest.py": {},
    "edgecnn/exporters/int8.py": {
        "x_quantize_int8": "the quantization itself: minutes of ONNX Runtime calibration per mutant; its output is "
                           "checked by tests/test_int8_quality.py, test_int8_passes.py and test_export.py",
    },
    "edgecnn/pipeline/config.py": {},
    "edgecnn/pipeline/select.py": {},
    "edgecnn/backends/onnxruntime.py": {},
    "edgecnn/runtimes/onnxruntime.py": {},
    "edgecnn/models/shufflenet_v1.py": {},
    "edgecnn/models/mobilenet_v2.py": {},
    "edgecnn/models/mobilenet_v3.py": {},
    "edgecnn/models/squeezenet.py": {},
}
GOAL = 0.90
DETECTED = {"killed", "timeout", "segfault"}  # a mutant that crashes the test process is detected too

INPLACE = "in-place only reuses the input's memory: the same values come out, and nothing else reads that input"
# Survivors no test can kill: mutant name -> (a fragment of its changed line, why it changes nothing observable).
EQUIVALENT: dict[str, tuple[str, str]] = {
    # parity
    "edgecnn.parity.x_compare__mutmut_132": (
        "np.argsort(-ref, )", "argsort's default axis is the last one: axis 1 of the 2-D logits"),
    "edgecnn.parity.x_compare__mutmut_139": (
        "np.argsort(-out, )", "argsort's default axis is the last one: axis 1 of the 2-D logits"),
    "edgecnn.parity.x_compare__mutmut_191": ('float("NAN")', "float() parses NaN case-insensitively"),
    "edgecnn.parity.x_accuracy__mutmut_8": (
        "np.argsort(-logits, )", "argsort's default axis is the last one: axis 1 of the 2-D logits"),
    "edgecnn.parity.x_compare__mutmut_22": ('float("NAN")', "float() parses NaN case-insensitively"),
    # manifest
    "edgecnn.manifest.x_journal_save__mutmut_5": (
        "default=None", "every field of Artifact.to_json is a JSON type already: json.dumps never calls default"),
    "edgecnn.manifest.x_journal_save__mutmut_7": (
        "for a in artifacts], ))", "every field of Artifact.to_json is a JSON type already: json.dumps never calls default"),
    "edgecnn.manifest.x_try_load__mutmut_2": (
        "or True else None", "without the file Manifest.load raises ArtifactError, which try_load turns into None too"),
    "edgecnn.manifest.xǁManifestǁload__mutmut_17": (
        "raise ValueError(None)", "only the exception's type is shown (\"corrupt ... (ValueError)\"), never its text"),
    "edgecnn.manifest.xǁManifestǁload__mutmut_18": (
        'raise ValueError("XXschemaXX")', "only the exception's type is shown, never its text"),
    "edgecnn.manifest.xǁManifestǁload__mutmut_19": (
        'raise ValueError("SCHEMA")', "only the exception's type is shown, never its text"),
    # int8 recipes
    "edgecnn.exporters.int8.x__reduce_range_overrides__mutmut_4": (
        "load_external_data=None", "None is falsy: onnx.load skips external data exactly as with False"),
    "edgecnn.exporters.int8.x_model_batch__mutmut_3": (
        "load_external_data=None", "None is falsy: onnx.load skips external data exactly as with False"),
    **{f"edgecnn.exporters.int8.x_default_preset__mutmut_{n}": (
        change, "an ARM ISA never has avx2, and without avx2 the last line returns u8s8 too: the ARM test only "
                "documents the reason") for n, change in (
        (7, '"arm_dotprod" in isa and "neon" in isa'), (10, '"XXarm_dotprodXX" in isa'), (11, '"ARM_DOTPROD" in isa'),
        (13, '"XXneonXX" in isa'), (14, '"NEON" in isa'))},
    # config
    **{f"edgecnn.pipeline.config.x__preprocessing__mutmut_{n}": (
        change, "the note is only returned when nothing overrides the preprocessing; a --mean or --std given is an "
                "override, so the note made here is dropped either way") for n, change in (
        (90, "(cfg.mean is None and cfg.std is None)"), (91, "(cfg.mean is not None or cfg.std is None)"),
        (92, "(cfg.mean is None or cfg.std is not None)"))},
    **{f"edgecnn.pipeline.config.xǁExportConfigǁto_dict__mutmut_{n}": (
        change, "no value left in the dict is a dataclass (int8, preprocessing and model, the fields that can hold "
                "one, were replaced by plain values just above): the conversion never applies") for n, change in (
        (68, "and not isinstance(v, type)) and False else v"), (70, "asdict(None) if is_dataclass(v)"),
        (72, "is_dataclass(None)"), (73, "is_dataclass(v) and isinstance(v, type)"))},
    **{f"edgecnn.pipeline.config.x__input_shape__mutmut_{n}": (
        change, "a zoo model's given shape is square (refused just above otherwise): H and W are the same number")
       for n, change in ((41, "cfg.resolution != given[3]"), (53, "check_resolution(given[3]"))},
    "edgecnn.pipeline.config.x__input_shape__mutmut_118": (
        "or True else None", "module_defaults of a Path finds no pretrained_cfg and gives {}: no size, as the guard"),
    "edgecnn.pipeline.config.x__preprocessing__mutmut_2": (
        'note = ""', "Plan.complete keeps only the notes that are truthy: '' is dropped as None is"),
    "edgecnn.pipeline.config.x__preprocessing__mutmut_40": (
        "or True else {}", "module_defaults of a Path finds no pretrained_cfg and gives {}, as the guard"),
    "edgecnn.pipeline.config.xǁPlanǁlabels_of_weights__mutmut_5": (
        "if self.spec or isinstance(self.weights, str)", "only a zoo model has weights (others are refused them), and "
        "a spec asked for a Path finds no record by that name: None, as the guard"),
    # select
    "edgecnn.pipeline.select.x_flag_slower_int8__mutmut_14": (
        'art.runtime or "XXXX"', "no runtime is named '' or 'XXXX': fp32 has no entry for either, both give None"),
    # runtimes/onnxruntime
    **{f"edgecnn.runtimes.onnxruntime.xǁOnnxRuntimeǁ_run__mutmut_{n}": (
        change, "astype's copy flag only decides whether a new array is allocated; the input is not modified and the "
                "outputs are the same") for n, change in ((5, "copy=None"), (7, "self.input_dtype, )"), (8, "copy=True"))},
    # models
    "edgecnn.models.shufflenet_v1.xǁShuffleUnitǁforward__mutmut_3": (
        "if self.groups >= 1:", "a channel shuffle with one group is the identity"),
    "edgecnn.models.mobilenet_v2.xǁInvertedResidualǁ__init____mutmut_42": (
        "bias=None", "None is falsy: Conv2d makes no bias, as with False"),
    "edgecnn.models.mobilenet_v2.x__mobilenet_v2__mutmut_2": (
        "return MobileNetV2(**kwargs)", "_SETTING is MobileNetV2's default setting"),
    "edgecnn.models.mobilenet_v3.x__adjust__mutmut_4": (
        "make_divisible(channels * width_mult, )", "8 is make_divisible's default divisor"),
    "edgecnn.models.mobilenet_v3.xǁInvertedResidualǁ__init____mutmut_47": (
        "make_divisible(cfg.expanded // 4, )", "8 is make_divisible's default divisor"),
    "edgecnn.models.squeezenet.xǁSqueezeNetǁ__init____mutmut_70": (
        "nn.init.normal_(m.weight, std=0.01)", "0 is nn.init.normal_'s default mean"),
    **{f"edgecnn.models.{name}__mutmut_{n}": (change, INPLACE) for name, n, change in (
        ("mobilenet_v3.xǁMobileNetV3ǁ__init__", 55, "nn.Hardswish(inplace=None)"),
        ("mobilenet_v3.xǁMobileNetV3ǁ__init__", 56, "nn.Hardswish(inplace=False)"),
        ("mobilenet_v3.xǁMobileNetV3ǁ__init__", 58, "nn.Dropout(p=dropout, inplace=None)"),
        ("mobilenet_v3.xǁMobileNetV3ǁ__init__", 60, "nn.Dropout(p=dropout, )"),
        ("mobilenet_v3.xǁMobileNetV3ǁ__init__", 61, "nn.Dropout(p=dropout, inplace=False)"),
        ("squeezenet.xǁFireǁ__init__", 10, "self.squeeze_activation = nn.ReLU(inplace=None)"),
        ("squeezenet.xǁFireǁ__init__", 11, "self.squeeze_activation = nn.ReLU(inplace=False)"),
        ("squeezenet.xǁFireǁ__init__", 21, "self.expand1x1_activation = nn.ReLU(inplace=None)"),
        ("squeezenet.xǁFireǁ__init__", 22, "self.expand1x1_activation = nn.ReLU(inplace=False)"),
        ("squeezenet.xǁFireǁ__init__", 35, "self.expand3x3_activation = nn.ReLU(inplace=None)"),
        ("squeezenet.xǁFireǁ__init__", 36, "self.expand3x3_activation = nn.ReLU(inplace=False)"),
        ("squeezenet.xǁSqueezeNetǁ__init__", 14, "nn.ReLU(inplace=None)]"),
        ("squeezenet.xǁSqueezeNetǁ__init__", 15, "nn.ReLU(inplace=False)]"),
        ("squeezenet.xǁSqueezeNetǁ__init__", 60, "final_conv, nn.ReLU(inplace=None)"),
        ("squeezenet.xǁSqueezeNetǁ__init__", 61, "final_conv, nn.ReLU(inplace=False)"),
    )},
}


def module_of(mutant: str) -> str:
    """edgecnn.exporters.int8.x_recipe_for__mutmut_3 -> edgecnn/exporters/int8.py"""
    return mutant.rsplit(".", 1)[0].replace(".", "/") + ".py"


def function_of(mutant: str) -> str:
    return mutant.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]


def in_scope(mutant: str) -> bool:
    return function_of(mutant) not in MODULES.get(module_of(mutant), {})


def selected(path: str, only: str | None) -> bool:
    return only is None or any(part and part in path for part in only.split(","))


def patterns(only: str | None) -> list[str]:
    """mutmut name patterns for the in-scope functions of the modules asked for (mutmut's mangled names:
    ``x_function``, ``xǁClassǁmethod``)."""
    import ast

    out = []
    for path, left_out in MODULES.items():
        if not selected(path, only):
            continue
        module = path[:-3].replace("/", ".")
        tree = ast.parse((ROOT / path).read_text())
        names = [f"x_{n.name}" for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        names += [f"x\u01c1{c.name}\u01c1{n.name}" for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        out += [f"{module}.{name}__mutmut_*" for name in names if name not in left_out]
    return out


def run_mutmut(names: list[str], max_children: int, mode: str = "full") -> float:
    """A fresh mutants/ (mutmut copies the package once and would keep stale copies of unmutated files)."""
    import shutil

    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir()
    (ROOT / "mutants" / "edgecnn-run.json").write_text(json.dumps({"mode": mode}))
    log = ROOT / "mutants" / "mutation-run.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NNCF_CI": "1", "CI": "true",
           "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"mutmut run failed (exit {code}); see {log}")
    return time.perf_counter() - start


def collect() -> dict[str, dict[str, str]]:
    """module -> {mutant: status}, from mutmut's result files (mutants/**/*.py.meta)."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, dict[str, str]] = {}
    for path in MODULES:
        meta = ROOT / "mutants" / (path + ".meta")
        if not meta.is_file():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[path] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return out


def changed_line(mutant: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        diff = get_diff_for_mutant(mutant)
    finally:
        os.chdir(cwd)
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(added)


def sha256(path: str) -> str:
    import hashlib

    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def survivors_of(previous: dict, only: str | None) -> list[str]:
    """The last run's survivors in the modules asked for, refusing a module that changed since it was measured
    (its mutants would not be the same ones)."""
    names = []
    for row in previous.get("modules", []):
        if not selected(row["module"], only):
            continue
        if row.get("sha256") not in (None, sha256(row["module"])):
            sys.exit(f"{row['module']} changed since it was measured: run it in full (without --survivors)")
        names += [sv["mutant"] for sv in previous["survivors"] if module_of(sv["mutant"]) == row["module"]]
        names += [m for m in previous.get("no_tests", []) if module_of(m) == row["module"]]
    return names


def rerun_survivors(results: dict[str, dict[str, str]], previous: dict, rerun: list[str], measured: dict) -> dict:
    """The last JSON with its survivors in ``rerun`` replaced by their new status: a mutant killed once stays
    killed (the module is unchanged and tests are only added), so only the survivors need running again."""
    status = {m: s for statuses in results.values() for m, s in statuses.items()}
    now = dict(previous)
    now["modules"] = [dict(r) for r in previous["modules"]]
    for row in now["modules"]:
        mine = [m for m in rerun if module_of(m) == row["module"]]
        if not mine:
            continue
        c = Counter(status.get(m, "not checked") for m in mine)
        row["killed"] += c["killed"] + c["segfault"]
        row["timeout"] += c["timeout"]
        row["survived"] = c["survived"] + c["not checked"]
        row["no_tests"] = c["no tests"]
        row["measured"] = {**(row.get("measured") or {}), "survivors_rerun": {**measured, "mutants": len(mine)}}
    now["survivors"] = [sv for sv in previous["survivors"] if sv["mutant"] not in rerun
                        or status.get(sv["mutant"], "not checked") in ("survived", "not checked")]
    known = {sv["mutant"] for sv in now["survivors"]}
    now["survivors"] += [{"mutant": m, "change": changed_line(m), "equivalent": None} for m in rerun
                         if m not in known and status.get(m) == "survived"]  # had no tests, now survives one
    now["no_tests"] = [m for m in previous.get("no_tests", []) if m not in rerun or status.get(m) == "no tests"]
    return now


def judge(mutant: str, change: str, stale: list[str]) -> dict:
    """A survivor, with the reason it is equivalent when EQUIVALENT has one that still matches its change."""
    fragment, why = EQUIVALENT.get(mutant, ("", ""))
    if why and fragment not in change:
        stale.append(mutant)
        why = ""
    return {"mutant": mutant, "change": change, "equivalent": why or None}


def summarise(results: dict[str, dict[str, str]], previous: dict, seconds: float | None, args,
              measured: dict | None = None) -> dict:
    """This run's modules, and the latest recorded results of the others (``previous``: the last JSON).
    ``measured``: when, where and how this run's modules were measured (kept per module)."""
    stale: list[str] = []
    rows = {r["module"]: r for r in previous.get("modules", []) if r["module"] in MODULES and r["module"] not in results}
    survivors = [judge(sv["mutant"], sv["change"], stale) for sv in previous.get("survivors", [])
                 if module_of(sv["mutant"]) in rows]
    no_tests = [m for m in previous.get("no_tests", []) if module_of(m) in rows]
    for path, statuses in results.items():
        scoped = {m: s for m, s in statuses.items() if in_scope(m)}
        c = Counter(scoped.values())
        rows[path] = {"module": path, "generated": len(scoped), "killed": c["killed"] + c["segfault"],
                      "timeout": c["timeout"], "survived": c["survived"], "no_tests": c["no tests"],
                      "not_checked": c["not checked"], "out_of_scope": len(statuses) - len(scoped),
                      "measured": measured or previous_measured(previous, path), "sha256": sha256(path)}
        survivors += [judge(m, changed_line(m), stale) for m, s in sorted(scoped.items()) if s == "survived"]
        no_tests += [m for m, s in sorted(scoped.items()) if s == "no tests"]
    modules = [rows[p] for p in MODULES if p in rows]
    total = Counter()
    for row in modules:
        row["equivalent"] = sum(1 for sv in survivors if module_of(sv["mutant"]) == row["module"] and sv["equivalent"])
        row["score"] = (row["killed"] + row["timeout"]) / row["generated"] if row["generated"] else None
        total.update({k: v for k, v in row.items() if isinstance(v, int)})
    total_row = {"module": "all", **dict(total)}
    total_row["score"] = (total["killed"] + total["timeout"]) / total["generated"] if total["generated"] else None
    if seconds is None:
        seconds = previous.get("seconds")
    elif len(results) < len(modules):  # a partial run: its time is not the time of a full one
        seconds = None
    return {"tool": f"mutmut {_version()}", "seconds": round(seconds, 1) if seconds is not None else None,
            "max_children": args.max_children, "host": {"cpu": _cpu(), "cores": os.cpu_count()},
            "date": time.strftime("%Y-%m-%d"), "goal": GOAL, "modules": modules, "total": total_row,
            "survivors": survivors, "no_tests": no_tests, "unexplained_survivors": total["survived"] - total["equivalent"],
            "stale_equivalents": stale,
            "out_of_scope": {f"{p}:{f}": why for p, fs in MODULES.items() for f, why in fs.items()},
            "tests": _selection()}


def previous_measured(previous: dict, path: str) -> dict | None:
    """A module's measurement record from the last JSON (``--report`` rewrites the table, not the record)."""
    return next((r.get("measured") for r in previous.get("modules", []) if r["module"] == path), None)


def _cpu() -> str:
    """The model name in /proc/cpuinfo (what the machine is), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _measured(start: float, load: float | None, seconds: float, args, n_modules: int) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start)), "cpu": _cpu(), "cores": os.cpu_count(),
            "workers": args.max_children, "load_at_start": load, "minutes": round(seconds / 60, 1),
            "modules_in_run": n_modules, "command": "python benchmarks/mutation.py"
            + (f" --only {args.only}" if args.only else "") + f" --max-children {args.max_children}"}


def _measured_text(m: dict | None) -> str:
    if not m:
        return "-"

    def one(m: dict) -> str:
        load = f", load {m['load_at_start']:.1f}" if m.get("load_at_start") is not None else ""
        minutes = f", {m['minutes']:g} min" if m.get("minutes") is not None else ""
        return f"{m['date']}, {m['workers']} workers{load}{minutes}"

    if "date" not in m:  # only a survivors re-run is recorded
        text = "full run: date not recorded"
    else:
        text = f"{one(m)} for {m['modules_in_run']} module(s)"
    if "survivors_rerun" in m:
        r = m["survivors_rerun"]
        text += f"; its {r['mutants']} survivors re-run {one(r)}"
    return text


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def _selection() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["pytest_add_cli_args_test_selection"]


def table(s: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    lines = ["# Mutation testing of the core modules", "",
             f"{s['tool']}, {s['date']}, {s['host']['cpu']} x {s['host']['cores']} cores ({s['max_children']} workers)"
             + (f", {s['seconds'] / 60:.0f} min" if s["seconds"] else "") + ". Command: `python benchmarks/mutation.py` "
             "(see its docstring). Score = (killed + timeout) / generated; goal "
             f"{s['goal']:.0%}.", "",
             "| module | generated | killed | timeout | survived | of which equivalent | no tests | score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["modules"] + [s["total"]]:
        name = f"**{r['module']}**" if r["module"] == "all" else f"`{r['module']}`"
        lines.append(f"| {name} | {r['generated']} | {r['killed']} | {r['timeout']} | {r['survived']} | "
                     f"{r['equivalent']} | {r['no_tests']} | {pct(r['score'])} |")
    lines += ["", "How and when each module was measured (the machine is shared: the load average at the start of "
              "the run is given; it changes the time, not which mutants are killed, except for timeouts):", ""]
    cpus = {(r.get("measured") or {}).get("cpu") for r in s["modules"]} - {None}
    lines += [f"- `{r['module']}`: {_measured_text(r.get('measured'))}" for r in s["modules"]]
    if cpus:
        lines += ["", f"CPU (/proc/cpuinfo): {', '.join(sorted(cpus))}, {s['host']['cores']} cores."]
    lines += ["", "Left out on purpose (generated, not run):", ""]
    lines += [f"- `{k}`: {why}" for k, why in s["out_of_scope"].items()]
    lines += ["", f"## Surviving mutants ({len(s['survivors'])}; {s['unexplained_survivors']} not explained)", ""]
    if s["stale_equivalents"]:
        lines += [f"Stale equivalence notes (the mutant changed): {', '.join(s['stale_equivalents'])}", ""]
    lines += ["| mutant | change | equivalent because |", "|---|---|---|"]
    for sv in s["survivors"]:
        change = sv["change"].replace("|", "\\|")
        lines.append(f"| `{sv['mutant']}` | `{change}` | {sv['equivalent'] or '**not explained: add a test**'} |")
    lines += ["", "Test selection (each mutant runs only the ones among these that call its function):", ""]
    lines += [f"- `{t}`" for t in s["tests"]]
    lines += bugs_section()
    return "\n".join(lines) + "\n"


def bugs_section() -> list[str]:
    """What benchmarks/deliberate_bugs.py found: each of issue 17's bugs and the tests that fail on it."""
    path = RESULTS / "deliberate_bugs.json"
    if not path.is_file():
        return []
    d = json.loads(path.read_text())
    lines = ["", "## The issue's ten deliberate bugs", "",
             f"Each applied to the code, the fast tests run, the code put back (`python benchmarks/deliberate_bugs.py`, "
             f"{d['date']}). The bug, then the tests that failed on it:", ""]
    for b in d["bugs"]:
        tests = ", ".join(f"`{t.removeprefix('tests/')}`" for t in b["failed"]) or "**no test failed**"
        lines.append(f"- {b['bug']} (`{b['where']}`): {tests}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="only the modules whose path contains one of these (comma list)")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="parallel mutant workers")
    ap.add_argument("--report", action="store_true", help="only rewrite the report from the last JSON and mutants/")
    ap.add_argument("--survivors", action="store_true",
                    help="re-run only the last recorded survivors of the modules asked for (after adding tests)")
    args = ap.parse_args()
    seconds, start, load = None, time.time(), _load()
    previous_file = RESULTS / "mutation.json"
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
    if args.survivors:
        rerun = survivors_of(previous, args.only)
        seconds = run_mutmut(rerun, args.max_children, mode="survivors") if rerun else 0.0
        results = {p: r for p, r in collect().items() if selected(p, args.only)}
        previous = rerun_survivors(results, previous, rerun, _measured(start, load, seconds, args, len(results)))
        results = {}  # every row now comes from the updated record
    else:
        if not args.report:
            seconds = run_mutmut(patterns(args.only), args.max_children)
        marker = ROOT / "mutants" / "edgecnn-run.json"
        if marker.is_file() and json.loads(marker.read_text()).get("mode") != "full":
            results = {}  # a --survivors run is already in the JSON: the table is rewritten from it alone
        else:
            results = {p: r for p, r in collect().items() if selected(p, args.only)}
    measured = None if seconds is None else _measured(start, load, seconds, args, len(results))
    summary = summarise(results, previous, seconds, args, measured)
    save(RESULTS / "mutation", summary, table(summary))
    print(table(summary))
    t = summary["total"]
    return 0 if t["score"] is not None and t["score"] >= GOAL and not summary["unexplained_survivors"] else 1


if __name__ == "__main__":
    sys.exit(main())
