"""The export pipeline: torch -> ONNX -> simplify -> fp16 / int8 -> OpenVINO IR / TensorRT engine.

Every stage is a plain function in this package; this module only orders them, reuses what an
earlier identical run built (content-addressed build keys + sha256), and checks every artifact
against the PyTorch original on held-out real photos (the harness does the measuring).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError, EdgecnnError, MissingBackendError, first_line
from .artifact import Artifact
from .int8 import TENSORRT_PRESET, Int8Recipe, default_preset, get_preset
from .manifest import JOURNAL, Manifest, build_key, journal_load, journal_save, locked, reusable, try_load

TARGETS = ("onnxruntime", "openvino", "tensorrt")
DEFAULT_CALIB_SIZE = 128
DEFAULT_EVAL_SIZE = 32
DYNAMIC_MAX_BATCH = 32
SENSITIVITY_IMAGES = 64
# An int8 artifact whose quick p50 exceeds its fp32 sibling's (same runtime) by more than this is flagged as
# slower: the export's latency runs are short (20 timed runs), so a few percent is noise, 2x (ShuffleNet v1
# on ONNX Runtime with AMX, measured) is not.
SLOWER_MARGIN = 1.05


@dataclass
class ExportConfig:
    model: str
    weights: str | None = None
    num_classes: int | None = None
    resolution: int | None = None
    batch: int = 1
    dynamic_batch: bool = False
    opset: int | None = None
    fp16: bool = False
    int8: bool = False
    calib_dir: str | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    eval_dir: str | None = None
    eval_size: int = DEFAULT_EVAL_SIZE
    targets: tuple[str, ...] | None = None  # None: every installed backend
    out: str | None = None
    force: bool = False
    exporter: str = "torchscript"
    int8_preset: str | None = None  # None: chosen from this CPU's ISA (see exporters.int8)
    calib_method: str = "minmax"
    per_channel: bool = True
    bias_correction: bool = True  # int8: take the mean output shift of int8 weights out of the biases
    equalize: bool = False  # int8: cross-layer equalisation of Conv-Relu-Conv pairs before quantizing
    max_drop: float | None = None  # int8 budget, 1 - logit cosine: keep the fewest layers in float to meet it
    seed: int = 0
    threads: int | None = None
    latency: bool = True
    progress: bool = True

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("edgecnn_out") / self.model

    @property
    def preset(self) -> str:
        return self.int8_preset or default_preset()

    def recipe(self, preset: str | None = None) -> Int8Recipe:
        return replace(get_preset(preset or self.preset), calibration=self.calib_method, per_channel=self.per_channel,
                       bias_correction=self.bias_correction, equalize=self.equalize)


@dataclass
class ExportResult:
    out_dir: Path
    manifest: Manifest
    missing_targets: dict[str, str]
    messages: list[str]

    @property
    def passed(self) -> bool:
        return self.manifest.passed()


def resolve_targets(targets: tuple[str, ...] | None) -> tuple[list[str], dict[str, str]]:
    """Targets to build, and the missing ones with why (never silently dropped)."""
    from ..exporters.tensorrt import tensorrt_unavailable
    from ..runtimes.openvino import OpenVINORuntime

    why = {"onnxruntime": None, "openvino": OpenVINORuntime.available(), "tensorrt": tensorrt_unavailable()}
    asked = list(targets) if targets else list(TARGETS)
    unknown = [t for t in asked if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown target '{unknown[0]}'; targets are: {', '.join(TARGETS)}")
    build = [t for t in asked if why[t] is None]
    missing = {t: why[t] for t in asked if why[t] is not None}
    if targets and missing:  # asked for by name: that is an error, not a note
        t = next(iter(missing))
        raise MissingBackendError(t, extra=t, reason=missing[t])
    return build, missing


def validate(cfg: ExportConfig):
    from ..models import get_spec
    from .torch_onnx import check_opset

    spec = get_spec(cfg.model)
    if isinstance(cfg.batch, bool) or not isinstance(cfg.batch, int) or cfg.batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {cfg.batch!r}")
    if cfg.calib_size < 1 or cfg.eval_size < 1:
        raise ConfigError("calibration and evaluation sizes must be at least 1")
    opset = check_opset(cfg.opset, exporter=cfg.exporter)
    if cfg.int8:
        cfg.recipe()  # an unknown preset or calibration method fails here, before any work
    if cfg.max_drop is not None and not 0 < cfg.max_drop < 1:
        raise ConfigError(f"--max-drop is a fraction of logit cosine, between 0 and 1 (e.g. 0.01), got {cfg.max_drop}")
    return spec, spec.check_resolution(cfg.resolution), opset


def run_export(cfg: ExportConfig, *, log: Callable[[str], None] = print) -> ExportResult:
    from .. import hostinfo
    from ..data import Preprocessing, calibration_batch, evaluation_batch

    spec, resolution, opset = validate(cfg)
    targets, missing = resolve_targets(cfg.targets)
    prep = Preprocessing.for_spec(spec, resolution)
    # Read the images before any heavy work: bad calibration data should fail in a second.
    calib = calibration_batch(prep, cfg.calib_size, folder=cfg.calib_dir) if cfg.int8 else None
    eval_x = evaluation_batch(prep, cfg.eval_size, folder=cfg.eval_dir)
    out = cfg.out_dir.resolve()
    with locked(out):
        builder = _Builder(cfg, spec, resolution, opset, out, prep, calib, eval_x, targets, log)
        manifest = builder.run()
        manifest.versions = hostinfo.versions()
        manifest.host = hostinfo.host()
        manifest.notes = builder.messages + [f"{t}: not built ({why})" for t, why in missing.items()]
        manifest.save(out)
        (out / JOURNAL).unlink(missing_ok=True)
    return ExportResult(out, manifest, missing, builder.messages)


class _Builder:
    """One export run: holds the shared state so each stage method stays short."""

    def __init__(self, cfg, spec, resolution, opset, out, prep, calib, eval_x, targets, log) -> None:
        self.cfg, self.spec, self.opset, self.out, self.prep, self.log = cfg, spec, opset, out, prep, log
        self.calib, self.eval_x, self.targets = calib, eval_x, targets
        self.input_shape = (cfg.batch, spec.in_chans, resolution, resolution)
        self.earlier = try_load(out)  # what this folder held: its stale files are pruned even with --force
        self.journal = journal_load(out)  # what an interrupted run finished
        # what may be reused: the last complete run's artifacts, then an interrupted run's
        self.previous = [] if cfg.force else (self.earlier.artifacts if self.earlier else []) + self.journal
        self.calib_hash = build_key(calib.shape, _array_digest(calib)) if calib is not None else None
        self.artifacts: list[Artifact] = []
        self.results: dict[str, dict] = {}
        self.messages: list[str] = []
        self.selected: dict[str, dict] = {}
        self.failed: dict[str, str] = {}  # stage -> why it could not be built (never a default, never reused)

    # ---- bookkeeping -------------------------------------------------------------------
    def stage(self, key: str, parts: tuple, make: Callable[[], Artifact | None], *,
              optional: bool = True) -> Artifact | None:
        """Reuse the artifact for ``key`` if built from identical ``parts``, else ``make`` it.

        A derived stage (``optional``) that fails to build is recorded in :attr:`failed` with its one-line
        reason and the export goes on: the failure is shown, never a default, and fails the run unless a
        working candidate of its selection group replaces it. The first stage has no such luck."""
        bkey = build_key(key, *parts)
        old = reusable(self.previous, key, bkey)
        if old is not None:
            self.log(f"  {key}: reused ({old.path.name}, unchanged inputs)")
            art = old
        else:
            self.log(f"  {key}: building...")
            try:
                art = make()
            except EdgecnnError as e:
                if not optional:
                    raise
                self.failed[key] = first_line(e)
                self.say(f"{key}: failed: {self.failed[key]}")
                return None
            if art is None:
                return None
            art = _with(art, build_key=bkey)
        self.artifacts.append(art)
        journal_save(self.out, self.artifacts)
        return art

    def evaluate(self, art: Artifact) -> dict:
        from ..harness.check import evaluate_artifact

        res = evaluate_artifact(art, self.eval_x, self.reference, batch=self.cfg.batch, threads=self.cfg.threads,
                                latency=self.cfg.latency, random_weights=self.cfg.weights is None)
        self.results[art.key] = res
        return res

    # ---- the run -----------------------------------------------------------------------
    def run(self) -> Manifest:
        from ..harness.check import reference_logits
        from ..models import create_model
        from .torch_onnx import export_onnx

        cfg = self.cfg
        model = self.model = create_model(cfg.model, weights=cfg.weights, num_classes=cfg.num_classes, seed=cfg.seed)
        self.reference = reference_logits(model, self.eval_x)
        weights_id = _weights_identity(cfg, self.spec)
        base_parts = (cfg.model, weights_id, cfg.num_classes, self.input_shape, cfg.dynamic_batch,
                      self.opset, cfg.exporter, _versions("torch", "onnx"))
        onnx_fp32 = self.stage("export", base_parts, lambda: export_onnx(
            model, self.out / "model.onnx", input_shape=self.input_shape, opset=self.opset,
            dynamic_batch=cfg.dynamic_batch, exporter=cfg.exporter), optional=False)
        self.evaluate(onnx_fp32)
        base = self.simplify(onnx_fp32)
        derived = [base]
        if cfg.fp16:
            from .fp16 import convert_fp16

            derived.append(self.stage("fp16", (base.sha256, _versions("onnxruntime")),
                                      lambda: convert_fp16(base, self.out / "model.fp16.onnx")))
        if cfg.int8:
            derived.append(self.int8(base, "int8", cfg.preset))
        derived = [a for a in derived if a is not None]
        for art in derived[1:]:
            self.evaluate(art)
        if "openvino" in self.targets:
            self.openvino(derived)
        if "tensorrt" in self.targets:
            trt_sources = list(derived)
            if cfg.int8 and cfg.preset != TENSORRT_PRESET:  # TensorRT needs zero-point-0 int8 activations
                trt_sources = [a for a in derived if a.precision != "int8"]
                sym = self.int8(base, f"int8-{TENSORRT_PRESET}", TENSORRT_PRESET)
                if sym is not None:
                    self.evaluate(sym)
                    trt_sources.append(sym)
            self.tensorrt(trt_sources)
        self.warn_slower_int8()
        self.prune()
        return Manifest(model=cfg.model, weights=weights_id, input_shape=list(self.input_shape),
                        dynamic_batch=DYNAMIC_MAX_BATCH if cfg.dynamic_batch else None,
                        preprocessing=self.prep.to_dict(), config=_config_dict(cfg, self.opset), versions={}, host={},
                        artifacts=self.artifacts, results=self.results, selected=self.selected, failed=self.failed)

    def simplify(self, onnx_fp32: Artifact) -> Artifact:
        from .simplify import simplify_onnx

        why: list[str] = []

        def make() -> Artifact | None:
            art, reason = simplify_onnx(onnx_fp32, self.out / "model.sim.onnx")
            why.append(reason)
            return art

        sim = self.stage("simplify", (onnx_fp32.sha256, _versions("onnxsim")), make)
        if sim is None:
            self.say(f"simplify: kept the unsimplified model ({why[0]})")
            return onnx_fp32
        if not self.evaluate(sim)["parity"]["passed"]:
            self.say("simplify: onnxsim changed the outputs; kept the unsimplified model")
            self.artifacts.remove(sim)
            del self.results[sim.key]
            return onnx_fp32
        return sim

    def int8(self, base: Artifact, stage: str, preset: str) -> Artifact:
        from .int8 import quantize_int8

        recipe = self.cfg.recipe(preset)
        dest = self.out / ("model.int8.onnx" if stage == "int8" else f"model.{stage}.onnx")
        parts = (base.sha256, recipe.to_dict(), self.cfg.max_drop, self.calib_hash, _versions("onnxruntime"))

        def make() -> Artifact:
            r, note = recipe, f"preset {preset}"
            if self.cfg.max_drop is not None:
                r, note = self.sensitivity_fallback(base, stage, recipe, note)
            art = quantize_int8(base, dest, self.calib, recipe=r, opset=self.opset, progress=self.cfg.progress)
            return _with(art, stage=stage, notes=f"{art.notes}; {note}")

        return self.stage(stage, parts, make)

    def sensitivity_fallback(self, base: Artifact, stage: str, recipe: Int8Recipe, note: str) -> tuple[Int8Recipe, str]:
        """Keep the fewest layers in float that bring the int8 model within ``max_drop``.

        Judged on crops of the *calibration* photos (another seed), never on the held-out photos
        the parity table uses: the budget search must not tune itself to the check that reports it.
        """
        from ..data import calibration_batch
        from ..harness.check import reference_logits
        from .sensitivity import fallback_for_budget

        x = calibration_batch(self.prep, SENSITIVITY_IMAGES, folder=self.cfg.calib_dir, seed=7)
        chosen, meas = fallback_for_budget(base.path, self.calib, x, reference_logits(self.model, x), recipe=recipe,
                                           max_drop=self.cfg.max_drop, opset=self.opset, threads=self.cfg.threads)
        summary = (f"sensitivity fallback: {len(chosen)} layer(s) kept in float, cosine drop "
                   f"{meas['baseline_drop']:.4f} -> {meas['final_drop']:.4f} (budget {self.cfg.max_drop:g}"
                   f"{'' if meas['met'] else ', NOT met'})")
        self.say(f"{stage}: {summary}")
        return replace(recipe, exclude_nodes=tuple(chosen)), f"{note}; {summary}"

    def openvino(self, onnx_artifacts: list[Artifact]) -> None:
        from .openvino import convert_ir, quantize_nncf

        ov = _versions("openvino", "nncf")
        by_precision = {a.precision: a for a in onnx_artifacts}
        ir = self.out / "openvino"
        fp32 = self.stage("openvino-fp32", (by_precision["fp32"].sha256, ov),
                          lambda: convert_ir(by_precision["fp32"], ir / "model.fp32.xml", precision="fp32"))
        if fp32 is not None:
            self.evaluate(fp32)
        if "fp16" in by_precision:
            fp16 = self.stage("openvino-fp16", (by_precision["fp32"].sha256, ov),
                              lambda: convert_ir(by_precision["fp32"], ir / "model.fp16.xml", precision="fp16"))
            if fp16 is not None:
                self.evaluate(fp16)
        if not self.cfg.int8:
            return
        # Two int8 routes; both are built and measured, the better working one becomes the default.
        routes = ["openvino-int8-qdq", "openvino-int8-nncf"]
        qdq = by_precision.get("int8")
        built = [
            self.stage(routes[0], (qdq.sha256, ov), lambda: convert_ir(qdq, ir / "model.int8.qdq.xml",
                                                                       precision="int8")) if qdq else None,
            self.stage(routes[1], (fp32.sha256, self.calib_hash, ov),
                       lambda: quantize_nncf(fp32, ir / "model.int8.nncf.xml", self.calib)) if fp32 else None,
        ]
        for art in built:
            if art is not None:
                self.evaluate(art)
        baseline = _p50(self.results.get(fp32.key)) if fp32 is not None else None
        candidates = {a.stage: self.results[a.key] for a in built if a is not None}
        best = select_default(candidates, baseline_p50=baseline)
        self.selected["openvino:int8"] = {"default": best, "candidates": routes}
        for stage in routes:
            if stage in candidates and "error" not in candidates[stage]:
                res = candidates[stage]
                lat = _p50(res)
                self.say(f"{stage}: cosine {res['parity']['cosine']:.4f}, top-1 on confident inputs "
                         f"{res['parity']['top1_confident']:.1%}" + (f", p50 {lat:.2f} ms" if lat else "")
                         + ("  <- default" if stage == best else ""))
            else:
                why = candidates[stage]["error"] if stage in candidates else self.failed.get(stage, "not built")
                self.say(f"{stage}: failed: {why}")
        if best is None:
            self.say("openvino int8: no route works on this machine")

    def warn_slower_int8(self) -> None:
        """Say so when an int8 artifact runs slower than the fp32 one on the same runtime (same quick timing)."""
        fp32 = {}
        for art in self.artifacts:
            if art.precision == "fp32" and art.runtime and _p50(self.results.get(art.key)):
                fp32[art.runtime] = art  # the last fp32 stage of each runtime: the simplified/compiled one
        for art in self.artifacts:
            base = fp32.get(art.runtime)
            res = self.results.get(art.key)
            if art.precision != "int8" or base is None or not _p50(res):
                continue
            ratio = _p50(res) / _p50(self.results[base.key])
            if ratio > SLOWER_MARGIN:
                res["slower_than_fp32"] = round(ratio, 2)
                self.say(f"{art.stage}: warning: int8 runs {ratio:.2f}x slower than fp32 ({base.stage}) on "
                         f"{art.runtime} here ({_p50(res):.2f} vs {_p50(self.results[base.key]):.2f} ms p50)")

    def tensorrt(self, onnx_artifacts: list[Artifact]) -> None:
        from .tensorrt import build_engine

        for src in onnx_artifacts:
            stage = f"tensorrt-{src.precision}"
            art = self.stage(stage, (src.sha256, _versions("tensorrt"), self.input_shape), lambda: _with(
                build_engine(src, self.out / "tensorrt", input_shape=self.input_shape,
                             dynamic_batch=DYNAMIC_MAX_BATCH if self.cfg.dynamic_batch else None,
                             timing_cache=self.out / "tensorrt" / "timing.cache"), stage=stage))
            if art is not None:
                self.evaluate(art)

    def prune(self) -> None:
        """Remove files that an earlier run in this folder listed and this run does not."""
        keep = {a.path for a in self.artifacts}
        for old in (self.earlier.artifacts if self.earlier else []) + self.journal:
            if old.path not in keep and self.out in old.path.parents:
                old.path.unlink(missing_ok=True)
                if old.format == "openvino":
                    old.path.with_suffix(".bin").unlink(missing_ok=True)

    def say(self, msg: str) -> None:
        self.messages.append(msg)
        self.log(f"  {msg}")


def _p50(result: dict | None) -> float | None:
    return ((result or {}).get("latency") or {}).get("p50_ms")


def select_default(candidates: dict[str, dict], *, baseline_p50: float | None = None) -> str | None:
    """The stage to deploy among ``candidates`` (stage -> result), or None when none works.

    A candidate that failed to load, compile or run is never chosen. Among the working ones: fidelity first
    (passes its tolerance), then not slower than the fp32 baseline on the same runtime (an int8 model slower
    than fp32 has no reason to be deployed where another is not), then cosine to 3 decimals, then speed.
    """
    def score(item: tuple[str, dict]) -> tuple:
        p, lat = item[1]["parity"], _p50(item[1])
        slower = baseline_p50 is not None and lat is not None and lat > SLOWER_MARGIN * baseline_p50
        return (bool(p.get("passed")), not slower, round(p["cosine"], 3), -(lat or 0.0))

    working = [(k, r) for k, r in candidates.items() if "error" not in r and np.isfinite(r["parity"].get("cosine", np.nan))]
    return max(working, key=score)[0] if working else None


def _with(art: Artifact, **changes) -> Artifact:
    return Artifact(**{**asdict(art), **changes})


def _versions(*names: str) -> dict:
    from .. import hostinfo

    v = hostinfo.versions()
    return {n: v.get(n) for n in names}


def _array_digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _weights_identity(cfg: ExportConfig, spec) -> dict:
    from ..weights import sha256_file

    if cfg.weights is None:
        return {"source": "random", "seed": cfg.seed}
    if cfg.weights == "imagenet":
        w = spec.weights
        return {"source": "imagenet", "url": w.url if w else None, "sha256": w.sha256 if w else None,
                "package": w.package if w else None}
    return {"source": str(cfg.weights), "sha256": sha256_file(cfg.weights) if Path(cfg.weights).is_file() else None}


def _config_dict(cfg: ExportConfig, opset: int) -> dict:
    d = asdict(cfg)
    d.update(opset=opset, targets=list(cfg.targets) if cfg.targets else None)
    if cfg.int8:
        d.update(int8_preset=cfg.preset, int8_recipe=cfg.recipe().to_dict())
    return d
