"""The export, as a stage graph: torch -> ONNX -> simplify -> fp16 / int8 -> OpenVINO IR / TensorRT engine.

Every stage is a plain function of :mod:`edgecnn.exporters`; the build cache (:mod:`.cache`) reuses
what an earlier identical run built and records what fails; the verifier (:mod:`.verify`) measures
every artifact against the PyTorch original on held-out real photos; :mod:`.select` picks the default
where several routes were built. This module only says what is built from what.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import hostinfo
from ..artifact import Artifact
from ..backends import tensorrt as tensorrt_backend
from ..data import Preprocessing, calibration_batch, evaluation_batch
from ..exporters import openvino, tensorrt
from ..exporters.fp16 import convert_fp16
from ..exporters.int8 import TENSORRT_STAGE, Int8Recipe, quantize_int8, tensorrt_recipe
from ..exporters.sensitivity import fallback_for_budget
from ..exporters.simplify import simplify_onnx
from ..exporters.torch_onnx import export_onnx
from ..fileio import locked, sha256_file
from ..manifest import Manifest, build_key
from ..models import create_model, preprocessing
from ..results import ArtifactResult
from .cache import BuildCache
from .config import ExportConfig, Plan
from .select import flag_slower_int8, p50, select_default
from .verify import Verifier

SENSITIVITY_IMAGES = 64
OPENVINO_INT8_ROUTES = ("openvino-int8-qdq", "openvino-int8-nncf")
TENSORRT_DEVICE = 0  # the CUDA device engines are built on (build_engine's default)


@dataclass
class ExportResult:
    out_dir: Path
    manifest: Manifest
    missing_targets: dict[str, str]
    messages: list[str]

    @property
    def passed(self) -> bool:
        return self.manifest.passed()


def run_export(cfg: ExportConfig, *, log: Callable[[str], None] = print) -> ExportResult:
    """Build, verify and record every artifact ``cfg`` asks for, into ``cfg.out_dir``."""
    plan = cfg.resolve()
    prep = preprocessing(plan.spec, plan.resolution, cfg.weights)
    # Read the images before any heavy work: bad calibration data should fail in a second.
    calib = calibration_batch(prep, cfg.calib_size, folder=cfg.calib_dir) if plan.recipe else None
    eval_x = evaluation_batch(prep, cfg.eval_size, folder=cfg.eval_dir)
    out = cfg.out_dir.resolve()
    with locked(out):
        export = _Export(plan, prep, calib, eval_x, out, log)
        manifest = export.run()
        manifest.save(out)
        export.cache.finish()
    return ExportResult(out, manifest, plan.missing, export.messages)


class _Export:
    """One export run: the stage graph over a build cache and a verifier."""

    def __init__(self, plan: Plan, prep: Preprocessing, calib: np.ndarray | None, eval_x: np.ndarray, out: Path,
                 log: Callable[[str], None]) -> None:
        cfg = plan.cfg
        self.plan, self.cfg, self.prep, self.calib, self.out, self.log = plan, cfg, prep, calib, out, log
        self.messages: list[str] = []
        self.cache = BuildCache(out, force=cfg.force, log=log, say=self.say)
        model = create_model(cfg.model, weights=cfg.weights, num_classes=cfg.num_classes, seed=cfg.seed)
        self.verify = Verifier(model, eval_x, batch=cfg.batch, threads=cfg.threads, latency=cfg.latency,
                               random_weights=cfg.weights is None)
        self.calib_key = build_key(calib.shape, _array_digest(calib)) if calib is not None else None
        self.selected: dict[str, dict] = {}

    # ---- the graph ---------------------------------------------------------------------
    def run(self) -> Manifest:
        cfg, plan = self.cfg, self.plan
        weights = _weights_identity(cfg, plan)
        fp32 = self.cache.stage("export", (cfg.model, weights, cfg.num_classes, plan.input_shape, cfg.dynamic_batch,
                                           plan.opset, cfg.exporter, _versions("torch", "onnx")),
                                lambda: export_onnx(self.verify.model, self.out / "model.onnx",
                                                    input_shape=plan.input_shape, opset=plan.opset,
                                                    dynamic_batch=cfg.dynamic_batch, exporter=cfg.exporter),
                                optional=False)
        self.verify.evaluate(fp32)
        base = self.simplify(fp32)
        fp16 = self.fp16(base) if cfg.fp16 else None
        int8 = self.int8(base, "int8", plan.recipe) if plan.recipe else None
        if "openvino" in plan.targets:
            self.openvino(base, fp16 is not None, int8)
        if "tensorrt" in plan.targets:
            # Its own QDQ model (symmetric, float biases and outputs), whatever the ONNX Runtime preset.
            sym = self.int8(base, TENSORRT_STAGE, tensorrt_recipe(plan.recipe)) if plan.recipe else None
            self.tensorrt([a for a in (base, fp16, sym) if a is not None])
        return self.manifest(weights)

    def manifest(self, weights: dict) -> Manifest:
        results = dict(self.verify.results)
        for stage, why in self.cache.failed.items():
            results[stage] = ArtifactResult.failed(stage, _precision(stage), why)
        alternatives = {c for sel in self.selected.values() if sel["default"] for c in sel["candidates"]
                        if c != sel["default"]}
        for key in alternatives & results.keys():
            results[key].alternative = True
        for warning in flag_slower_int8(self.cache.artifacts, results):
            self.say(warning)
        cfg, plan = self.cfg, self.plan
        return Manifest(model=cfg.model, weights=weights, input_shape=list(plan.input_shape),
                        dynamic_batch=plan.dynamic_batch, preprocessing=self.prep.to_dict(), config=cfg.to_dict(plan),
                        versions=hostinfo.versions(), host=hostinfo.host(), artifacts=list(self.cache.artifacts),
                        results=results, selected=self.selected,
                        notes=self.messages + [f"{t}: not built ({why})" for t, why in plan.missing.items()])

    # ---- stages ------------------------------------------------------------------------
    def simplify(self, fp32: Artifact) -> Artifact:
        why: list[str] = []

        def make() -> Artifact | None:
            art, reason = simplify_onnx(fp32, self.out / "model.sim.onnx")
            why.append(reason)
            return art

        sim = self.cache.stage("simplify", (fp32.sha256, _versions("onnxsim")), make)
        if sim is None:
            if why:
                self.say(f"simplify: kept the unsimplified model ({why[0]})")
            return fp32
        if not self.verify.evaluate(sim).ok:
            self.say("simplify: onnxsim changed the outputs; kept the unsimplified model")
            self.cache.drop(sim)
            self.verify.forget(sim)
            return fp32
        return sim

    def fp16(self, base: Artifact) -> Artifact | None:
        art = self.cache.stage("fp16", (base.sha256, _versions("onnxruntime")),
                               lambda: convert_fp16(base, self.out / "model.fp16.onnx"))
        if art is not None:
            self.verify.evaluate(art)
        return art

    def int8(self, base: Artifact, stage: str, recipe: Int8Recipe) -> Artifact | None:
        dest = self.out / ("model.int8.onnx" if stage == "int8" else f"model.{stage}.onnx")
        parts = (base.sha256, recipe.to_dict(), self.cfg.max_drop, self.calib_key, _versions("onnxruntime"))

        def make() -> Artifact:
            r, note = recipe, f"preset {recipe.preset}"
            if self.cfg.max_drop is not None:
                r, note = self.sensitivity_fallback(base, stage, recipe, note)
            art = quantize_int8(base, dest, self.calib, recipe=r, opset=self.plan.opset, progress=self.cfg.progress)
            return replace(art, stage=stage, notes=f"{art.notes}; {note}")

        art = self.cache.stage(stage, parts, make)
        if art is not None:
            self.verify.evaluate(art)
        return art

    def sensitivity_fallback(self, base: Artifact, stage: str, recipe: Int8Recipe, note: str) -> tuple[Int8Recipe, str]:
        """Keep the fewest layers in float that bring the int8 model within ``max_drop``.

        Judged on crops of the *calibration* photos (another seed), never on the held-out photos
        the parity table uses: the budget search must not tune itself to the check that reports it.
        """
        x = calibration_batch(self.prep, SENSITIVITY_IMAGES, folder=self.cfg.calib_dir, seed=7)
        chosen, meas = fallback_for_budget(base.path, self.calib, x, self.verify.original_logits(x), recipe=recipe,
                                           max_drop=self.cfg.max_drop, opset=self.plan.opset, threads=self.cfg.threads)
        summary = (f"sensitivity fallback: {len(chosen)} layer(s) kept in float, cosine drop "
                   f"{meas['baseline_drop']:.4f} -> {meas['final_drop']:.4f} (budget {self.cfg.max_drop:g}"
                   f"{'' if meas['met'] else ', NOT met'})")
        self.say(f"{stage}: {summary}")
        return replace(recipe, exclude_nodes=tuple(chosen)), f"{note}; {summary}"

    def openvino(self, base: Artifact, fp16: bool, int8: Artifact | None) -> None:
        ov, ir = _versions("openvino", "nncf"), self.out / "openvino"
        fp32 = self.cache.stage("openvino-fp32", (base.sha256, ov),
                                lambda: openvino.convert_ir(base, ir / "model.fp32.xml", precision="fp32"))
        if fp32 is not None:
            self.verify.evaluate(fp32)
        if fp16:
            art = self.cache.stage("openvino-fp16", (base.sha256, ov),
                                   lambda: openvino.convert_ir(base, ir / "model.fp16.xml", precision="fp16"))
            if art is not None:
                self.verify.evaluate(art)
        if self.plan.recipe is None:
            return
        # Two int8 routes; both are built and measured, the better working one becomes the default.
        qdq, nncf = OPENVINO_INT8_ROUTES
        routes = [
            self.cache.stage(qdq, (int8.sha256, ov),
                             lambda: openvino.convert_ir(int8, ir / "model.int8.qdq.xml", precision="int8"))
            if int8 is not None else None,
            self.cache.stage(nncf, (fp32.sha256, self.calib_key, ov),
                             lambda: openvino.quantize_nncf(fp32, ir / "model.int8.nncf.xml", self.calib))
            if fp32 is not None else None,
        ]
        candidates = {a.stage: self.verify.evaluate(a) for a in routes if a is not None}
        best = select_default(candidates, baseline_p50=p50(self.verify.results.get("openvino-fp32")))
        self.selected["openvino:int8"] = {"default": best, "candidates": list(OPENVINO_INT8_ROUTES)}
        for stage, res in candidates.items():  # a route that failed to build was reported by the cache
            if res.error is None:
                lat = p50(res)
                self.say(f"{stage}: cosine {res.parity.cosine:.4f}, top-1 on confident inputs "
                         f"{res.parity.top1_confident:.1%}" + (f", p50 {lat:.2f} ms" if lat else "")
                         + ("  <- default" if stage == best else ""))
            else:
                self.say(f"{stage}: failed: {res.error}")
        if best is None:
            self.say("openvino int8: no route works on this machine")

    def tensorrt(self, sources: list[Artifact]) -> None:
        # An engine runs only on the TensorRT and GPU that built it: both are in its build key, the version as
        # the module reports it (tensorrt-cu12/-cu13 wheels and JetPack's packages have no "tensorrt" metadata).
        target = tensorrt_backend.gpu_info(TENSORRT_DEVICE)
        for src in sources:
            stage = f"tensorrt-{src.precision}"
            parts = (src.sha256, target, self.plan.input_shape, self.plan.dynamic_batch)
            art = self.cache.stage(stage, parts, lambda: replace(
                tensorrt.build_engine(src, self.out / "tensorrt", input_shape=self.plan.input_shape,
                                      dynamic_batch=self.plan.dynamic_batch, device=TENSORRT_DEVICE,
                                      timing_cache=self.out / "tensorrt" / "timing.cache"), stage=stage))
            if art is not None:
                self.verify.evaluate(art)

    def say(self, msg: str) -> None:
        self.messages.append(msg)
        self.log(f"  {msg}")


def _precision(stage: str) -> str:
    return next((p for p in ("int8", "fp16") if p in stage), "fp32")


def _versions(*names: str) -> dict:
    v = hostinfo.versions()
    return {n: v.get(n) for n in names}


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _weights_identity(cfg: ExportConfig, plan: Plan) -> dict:
    if cfg.weights is None:
        return {"source": "random", "seed": cfg.seed}
    record = plan.spec.weights_named(cfg.weights)
    if record is not None:
        return {"source": record.name, "url": record.url, "sha256": record.sha256, "package": record.package}
    return {"source": str(cfg.weights), "sha256": sha256_file(cfg.weights) if Path(cfg.weights).is_file() else None}
