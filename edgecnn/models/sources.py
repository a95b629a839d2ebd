"""Models from outside the zoo: where an export's original comes from.

    zoo name              mobilenet_v2                     the registered builder (+ weights)
    file.py:factory       heads.py:build                   a function returning an nn.Module (it may load
    package.module:fn     timm:create_model                its own checkpoint); options via --model-arg
    a .pt2 file           model.pt2                        a torch.export program (torch.export.save)
    an .onnx file         model.onnx                       run by ONNX Runtime in fp32, it *is* the original
    an nn.Module          edgecnn.export(module, ...)      the Python API

A factory is code the user chose to run, like any script; a ``.pt2`` is read with
``torch.export.load``, which rebuilds the saved graph (no arbitrary pickled objects, but the program's
graph is executed as saved). :class:`ModelSource` records which one, with the file's sha256, so the
build cache and ``edgecnn check`` rebuild exactly the same original.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from ..errors import ConfigError, first_line
from ..fileio import sha256_file
from ._spec import MODELS
from .mistakes import CHECKPOINT_SUFFIXES, factory_failure, module_roots, name_the_function, program_problem

KINDS = ("zoo", "factory", "program", "onnx", "module")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # one of KINDS
    ref: str  # zoo name | "/abs/file.py:fn" | "package.module:fn" | /abs/path.pt2 | /abs/path.onnx | class path
    name: str  # short name: the tables' titles (the default output folder: :func:`source_name`)
    args: Mapping[str, Any] = field(default_factory=dict)  # factory keyword arguments (zoo: builder options)
    sha256: str | None = None  # of the file it comes from (factory .py, .pt2, .onnx)

    @property
    def path(self) -> Path | None:
        """The file the model comes from (a factory's .py, the .pt2 or .onnx), if any."""
        if self.kind in ("program", "onnx"):
            return Path(self.ref)
        if self.kind == "factory" and self.ref.rsplit(":", 1)[0].endswith(".py"):
            return Path(self.ref.rsplit(":", 1)[0])
        return None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ref": self.ref, "name": self.name, "args": dict(self.args), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSource":
        return cls(d["kind"], d["ref"], d["name"], dict(d.get("args") or {}), d.get("sha256"))


def parse_source(model: str | Path | nn.Module, args: Mapping[str, Any] | None = None) -> ModelSource:
    """What ``model`` names (see the module docstring); files must exist. Nothing is imported or run yet."""
    args = dict(args or {})
    if isinstance(model, nn.Module):
        cls = type(model)
        return ModelSource("module", f"{cls.__module__}.{cls.__qualname__}", _snake(cls.__name__), args)
    text = str(model)
    suffix = Path(text).suffix.lower()
    if suffix == ".py":  # a factory file without its function: which functions it has (read, not run)
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"factory file not found: {text} (a factory is named file.py:function)")
        raise name_the_function(text, path)
    if suffix in CHECKPOINT_SUFFIXES and ":" not in text:
        raise ConfigError(f"{Path(text).name} is a checkpoint, not a model: pass it as --weights of the zoo model "
                          "it fits, or export a file.py:factory that builds the model and loads it")
    if suffix in (".onnx", ".pt2"):
        path = Path(text).expanduser()
        kind = "onnx" if suffix == ".onnx" else "program"
        if not path.is_file():
            raise ConfigError(f"{'ONNX' if kind == 'onnx' else 'torch.export program'} file not found: {text}")
        if args:
            raise ConfigError(f"--model-arg is for factories and zoo models; {path.name} takes none")
        return ModelSource(kind, str(path.resolve()), path.stem, {}, sha256_file(path))
    if ":" in text:
        where, fn = text.rsplit(":", 1)
        if not fn.isidentifier():
            raise ConfigError(f"'{text}': after the ':' comes the factory function's name, got '{fn}'")
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ConfigError(f"factory file not found: {where}")
            return ModelSource("factory", f"{path.resolve()}:{fn}", fn, args, sha256_file(path))
        if not _DOTTED.match(where):
            raise ConfigError(f"'{text}' is neither file.py:factory nor package.module:factory")
        return ModelSource("factory", text, fn, args)
    MODELS.get(text)  # unknown names: one line with close matches
    return ModelSource("zoo", text, text, args)


def source_name(model: str | Path | nn.Module) -> str:
    """The default output folder's name, without checking the reference: one that keeps the source's
    identity, so that two sources never share a folder by default. A zoo name as it is (``mobilenet_v2``),
    a file with its suffix (``small.pt2``, ``small.onnx``), a factory as its file or module and its function
    joined by '-' (``heads.py-build``, ``timm-create_model``: ':' is not allowed in Windows file names),
    a Python module by its class (``my_net``)."""
    if isinstance(model, nn.Module):
        return _snake(type(model).__name__)
    text = str(model)
    if Path(text).suffix.lower() in (".onnx", ".pt2"):
        return Path(text).name
    if ":" in text:
        where, fn = text.rsplit(":", 1)
        return f"{Path(where).name if where.endswith('.py') else where}-{fn}"
    return text


def describe(source: ModelSource) -> str:
    """How a source is named in one line: the zoo name, the file's name, ``heads.py:build``, the class."""
    if source.kind in ("program", "onnx"):
        return Path(source.ref).name
    return _short(source) if source.kind == "factory" else source.ref


def build_factory(source: ModelSource) -> nn.Module:
    """Import the factory and call it with the source's arguments; it must return an nn.Module."""
    where, fn_name = source.ref.rsplit(":", 1)
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        own = [(n, v) for n, v in vars(module).items() if callable(v) and not n.startswith("_")
               and getattr(v, "__module__", None) == module.__name__]  # in the order the file defines them
        defined = [n for n, v in own if not inspect.isclass(v)] + [n for n, v in own if inspect.isclass(v)]
        close = difflib.get_close_matches(fn_name, defined, n=1)
        named = Path(where).name if where.endswith('.py') else where
        raise ConfigError(f"{named} has no function '{fn_name}'" + (f"; did you mean {named}:{close[0]}?" if close else "")
                          + (f" (it defines: {', '.join(defined[:8])})" if defined else ""))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: the call itself says what is wrong
        signature = None
    if signature is not None:
        try:
            signature.bind(**source.args)
        except TypeError as e:
            params = ", ".join(str(p) for p in signature.parameters.values())
            raise ConfigError(f"factory {_short(source)}: --model-arg does not fit it ({e}); it takes ({params})") from None
    try:
        model = fn(**source.args)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code raises anything; said in one line
        raise ConfigError(factory_failure(e, f"factory {_short(source)}", module_roots(module))) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"factory {_short(source)} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _import_file(path: Path):
    name = f"edgecnn_factory_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a SyntaxError, a missing import...: one line
        raise ConfigError(factory_failure(e, f"importing {path.name}", (path.resolve().parent,))) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    sys.modules[name] = module
    return module


def _import_module(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as e:
        raise ConfigError(f"cannot import '{dotted}': {first_line(e)} (is it installed, or on PYTHONPATH?)") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raise ConfigError(factory_failure(e, f"importing '{dotted}'", ())) from None


def code_roots(source: ModelSource) -> tuple[Path, ...]:
    """Where the user's own code of a factory lives (to name the line of it that raised)."""
    if source.kind != "factory":
        return ()
    where = source.ref.rsplit(":", 1)[0]
    if where.endswith(".py"):
        return (Path(where).resolve().parent,)
    module = sys.modules.get(where)
    return module_roots(module) if module is not None else ()


def _short(source: ModelSource) -> str:
    where, fn = source.ref.rsplit(":", 1)
    return f"{Path(where).name}:{fn}" if where.endswith(".py") else source.ref


class Program(nn.Module):
    """A torch.export program as an nn.Module in eval mode. A program exported for a fixed batch size
    runs any batch here, in slices of that size (its guards reject any other shape)."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        shape = program_input_shape(program)
        self.batch = shape[0] if isinstance(shape[0], int) else None  # None: a dynamic batch dimension
        self.input_shape = shape
        self.program = program.module()

    def train(self, mode: bool = True) -> "Program":  # the unlifted module refuses .eval(): it is fixed anyway
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or x.shape[0] == self.batch:
            return self.program(x)
        pad = (-x.shape[0]) % self.batch
        if pad:
            x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
        out = torch.cat([self.program(x[i: i + self.batch]) for i in range(0, x.shape[0], self.batch)])
        return out[: out.shape[0] - pad]


def load_program(source: ModelSource) -> Program:
    """A ``.pt2`` written by ``torch.export.save``, as a :class:`Program` (one 4-D float input)."""
    name, how = Path(source.ref).name, "write one with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
    problem = program_problem(Path(source.ref))
    if problem is not None:
        raise ConfigError(f"{name} is not a torch.export program: it is {problem}; {how}")
    quiet = logging.getLogger("torch.export")  # it logs a whole traceback before raising its own error
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        program = torch.export.load(str(source.ref))
    except Exception as e:  # noqa: BLE001 - a zip that is not a program, a newer format...
        raise ConfigError(f"{name} is not a readable torch.export program "
                          f"({type(e).__name__}: {first_line(e, 160)}); {how}") from None
    finally:
        quiet.setLevel(level)
    if not isinstance(program, torch.export.ExportedProgram):
        raise ConfigError(f"{name} holds a {type(program).__name__}, not a torch.export program; {how}")
    return Program(program)


def program_input_shape(program: torch.export.ExportedProgram) -> tuple:
    """The input shape of a single-image-input program (a dynamic dimension is its symbol's name)."""
    users = list(program.graph_signature.user_inputs)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    vals = [nodes[u].meta.get("val") for u in users if u in nodes]
    if len(users) != 1 or len(vals) != 1 or not isinstance(vals[0], torch.Tensor):
        raise ConfigError(f"the program takes {len(users)} inputs ({', '.join(users)}); edgecnn exports "
                          "image classifiers with one NCHW float input")
    val = vals[0]
    if val.dim() != 4 or not val.dtype.is_floating_point:
        raise ConfigError(f"the program's input '{users[0]}' is {str(val.dtype).replace('torch.', '')} "
                          f"{list(val.shape)}, not an NCHW float image batch")
    return tuple(int(d) if isinstance(d, int) else str(d) for d in val.shape)


def module_defaults(model: nn.Module) -> dict[str, Any]:
    """What a model says about its own input: timm's ``pretrained_cfg`` (input_size, mean, std,
    crop_pct, interpolation), where present."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if not isinstance(cfg, Mapping):
        return {}
    return {k: cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation") if cfg.get(k) is not None}


def module_identity(model: nn.Module) -> str:
    """A digest of a module that changes with any weight, buffer, structure or class source file:
    what the build cache keys an export of an arbitrary module on."""
    h = hashlib.sha256(repr(model).encode())
    for key, value in model.state_dict().items():
        h.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    sources = set()
    for m in model.modules():
        if not type(m).__module__.startswith("torch."):
            try:
                sources.add(inspect.getsourcefile(type(m)))
            except (TypeError, OSError):
                pass
    for path in sorted(s for s in sources if s and Path(s).is_file()):
        h.update(sha256_file(path).encode())
    return h.hexdigest()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
