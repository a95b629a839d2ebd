"""Sensitivity fallback: keep the FEWEST layers in float that bring int8 within a fidelity budget.

``drop`` is ``1 - mean logit cosine`` against the original's logits on held-out inputs (default), or
``1 - top-1 agreement on confident inputs`` (``metric="top1"``). Cosine is the default because it
is continuous: on ~64 images a single flipped top-1 moves the agreement by 2-3 points, so a top-1
budget can only be met or missed in coarse steps; cosine ranks candidate layers smoothly.

How (bounded: about a minute on 2 cores for EfficientNet-Lite0 at 224 with 64 evaluation images):
1. quantize everything with the recipe and measure the drop (ONNX Runtime, its int8 kernels);
2. rank the quantized nodes by the error each one *adds*: one float-simulated pass on a few inputs,
   noise-to-signal ratio of its output minus that of its (pre-quantization) inputs, both against the
   fp32 model's tensors of the same name;
3. for the ``candidates`` worst nodes, measure the drop with just that node in float (graph surgery
   on the QDQ model: its weights and bias come from the fp32 model; its activation inputs stay
   quantized, as they do in ONNX Runtime's ``nodes_to_exclude`` whenever their producer is quantized);
4. greedily keep in float the node with the largest measured gain, then the next, re-measuring the
   combination each time, until the drop is within ``max_drop`` (or ``max_layers`` is reached);
5. quantize again with those nodes in ``nodes_to_exclude`` and measure the result for real.
The result is a QDQ model, so ONNX Runtime and OpenVINO (which reads QDQ) both get it.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..artifact import describe
from ..fileio import atomic_path
from ..parity import compare
from .equalize import equalize
from .graph import collect, dequantized, logits
from .int8 import Int8Recipe, quantize_int8

METRICS = ("cosine", "top1")


def drop_of(reference: np.ndarray, candidate: np.ndarray, metric: str = "cosine") -> float:
    """1 - cosine, or 1 - top-1 agreement on confident inputs (0 when there are none)."""
    r = compare(reference, candidate, precision="int8")
    if metric == "cosine":
        return 1.0 - r.cosine
    return 0.0 if not r.n_confident else 1.0 - r.top1_confident


# ---- graph surgery: one node of a QDQ model back in float ------------------------------
class _Graph:
    def __init__(self, qdq, fp32) -> None:
        from onnx import numpy_helper

        self.qdq, self.fp32 = qdq, fp32
        self.producer = {o: n for n in qdq.graph.node for o in n.output}
        self.inits = {i.name for i in qdq.graph.initializer}
        self.f_nodes = {n.name: n for n in fp32.graph.node}
        self.f_inits = {i.name: i for i in fp32.graph.initializer}
        self.q_inits = {i.name: i for i in qdq.graph.initializer}
        self._np = numpy_helper

    def dq_inputs(self, node) -> list[tuple[int, object]]:
        return [(i, self.producer[t]) for i, t in enumerate(node.input)
                if t in self.producer and self.producer[t].op_type == "DequantizeLinear"]

    def candidates(self) -> list:
        """Nodes with quantized weights (keeping one in float = float weights, see :meth:`with_float`)."""
        return [n for n in self.qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                and n.name and any(dq.input[0] in self.inits for _, dq in self.dq_inputs(n))]

    def float_weight(self, node, i: int, dq):
        """Input ``i`` of ``node`` (a quantized weight or bias) in float: the fp32 model's, else dequantized."""
        name = f"{dq.input[0]}__float"  # a fresh name: the QDQ model may use the original one for a DQ output
        f = self.f_nodes.get(node.name)
        if f is not None and i < len(f.input) and f.input[i] in self.f_inits:
            return self._np.from_array(self._np.to_array(self.f_inits[f.input[i]]), name)
        return self._np.from_array(dequantized(dq, self.q_inits).astype(np.float32), name)

    def q_range(self, q) -> tuple[float, float] | None:
        """The real range a per-tensor QuantizeLinear can represent (it also stands for a removed Relu/Clip)."""
        if len(q.input) < 3 or q.input[1] not in self.q_inits or q.input[2] not in self.q_inits:
            return None
        s, z = self._np.to_array(self.q_inits[q.input[1]]), self._np.to_array(self.q_inits[q.input[2]])
        if s.size != 1:
            return None
        info = np.iinfo(z.dtype)
        return float(s) * (info.min - float(z)), float(s) * (info.max - float(z))

    def quantizer_of(self, tensor: str):
        return next((n for n in self.qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor), None)

    def with_float(self, names: set[str]):
        """A copy of the QDQ model with float weights (and bias) for the nodes ``names``.

        That is what ``nodes_to_exclude`` amounts to in ONNX Runtime's QDQ quantizer: an excluded
        node's activation inputs stay Q/DQ'd whenever their producer is quantized (measured: the
        activation-bypass variant predicted gains the real excluded model did not show)."""
        import onnx

        m = onnx.ModelProto()
        m.CopyFrom(self.qdq)
        have = {i.name for i in m.graph.initializer}
        for node in m.graph.node:
            if node.name not in names:
                continue
            for i, dq in self.dq_inputs(node):
                if dq.input[0] not in self.inits:
                    continue
                init = self.float_weight(node, i, dq)
                if init.name not in have:
                    m.graph.initializer.append(init)
                    have.add(init.name)
                node.input[i] = init.name
        return m


def _rank(graph: _Graph, x: np.ndarray, threads: int | None) -> list[dict]:
    """Candidate nodes, largest added noise-to-signal ratio first (float-simulated, a few inputs)."""
    f_names = {o for n in graph.fp32.graph.node for o in n.output}
    cands = graph.candidates()
    rows = []
    for node in cands:
        ins = []
        for i, dq in graph.dq_inputs(node):
            if dq.input[0] not in graph.inits:
                q = graph.producer.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in f_names:
                    ins.append(q.input[0])
        out = node.output[0] if node.output[0] in f_names else None
        rows.append({"node": node.name, "op": node.op_type, "inputs": ins, "output": out})
    tensors = sorted({t for r in rows for t in r["inputs"] + ([r["output"]] if r["output"] else [])})

    def run(model) -> dict[str, np.ndarray]:
        return collect(model, tensors, x, threads=threads)

    ref, got = run(graph.fp32), run(graph.qdq)
    for t in tensors:  # a quantizer may stand for a Relu/Clip it replaced: compare within its range
        q = graph.quantizer_of(t)
        rng = graph.q_range(q) if q is not None else None
        if rng is not None:
            got[t] = np.clip(got[t], *rng)
    nsr = {t: float(np.sum((got[t] - ref[t]) ** 2) / max(float(np.sum(ref[t] ** 2)), 1e-30)) for t in tensors}
    for r in rows:
        before = max((nsr[t] for t in r["inputs"]), default=0.0)
        r["added_nsr"] = nsr[r["output"]] - before if r["output"] else 0.0
        del r["inputs"], r["output"]
    return sorted(rows, key=lambda r: -r["added_nsr"])


def fallback_for_budget(fp32_onnx: str | Path, calibration: np.ndarray, evaluation: np.ndarray,
                        reference_logits: np.ndarray, *, recipe=None, max_drop: float, metric: str = "cosine",
                        candidates: int = 24, max_layers: int = 8, opset: int = 17, threads: int | None = 2,
                        dest: str | Path | None = None, progress: bool = False,
                        exact: bool = False) -> tuple[list[str], dict]:
    """Nodes to keep in float (``Int8Recipe.exclude_nodes``) so that ``drop <= max_drop``, and what was measured.

    ``evaluation`` (N, C, H, W) and ``reference_logits`` (the original's, N x classes) judge the drop;
    ``calibration`` sets the int8 ranges. ``dest``: also write the final QDQ model there. The list is
    empty when the fully quantized model is already within budget; ``measurements["met"]`` says whether
    the budget was reached within ``max_layers``. ``exact``: judge the drop in exact Q/DQ arithmetic (ONNX
    Runtime with its int8 kernel fusions off), for a model another runtime executes (TensorRT's): this CPU's own
    int8 kernels would judge themselves instead (on AVX2 without VNNI they saturate). See the module docstring.
    """
    import onnx

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    t0 = time.perf_counter()
    recipe = recipe or Int8Recipe()
    src = describe(fp32_onnx, stage="fp32", precision="fp32", parent=None)
    x = np.ascontiguousarray(evaluation, np.float32)
    drop = lambda model: drop_of(reference_logits, logits(model, x, threads, optimize=not exact), metric)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="edgecnn-sens-") as work:
        if recipe.equalize:  # the float twins of kept-in-float nodes must be the equalised weights
            fp32_onnx = Path(work) / "equalized.onnx"
            onnx.save(equalize(onnx.load(str(src.path)), calibration)[0], str(fp32_onnx))
            src = describe(fp32_onnx, stage="fp32", precision="fp32", parent=None)
            recipe = replace(recipe, equalize=False)
        q0 = Path(work) / "all.onnx"
        quantize_int8(src, q0, calibration, recipe=recipe, opset=opset, progress=progress)
        base = drop(q0)
        meas = {"metric": metric, "max_drop": max_drop, "baseline_drop": base, "steps": [], "candidates": []}
        chosen: list[str] = []
        if base > max_drop:
            graph = _Graph(onnx.load(str(q0)), onnx.load(str(fp32_onnx)))
            ranked = _rank(graph, x[: min(len(x), 8)], threads)[:candidates]
            for r in ranked:
                r["drop"] = drop(graph.with_float({r["node"]}))
                r["gain"] = base - r["drop"]
            meas["candidates"] = ranked
            current = base
            for r in sorted(ranked, key=lambda r: -r["gain"]):
                if current <= max_drop or len(chosen) >= max_layers or r["gain"] <= 0:
                    break
                trial = drop(graph.with_float(set(chosen) | {r["node"]}))
                if trial < current:  # gains do not always add up: keep a node only if the combination improves
                    chosen.append(r["node"])
                    current = trial
                    meas["steps"].append({"node": r["node"], "drop": trial})
        final = Path(work) / "final.onnx"
        if chosen:
            quantize_int8(src, final, calibration, recipe=replace(recipe, exclude_nodes=tuple(chosen)), opset=opset,
                          progress=progress)
            meas["final_drop"] = drop(final)
            if meas["final_drop"] >= base:  # the surgery's estimate did not hold for the real model: keep none
                meas["note"] = f"keeping {len(chosen)} node(s) in float measured {meas['final_drop']:.5f}, no better"
                chosen = []
        if not chosen:
            final, meas["final_drop"] = q0, base
        if dest:
            with atomic_path(dest) as tmp:
                shutil.copyfile(final, tmp)
    meas["met"] = meas["final_drop"] <= max_drop
    meas["excluded"] = list(chosen)
    meas["seconds"] = time.perf_counter() - t0
    return chosen, meas
