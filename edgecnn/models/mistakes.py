"""Mistakes on the own-model path, each said in one line that names its cause.

- :func:`factory_failure`: what a factory (the user's code) raised: the missing, unexpected and mismatched
  keys of a ``load_state_dict`` error, else the exception's type and message, with the innermost line of
  the user's own code that raised it;
- :func:`python_functions`: the functions a Python file defines, read with :mod:`ast` (nothing is run), for
  "heads.py is a Python file: name the function that builds the model";
- :func:`program_problem`: why a ``.pt2`` is not a torch.export program, read from its zip directory;
- :func:`check_input`: a factory's model run once on a zero input of the asked shape, so that a wrong
  channel count or a too small image is one line before the export, not a traceback in the middle of it.
"""
from __future__ import annotations

import ast
import re
import sys
import traceback
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..guard import check_limit

SHOWN = 4  # keys (or mismatches) named per kind; the rest counted
_STATE_DICT = re.compile(r"Error\(s\) in loading state_dict for (\w+)")
_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
                       r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)")
_KEYS = re.compile(r'"([^"]+)"')
# a checkpoint given where a model goes: say what to do with it
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".tar")


def _some(items: list[str]) -> str:
    more = f", +{len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def state_dict_problems(text: str) -> str | None:
    """``torch.nn.Module.load_state_dict``'s multi-line error as one line: the missing and unexpected keys
    and the size mismatches (a few of each, with their count); None when ``text`` is not such an error."""
    found = _STATE_DICT.search(text)
    if found is None:
        return None
    parts = []
    for line in text.splitlines():
        line = line.strip()
        for label, what in (("Missing key(s)", "missing"), ("Unexpected key(s)", "unexpected")):
            if line.startswith(label):
                keys = _KEYS.findall(line)
                parts.append(f"{what} {len(keys)} key{'s' if len(keys) != 1 else ''} ({_some(keys)})")
    sizes = _MISMATCH.findall(text)
    if sizes:
        shown = "; ".join(f"size mismatch for {k}: checkpoint [{a}] vs model [{b}]" for k, a, b in sizes[:SHOWN])
        parts.append(shown + (f" (and {len(sizes) - SHOWN} more mismatches)" if len(sizes) > SHOWN else ""))
    return f"load_state_dict: the checkpoint does not fit {found.group(1)}: " + ("; ".join(parts) or "see its message")


def user_frame(e: BaseException, roots: tuple[Path, ...]) -> str | None:
    """``file:line`` of the innermost frame of ``e``'s traceback inside ``roots`` (the user's code)."""
    roots = tuple(r.resolve() for r in roots)
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        path = Path(frame.filename)
        if not path.is_absolute():
            continue
        path = path.resolve()
        for root in roots:
            if path == root or root in path.parents:
                package = root.is_file() or (root / "__init__.py").is_file()  # shown with its package's name
                return f"{path.relative_to(root.parent if package else root)}:{frame.lineno}"
    if isinstance(e, SyntaxError) and e.filename and e.lineno:
        return f"{Path(e.filename).name}:{e.lineno}"
    return None


def exception_text(e: BaseException, limit: int = 300) -> str:
    """An exception's type and its whole message on one line; a load_state_dict error: its keys and shapes."""
    text = str(e).strip()
    said = state_dict_problems(text)
    if said is None:
        said = f"raised {type(e).__name__}" + (f": {' '.join(text.split())[:limit]}" if text else "")
    return said


def factory_failure(e: BaseException, what: str, roots: tuple[Path, ...]) -> str:
    """One line for an exception raised by ``what`` (a factory call or import), located in ``roots``:
    'factory heads.py:build raised KeyError: 'x' (at heads.py:22)'."""
    where = user_frame(e, roots)
    said = exception_text(e)
    return f"{what}{' ' if said.startswith('raised') else ': '}{said}" + (f" (at {where})" if where else "")


def module_roots(module) -> tuple[Path, ...]:
    """Where a factory's code lives: its file's folder, or its top-level package's folder."""
    file = getattr(module, "__file__", None)
    if not file:
        return ()
    path = Path(file).resolve()
    top = sys.modules.get(module.__name__.split(".")[0])
    top_file = getattr(top, "__file__", None)
    if getattr(top, "__path__", None) and top_file:  # a package: all of it is the factory's code
        return (Path(top_file).resolve().parent,)
    return (path.parent,) if module.__name__.startswith("edgecnn_factory_") else (path,)


def python_functions(path: Path) -> list[str]:
    """The top-level functions (then classes) a Python file defines, without running it."""
    check_limit("file_bytes", path.stat().st_size, f"{path.name}: size", ConfigError)
    try:
        tree = ast.parse(path.read_bytes(), filename=path.name)
    except OSError as e:
        raise ConfigError(f"cannot read {path.name}: {e.strerror or type(e).__name__}") from None
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        line = f" at line {e.lineno}" if isinstance(e, SyntaxError) and e.lineno else ""
        raise ConfigError(f"{path.name} is a Python file that does not parse ({type(e).__name__}{line})") from None
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    return [n for n in functions + classes if not n.startswith("_")]


def name_the_function(text: str, path: Path) -> ConfigError:
    """``heads.py`` given without ``:function``: which functions it has, and how to name one."""
    names = python_functions(path)
    if not names:
        return ConfigError(f"{path.name} is a Python file but defines no function: write one that returns the "
                           f"model (an nn.Module) and export {text}:that_function")
    preferred = ("build", "create_model", "get_model", "make_model", "model", "build_model", "create", "load")
    example = next((n for n in preferred if n in names), names[0])
    return ConfigError(f"{path.name} is a Python file: name the function that builds the model, e.g. "
                       f"{text}:{example} (functions in it: {_some(names)})")


def program_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a torch.export program, read from its zip directory; None if it may be one."""
    if not zipfile.is_zipfile(path):
        return "not a zip archive"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"an unreadable zip archive ({type(e).__name__})"
    if any(n.endswith("archive_format") or n.endswith("models/model.json") or n.endswith("serialized_exported_program.json")
           for n in names):
        return None
    if any(n.endswith("data.pkl") for n in names):
        return "a torch.save file (a checkpoint or a pickled object)"
    return "a zip archive without an exported program in it"


def first_conv_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first convolution (registration order), if it has one."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def check_input(model: nn.Module, shape: tuple[int, int, int, int], name: str, roots: tuple[Path, ...] = ()) -> None:
    """Run ``model`` once on a zero image of ``shape`` (batch 1): a wrong channel count or an input too small
    for it is one line now, not a traceback in the middle of the export."""
    given = ",".join(map(str, shape))
    param = next(model.parameters(), None)
    kw = {"device": param.device, "dtype": param.dtype if param.dtype.is_floating_point else torch.float32} \
        if param is not None else {}
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *shape[1:], **kw))
    except Exception as e:  # noqa: BLE001 - the user's model raises anything: one line
        channels = first_conv_channels(model)
        if channels is not None and channels != shape[1]:
            raise ConfigError(f"the model expects {channels} input channels, --input-shape {given} gives "
                              f"{shape[1]}") from None
        raise ConfigError(f"{name} cannot run on --input-shape {given}: "
                          + factory_failure(e, "its forward", roots).removeprefix("its forward raised ")) from None
    if not isinstance(out, torch.Tensor):
        what = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list, dict)) else f"a {type(out).__name__}"
        raise ConfigError(f"{name} returns {what}, not one tensor: edgecnn exports models with one output (the "
                          "logits); return only those (a training-mode auxiliary output: build it in eval mode)")
