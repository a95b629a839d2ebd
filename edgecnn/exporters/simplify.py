"""onnxsim: constant folding and redundant-node elimination.

onnxsim occasionally fails or changes outputs on new models. Then the unsimplified model is
kept and the reason is returned, so the pipeline can say so instead of shipping a broken graph.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from ..artifact import Artifact, describe
from ..errors import first_line
from ..fileio import atomic_path


def simplify_onnx(src: Artifact, dest: str | Path) -> tuple[Artifact | None, str]:
    """Returns (artifact, note) or (None, why it was not simplified)."""
    import onnx

    try:
        import onnxsim
    except ImportError:
        return None, "onnxsim is not installed"
    model = onnx.load(str(src.path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxsim prints its own progress
            simplified, ok = onnxsim.simplify(model, check_n=1)
    except Exception as e:  # onnxsim raises plain RuntimeErrors from C++ on unsupported graphs
        return None, f"onnxsim failed: {first_line(e, 200)}"
    if not ok:
        return None, "onnxsim's own check found changed outputs"
    with atomic_path(dest) as tmp:
        onnx.save(simplified, str(tmp))
    before, after = len(model.graph.node), len(simplified.graph.node)
    return describe(dest, stage="simplify", precision="fp32", parent=src.stage, notes=f"onnxsim: {before} -> {after} nodes"), ""
