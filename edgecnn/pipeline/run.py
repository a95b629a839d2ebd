"""The export, as a stage graph: torch -> ONNX -> simplify -> fp16 / int8 -> OpenVINO IR / TensorRT engine.

Every stage is a plain function of :mod:`edgecnn.exporters`; the build cache (:mod:`.cache`) reuses
what an earlier identical run built and records what fails; the verifier (:mod:`.verify`) measures
every artifact against the PyTorch original on held-out real photos; :mod:`.select` picks the default
where several routes were built. This module only says what is built from what.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import hostinfo
from ..artifact import Artifact
from ..backends import tensorrt as tensorrt_backend
from ..data import calibration_batch, imagefolder_classes, match_classes
from ..exporters import openvino, tensorrt
from ..exporters.fp16 import convert_fp16
from ..exporters.int8 import TENSORRT_STAGE, Int8Recipe, quantize_int8, tensorrt_recipe
from ..exporters.int8_range import describe_minus128
from ..exporters.metadata import embed_onnx, model_metadata
from ..exporters.onnx_import import import_onnx
from ..exporters.sensitivity import fallback_for_budget
from ..exporters.simplify import simplify_onnx
from ..exporters.torch_onnx import export_onnx
from ..fileio import locked, remove_stale_temps, sha256_file
from ..guard import own_dir, safe_text
from ..harness import evalset
from ..harness.check import EvalImages, eval_images
from ..manifest import Manifest, build_key, losers
from ..models.sources import module_identity
from ..results import ArtifactResult
from ..runtimes import load
from ..timing import measure
from ..errors import ConfigError
from .cache import BuildCache, claim_records
from .config import ExportConfig, Plan
from .select import ROUNDS, flag_slower_int8, p50, p50_noise, select_route
from .verify import Verifier

SENSITIVITY_IMAGES = 64
OPENVINO_INT8_ROUTES = (openvino.QDQ_ROUTE, openvino.NNCF_ROUTE, openvino.ARM_ROUTE)
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
    t0 = time.perf_counter()
    plan = cfg.resolve()
    claim_records(cfg.out_dir.resolve())  # a foreign manifest.json or SHA256SUMS stops it before any work
    for note in plan.notes:
        log(f"  {note}")
    said = len(plan.notes)
    original = plan.build_original()
    plan = plan.complete(original)
    plan.check_input(original)
    for note in plan.notes[said:]:
        log(f"  {note}")
    prep = plan.prep
    # Read the images before any artifact is built: bad data should fail before minutes of work.
    calib = calibration_batch(prep, cfg.calib_size, folder=cfg.calib_dir) if plan.recipe else None
    ev = eval_images(prep, cfg.eval_size, folder=cfg.eval_dir)
    verify = Verifier(original, ev.x, batch=plan.input_shape[0], threads=cfg.threads, latency=cfg.latency,
                      random_weights=plan.random_weights, tolerances=cfg.tolerances())
    labels, where = resolve_labels(plan, ev, verify.reference.shape[1])
    if where:
        log(f"  {where}")
    verify.label(ev.targets(labels, verify.reference.shape[1], hint="pass --labels FILE"))
    out = cfg.out_dir.resolve()
    with locked(out):
        for name in remove_stale_temps(out):
            log(f"  removed {safe_text(name)} (a temporary file left by a killed run)")
        export = _Export(plan, verify, ev, labels, calib, out, log)
        export.messages.extend(n for n in (*plan.notes, where) if n)
        manifest = export.run()
        manifest.timings["total_s"] = round(time.perf_counter() - t0, 3)
        manifest.save(out)
        export.cache.finish()
    return ExportResult(out, manifest, plan.missing, export.messages)


def export(model, *, log: Callable[[str], None] = print, **options) -> ExportResult:
    """The Python API for any model: ``edgecnn.export(module, input_shape=(1, 3, 224, 224),
    preprocessing={"mean": ..., "std": ..., "resize": 256, "crop": 224}, labels=[...], int8=True,
    calib_dir="data/train", eval_dir="data/val")``. ``model`` is an nn.Module, a zoo name, a
    ``file.py:factory``, a ``.pt2`` or an ``.onnx``; ``options`` are :class:`ExportConfig`'s fields."""
    return run_export(ExportConfig(model=model, **options), log=log)


def resolve_labels(plan: Plan, ev: EvalImages, n_outputs: int) -> tuple[list[str] | None, str | None]:
    """The class name of each output, and where it came from: --labels, else the class folders of the
    evaluation or calibration ImageFolder, else the weights record's label set. A labels list whose
    length is not the model's output count, or a class folder not among the labels, is an error."""
    cfg = plan.cfg
    calib_classes = imagefolder_classes(cfg.calib_dir) if cfg.calib_dir and plan.recipe else None
    if plan.given_labels is not None:
        labels, said = plan.given_labels, f"labels: {len(plan.given_labels)} from " + (
            str(cfg.labels) if isinstance(cfg.labels, (str, Path)) else "the list given")
        if len(labels) != n_outputs:
            raise ConfigError(f"the labels ({'file ' + str(cfg.labels) if isinstance(cfg.labels, (str, Path)) else 'list'})"
                              f" have {len(labels)} names but the model has {n_outputs} outputs")
        if calib_classes is not None:  # calibrating on data of other classes than the labels: a mix-up
            match_classes(calib_classes, labels, where=str(cfg.calib_dir))
        return labels, said
    for folder, classes in ((cfg.eval_dir, ev.folder_classes), (cfg.calib_dir, calib_classes)):
        if classes is not None and len(classes) == n_outputs:
            return list(classes), f"labels: the {len(classes)} class folders of {folder} (sorted)"
    names = plan.labels_of_weights(n_outputs)
    if names is not None:
        return names, None
    return None, None

class _Export:
    """One export run: the stage graph over a build cache and a verifier."""

    def __init__(self, plan: Plan, verify: Verifier, ev: EvalImages, labels: list[str] | None,
                 calib: np.ndarray | None, out: Path, log: Callable[[str], None]) -> None:
        cfg = plan.cfg
        self.plan, self.cfg, self.prep, self.calib, self.out, self.log = plan, cfg, plan.prep, calib, out, log
        self.verify, self.ev, self.labels = verify, ev, labels
        self.messages: list[str] = []
        self.cache = BuildCache(out, force=cfg.force, log=log, say=self.say)
        self.calib_key = build_key(calib.shape, _array_digest(calib)) if calib is not None else None
        self.meta = model_metadata(labels, plan.prep.to_dict())  # type: ignore[union-attr]
        self.selected: dict[str, dict] = {}
        self.removed: dict[str, str] = {}  # stage -> why: a losing candidate that failed parity, removed

    def stage(self, key: str, parts: tuple, make: Callable[[], Artifact | None], **kw) -> Artifact | None:
        """A cache stage whose ONNX output carries the labels and preprocessing (part of its build key)."""
        def tagged() -> Artifact | None:
            art = make()
            return embed_onnx(art, self.meta) if art is not None and art.format == "onnx" else art

        return self.cache.stage(key, (*parts, self.meta), tagged, **kw)

    @staticmethod
    def _files(dest: Path) -> tuple[Path, ...]:
        """What writing ``dest`` writes: the file, and for an OpenVINO IR its .bin."""
        return (dest, dest.with_suffix(".bin")) if dest.suffix == ".xml" else (dest,)

    # ---- the graph ---------------------------------------------------------------------
    def run(self) -> Manifest:
        cfg, plan = self.cfg, self.plan
        weights = _weights_identity(plan, self.verify.model)
        if plan.source.kind == "onnx":
            make = lambda: import_onnx(plan.source.ref, self.out / "model.onnx",  # noqa: E731
                                       input_shape=plan.input_shape, dynamic_batch=cfg.dynamic_batch)
        else:
            make = lambda: export_onnx(self.verify.model, self.out / "model.onnx",  # noqa: E731
                                       input_shape=plan.input_shape, opset=plan.opset,
                                       dynamic_batch=cfg.dynamic_batch, exporter=cfg.exporter)
        fp32 = self.stage("export", (plan.source.ref, weights, plan.num_classes, plan.input_shape, cfg.dynamic_batch,
                                     plan.opset, cfg.exporter, _versions("torch", "onnx")), make, optional=False,
                          files=(self.out / "model.onnx",))
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
        for stage, why in {**self.cache.failed, **self.removed}.items():
            results[stage] = ArtifactResult.failed(stage, _precision(stage), why)
        alternatives = {c for sel in self.selected.values() if sel["default"] for c in losers(sel)}
        for key in alternatives & results.keys():
            results[key].alternative = True
        for warning in flag_slower_int8(self.cache.artifacts, results):
            self.say(warning)
        flagged = [(key, res.minus128) for key, res in results.items() if res.minus128]
        for i, (key, found) in enumerate(flagged):
            self.say(f"{key}: warning: {describe_minus128(found, reason=i == 0)}")
        cfg, plan = self.cfg, self.plan
        timings = {k: {"build_s": self.cache.seconds.get(k, 0.0), "evaluate_s": self.verify.seconds.get(k, 0.0)}
                   for k in dict.fromkeys([*self.cache.seconds, *self.verify.seconds])}
        evaluation = {"images": self.ev.description, "n": len(self.ev.x), "original": self.verify.original.runtime,
                      "accuracy": self.verify.original_accuracy}
        if (images := evalset.record(cfg.eval_dir, cfg.eval_size)) is not None:  # check judges on the same ones
            evaluation[evalset.KEY] = images
        return Manifest(model=plan.source.name, weights=weights, input_shape=list(plan.input_shape),
                        dynamic_batch=plan.dynamic_batch, preprocessing=self.prep.to_dict(), config=cfg.to_dict(plan),
                        versions=hostinfo.versions(), host=hostinfo.host(), artifacts=list(self.cache.artifacts),
                        results=results, selected=self.selected,
                        notes=self.messages + [f"{t}: not built ({why})" for t, why in plan.missing.items()],
                        source=plan.source.to_dict(), labels=self.labels, evaluation=evaluation, timings=timings)

    # ---- stages ------------------------------------------------------------------------
    def simplify(self, fp32: Artifact) -> Artifact:
        why: list[str] = []

        def make() -> Artifact | None:
            art, reason = simplify_onnx(fp32, self.out / "model.sim.onnx")
            why.append(reason)
            return art

        sim = self.stage("simplify", (fp32.sha256, _versions("onnxsim")), make, files=(self.out / "model.sim.onnx",))
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
        art = self.stage("fp16", (base.sha256, _versions("onnxruntime")),
                               lambda: convert_fp16(base, self.out / "model.fp16.onnx"),
                               files=(self.out / "model.fp16.onnx",))
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

        art = self.stage(stage, parts, make, files=(dest,))
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
                                           max_drop=self.cfg.max_drop, opset=self.plan.opset, threads=self.cfg.threads,
                                           exact=stage == TENSORRT_STAGE)  # TensorRT runs it, not this CPU's kernels
        summary = (f"sensitivity fallback: {len(chosen)} layer(s) kept in float, cosine drop "
                   f"{meas['baseline_drop']:.4f} -> {meas['final_drop']:.4f} (budget {self.cfg.max_drop:g}"
                   f"{'' if meas['met'] else ', NOT met'})")
        self.say(f"{stage}: {summary}")
        return replace(recipe, exclude_nodes=tuple(chosen)), f"{note}; {summary}"

    def openvino(self, base: Artifact, fp16: bool, int8: Artifact | None) -> None:
        ov, ir = _versions("openvino", "nncf"), own_dir(self.out, "openvino")
        meta, files = self.meta, self._files
        fp32 = self.stage("openvino-fp32", (base.sha256, ov),
                          lambda: openvino.convert_ir(base, ir / "model.fp32.xml", precision="fp32", metadata=meta),
                          files=files(ir / "model.fp32.xml"))
        if fp32 is not None:
            self.verify.evaluate(fp32)
        if fp16:
            art = self.stage("openvino-fp16", (base.sha256, ov),
                             lambda: openvino.convert_ir(base, ir / "model.fp16.xml", precision="fp16", metadata=meta),
                             files=files(ir / "model.fp16.xml"))
            if art is not None:
                self.verify.evaluate(art)
        if self.plan.recipe is None:
            return
        # Three int8 routes; all are built and measured, the better working one becomes this machine's default,
        # and the best working one made for the other architecture is recorded for it (exporters/openvino.py).
        qdq, nncf, s8s8 = OPENVINO_INT8_ROUTES
        routes = [
            self.stage(qdq, (int8.sha256, ov),
                       lambda: openvino.convert_ir(int8, ir / "model.int8.qdq.xml", precision="int8", metadata=meta),
                       files=files(ir / "model.int8.qdq.xml"))
            if int8 is not None else None,
            # the overflow fix NNCF gets depends on this CPU's ISA: part of what the IR is built from
            self.stage(nncf, (fp32.sha256, self.calib_key, ov, openvino.default_overflow_fix()),
                       lambda: openvino.quantize_nncf(fp32, ir / "model.int8.nncf.xml", self.calib, metadata=meta,
                                                              progress=self.cfg.progress),
                       files=files(ir / "model.int8.nncf.xml"))
            if fp32 is not None else None,
            self.stage(s8s8, (base.sha256, openvino.arm_recipe(self.plan.recipe).to_dict(), self.calib_key, ov,
                              _versions("onnxruntime"), self.plan.opset),
                       lambda: openvino.quantize_s8s8(base, ir / "model.int8.s8s8.xml", self.calib,
                                                      recipe=self.plan.recipe, opset=self.plan.opset, metadata=meta,
                                                      progress=self.cfg.progress),
                       files=files(ir / "model.int8.s8s8.xml")),
        ]
        built = {a.stage: a for a in routes if a is not None}
        candidates = {stage: self.verify.evaluate(a) for stage, a in built.items()}
        fp32_result = self.verify.results.get("openvino-fp32")
        best, rule = select_route(candidates, order=OPENVINO_INT8_ROUTES, baseline_p50=p50(fp32_result),
                                  baseline_noise=p50_noise(fp32_result),
                                  confirm=lambda a, b: self.alternating_p50s(built[a], built[b]))
        targets = self.route_targets(candidates, best)
        default, why = self.portable_default(candidates, best, rule, targets["targets"])
        self.selected["openvino:int8"] = {"default": default, "candidates": list(OPENVINO_INT8_ROUTES), "rule": why,
                                          **targets}
        picks = {v: arch for arch, v in targets["targets"].items() if v is not None and v != default}
        for stage, res in candidates.items():  # a route that failed to build was reported by the cache
            if res.error is None:
                lat = p50(res)
                p = res.parity  # no confident input: no agreement figure (never "nan%")
                top1 = p.agreement() if p.n_confident else "- (no confident input)"
                cosine = f"{p.cosine:.4f}" if p.cosine == p.cosine else "-"  # NaN: outputs of the wrong shape
                self.say(f"{stage}: cosine {cosine}, top-1 on confident inputs {top1}"
                         + (f", p50 {lat:.2f} ms" if lat else "")
                         + ("  <- default" if stage == default else "")
                         + (f"  <- {picks[stage]} CPUs" if stage in picks else ""))
            else:
                self.say(f"{stage}: failed: {res.error}")
        if default is None:
            self.say("openvino int8: no route works on this machine")
            return
        self.say(f"openvino int8: default {default} ({why})")
        if candidates[default].ok:
            keep = {default, *picks}
            for stage, res in candidates.items():
                if stage not in keep and not res.ok:
                    self.remove_loser(built[stage], res, default)

    def route_targets(self, candidates: dict[str, ArtifactResult], best: str | None) -> dict:
        """Which route each CPU architecture deploys: this machine's is ``best``; another's is chosen by the same
        rule among the working routes made for it, by fidelity measured here and then the fixed order (speed
        measured here says nothing about another CPU). ``route_targets``: the architectures each route is for."""
        here = openvino.target_arch()
        targets = {here: best}
        for arch in sorted({a for archs in openvino.ROUTE_TARGETS.values() for a in archs} - {here}):
            mine = {k: r for k, r in candidates.items() if arch in openvino.ROUTE_TARGETS.get(k, ()) and r.ok}
            targets[arch] = select_route(mine, order=OPENVINO_INT8_ROUTES)[0]
            if targets[arch] is not None:
                self.say(f"openvino int8 for {arch.upper()} CPUs: {targets[arch]} (the route that compiles there)")
        return {"targets": targets, "route_targets": {k: list(v) for k, v in openvino.ROUTE_TARGETS.items()}}

    @staticmethod
    def portable_default(candidates: dict[str, ArtifactResult], best: str | None, rule: str,
                         targets: dict[str, str | None]) -> tuple[str | None, str]:
        """The group's default and why: a route that runs on every CPU architecture (a folder moves: an export made
        on x86 is deployed on a Jetson or a Pi, where a u8-activation IR does not compile), so ``best`` (this
        machine's choice) when it is made for every architecture, else a passing route chosen for another
        architecture that is made for all of them; else ``best`` (no passing route runs everywhere). The route
        this machine runs stays recorded in ``targets`` under its architecture, and is what it deploys."""
        archs = set(targets)

        def everywhere(stage: str) -> bool:
            return set(openvino.ROUTE_TARGETS.get(stage, ())) >= archs

        if best is None or everywhere(best):
            return best, rule
        portable = [k for k in OPENVINO_INT8_ROUTES if k in targets.values() and everywhere(k) and candidates[k].ok]
        if not portable:
            return best, rule
        here = next(arch for arch, v in targets.items() if v == best)
        return portable[0], (f"the passing route made for every CPU architecture: {', '.join(sorted(archs))}; "
                             f"{here} CPUs (this machine) get {best}: {rule}")

    def remove_loser(self, art: Artifact, res: ArtifactResult, best: str) -> None:
        """A losing candidate that fails (parity, or could not load or run here) is not kept posing as a harmless
        alternative: its files are removed (this run wrote them) and it is recorded as a failed result with no
        artifact. The group's passing default stands for it, so the export passes, and ``check`` (which judges
        every file present) and ``predict`` never meet a failing file in the folder."""
        why = res.error or f"fails parity ({'; '.join(res.parity.failures)})"
        why = f"removed, lost to {best}: {why}"
        self.cache.drop(art)
        self.verify.forget(art)
        self.removed[art.key] = why
        self.say(f"{art.stage}: {why}")

    def alternating_p50s(self, a: Artifact, b: Artifact) -> list[tuple[float, float]]:
        """The p50s of ``a`` and ``b`` in :data:`ROUNDS` rounds, each a block of runs of one of them, the order
        swapped every round: a load that changes while they are timed falls on both alike."""
        v = self.verify
        x = v.x[:v.batch] if len(v.x) >= v.batch else np.repeat(v.x[:1], v.batch, 0)
        rounds = []
        with load(a, threads=v.threads) as ra, load(b, threads=v.threads) as rb:
            for i in range(ROUNDS):
                first, second = (ra, rb) if i % 2 == 0 else (rb, ra)
                t1, t2 = (measure(rt.run, x, warmup=2, iterations=10).p50_ms for rt in (first, second))
                rounds.append((t1, t2) if i % 2 == 0 else (t2, t1))
        return rounds

    def tensorrt(self, sources: list[Artifact]) -> None:
        # An engine runs only on the TensorRT and GPU that built it: both are in its build key, the version as
        # the module reports it (tensorrt-cu12/-cu13 wheels and JetPack's packages have no "tensorrt" metadata).
        target = tensorrt_backend.gpu_info(TENSORRT_DEVICE)
        engines = own_dir(self.out, "tensorrt")
        for src in sources:
            stage = f"tensorrt-{src.precision}"
            parts = (src.sha256, target, self.plan.input_shape, self.plan.dynamic_batch)
            art = self.cache.stage(stage, parts, lambda: replace(
                tensorrt.build_engine(src, self.out / "tensorrt", input_shape=self.plan.input_shape,
                                      dynamic_batch=self.plan.dynamic_batch, device=TENSORRT_DEVICE,
                                      timing_cache=self.out / "tensorrt" / "timing.cache"), stage=stage),
                                  files=(engine := engines / f"model.{src.precision}.engine",
                                         tensorrt_backend.sidecar_path(engine), engines / "timing.cache"))
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


def _weights_identity(plan: Plan, model) -> dict:
    """What the original's weights are, exactly: the build key of the export stage and the manifest's record."""
    source = plan.source
    if source.kind in ("program", "onnx"):
        return {"source": source.kind, "path": source.ref, "sha256": source.sha256}
    if source.kind in ("factory", "module"):  # the factory may load any checkpoint: the weights themselves
        return {"source": source.kind, "ref": source.ref, "sha256": source.sha256, "args": dict(source.args),
                "module": module_identity(model)}
    weights = plan.weights
    if weights is None:
        return {"source": "random", "seed": plan.cfg.seed}
    record = plan.spec.weights_named(weights) if plan.spec and isinstance(weights, str) else None
    if record is not None:
        return {"source": record.name, "url": record.url, "sha256": record.sha256, "package": record.package}
    return {"source": str(weights), "sha256": sha256_file(weights) if Path(weights).is_file() else None}
