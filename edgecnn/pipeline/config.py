"""What an export is asked to do: :class:`ExportConfig`, checked and resolved before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch.nn as nn

from .. import backends
from ..data import Preprocessing, class_names, find_images, read_labels
from ..errors import ConfigError
from ..guard import check_limit, safe_text
from ..exporters.int8 import Int8Recipe, recipe_for
from ..exporters.onnx_import import inspect_onnx
from ..exporters.torch_onnx import check_opset
from ..harness.common import Original, build_original
from ..models import ModelSpec, get_spec, preprocessing
from ..models._factory import RANDOM, checkpoint_classes, default_weights
from ..models._spec import IMAGENET_MEAN, IMAGENET_STD
from ..manifest import MANIFEST, try_load
from ..models.mistakes import check_input
from ..models.sources import (ModelSource, Program, code_roots, describe, module_defaults, parse_source,
                              source_name)
from ..parity import int8_tolerance

DEFAULT_CALIB_SIZE = 128
DEFAULT_EVAL_SIZE = 32
DYNAMIC_MAX_BATCH = 32
# TensorRT 10's ONNX parser documents opsets 9 to 20 (onnx-tensorrt docs/operators.md, 10.0); later 10.x
# releases read more, but 10.3 is what JetPack 6.1 and later have, so a TensorRT target caps the opset here.
TENSORRT_MAX_OPSET = 20


@dataclass
class ExportConfig:
    """One export. ``None`` means "the default", resolved in one place (:meth:`resolve`).

    ``model``: a zoo name, ``file.py:factory`` / ``package.module:factory`` (called with ``model_args``),
    a ``.pt2`` (torch.export) or ``.onnx`` file, or an ``nn.Module`` (models.sources).
    ``weights`` (zoo models): ``None`` -> the published ImageNet weights where they are installed, cached
    or downloadable, else a seeded random init (said in the output); ``"random"``, ``"imagenet"`` or a path.
    ``input_shape`` (N, C, H, W): where the model does not say (factories, modules, an ONNX with free
    dimensions). Preprocessing: the weights record's or the model's own, overridden by ``preprocessing``
    (a :class:`~edgecnn.data.Preprocessing` or a dict of mean/std/resize/crop) and by ``mean``/``std``/
    ``resize``/``crop``. ``labels``: a file (one name per line) or a list; else an ImageFolder's class
    folders (``eval_dir``, then ``calib_dir``), else the weights record's label set. ``out``: default
    ``edgecnn_out/`` + :func:`~edgecnn.models.sources.source_name`; ``force`` rebuilds every artifact and lets
    this source replace another source's export there (:func:`folder_holds_another`).
    """

    model: Any
    weights: str | None = None
    num_classes: int | None = None
    resolution: int | None = None
    batch: int = 1
    dynamic_batch: bool = False
    opset: int | None = None
    fp16: bool = False
    # int8: False (none), True (this CPU's default recipe: exporters.int8.recipe_for) or a recipe
    int8: bool | Int8Recipe = False
    max_drop: float | None = None  # int8 budget, 1 - logit cosine: keep the fewest layers in float to meet it
    calib_dir: str | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    eval_dir: str | None = None
    eval_size: int = DEFAULT_EVAL_SIZE
    targets: tuple[str, ...] | None = None  # None: every installed backend
    out: str | None = None
    force: bool = False
    exporter: str = "torchscript"
    seed: int = 0
    threads: int | None = None
    latency: bool = True
    progress: bool = True
    model_args: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    preprocessing: Any = None  # Preprocessing | dict | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    crop: int | None = None
    labels: str | Path | Sequence[str] | None = None
    int8_cosine: float | None = None  # the int8 rule's thresholds (None: 0.98 and 0.97), as check's --int8-*
    int8_top1: float | None = None

    def tolerances(self) -> dict:
        """Per-precision tolerances that replace the defaults (parity.int8_tolerance)."""
        int8 = int8_tolerance(cosine=self.int8_cosine, top1=self.int8_top1)
        return {"int8": int8} if int8 is not None else {}

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("edgecnn_out") / source_name(self.model)

    def resolve(self) -> "Plan":
        """Check every option and resolve every default; nothing heavy runs before this passes
        (the original is built afterwards: :meth:`Plan.build_original`, :meth:`Plan.complete`)."""
        self.check_limits()
        source = parse_source(self.model, self.model_args)
        held = folder_holds_another(self.out_dir, source, force=self.force)
        spec = get_spec(source.ref) if source.kind == "zoo" else None
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch must be a positive integer, got {self.batch!r}")
        if self.calib_size < 1 or self.eval_size < 1:
            raise ConfigError("calibration and evaluation sizes must be at least 1")
        if self.max_drop is not None and not 0 < self.max_drop < 1:
            raise ConfigError(f"--max-drop is a fraction of logit cosine, between 0 and 1 (e.g. 0.01), got {self.max_drop}")
        if self.input_shape is not None:
            _check_shape(self.input_shape)
        if self.dynamic_batch and self.batch > DYNAMIC_MAX_BATCH:  # the batch is the profile's optimum: within 1..max
            raise ConfigError(f"with a dynamic batch, batch (the size to optimise for) must be at most "
                              f"{DYNAMIC_MAX_BATCH}, got {self.batch}")
        recipe = self.int8 if isinstance(self.int8, Int8Recipe) else recipe_for() if self.int8 else None
        opset = check_opset(self.opset, exporter=self.exporter)
        targets, missing = resolve_targets(self.targets)
        if "tensorrt" in targets and opset > TENSORRT_MAX_OPSET:
            raise ConfigError(f"opset {opset} is above what TensorRT's ONNX parser supports ({TENSORRT_MAX_OPSET}); "
                              f"use --opset {TENSORRT_MAX_OPSET} or lower, or leave tensorrt out of --targets")
        labels = _given_labels(self.labels)
        self.tolerances()  # a threshold out of range (or NaN) fails here
        for folder in (self.calib_dir if recipe else None, self.eval_dir):
            if folder is not None:
                find_images(folder)  # a missing or empty folder fails here, in a second
        notes: list[str] = [held] if held else []
        if spec is None:
            if self.weights is not None or self.num_classes is not None:
                raise ConfigError(f"--weights and --num-classes apply to zoo models; {source.name} brings its own "
                                  "(a factory loads its checkpoint itself, a .pt2 or .onnx file holds its weights)")
            weights, num_classes = None, None
        else:
            if self.weights is None:
                weights, said = default_weights(spec)
                notes.append(said)
            elif self.weights == RANDOM:
                weights = None
                notes.append(f"weights: random init (seed {self.seed}), as asked; int8 fidelity is advisory")
            else:
                weights = self.weights
            num_classes, inferred = checkpoint_classes(spec, weights, self.num_classes, dict(source.args))
            if inferred:
                notes.append(inferred)
        return Plan(self, source, spec, opset, recipe, targets, missing, weights=weights, num_classes=num_classes,
                    given_labels=labels, notes=tuple(notes))

    def check_limits(self) -> None:
        """Sizes within :data:`edgecnn.guard.LIMITS`, before anything is built or read."""
        if isinstance(self.model, (str, Path)):
            check_limit("name", len(str(self.model)), "model name length")
        for name, value, what in (("resolution", self.resolution, "resolution"), ("batch", self.batch, "batch"),
                                  ("images", self.calib_size, "calib_size"), ("images", self.eval_size, "eval_size"),
                                  ("num_classes", self.num_classes, "num_classes"),
                                  ("resolution", self.resize, "resize"), ("resolution", self.crop, "crop")):
            if isinstance(value, int) and not isinstance(value, bool):
                check_limit(name, value, what)
        if self.input_shape is not None and len(self.input_shape) == 4 and all(isinstance(d, int) for d in self.input_shape):
            check_limit("batch", self.input_shape[0], "input batch")
            check_limit("resolution", max(self.input_shape[2:]), "input resolution")

    def to_dict(self, plan: "Plan") -> dict:
        """The config as recorded in manifest.json, defaults resolved."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(model=plan.source.ref, weights=plan.weights_record(),
                 num_classes=plan.num_classes, opset=plan.opset, targets=list(self.targets) if self.targets else None,
                 int8=plan.recipe is not None, input_shape=list(plan.input_shape) if plan.input_shape else None,
                 preprocessing=plan.prep.to_dict() if plan.prep else None,
                 labels=str(self.labels) if isinstance(self.labels, (str, Path)) else
                 ("list" if self.labels is not None else None),
                 **{k: list(getattr(self, k)) if getattr(self, k) is not None else None for k in ("mean", "std")})
        if plan.recipe is not None:
            d.update(int8_preset=plan.recipe.preset, int8_recipe=plan.recipe.to_dict())
        return {k: asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in d.items()}


@dataclass(frozen=True)
class Plan:
    """An :class:`ExportConfig` with every default resolved (``input_shape`` and ``prep`` once the
    original is built: :meth:`complete`)."""

    cfg: ExportConfig
    source: ModelSource
    spec: ModelSpec | None  # zoo models only
    opset: int
    recipe: Int8Recipe | None
    targets: tuple[str, ...]
    missing: dict[str, str]  # targets left out, and why (never silently dropped)
    weights: str | Path | None = None  # zoo: "imagenet" or a path; None: random init
    num_classes: int | None = None  # zoo: as given, read from the checkpoint, or the spec's
    given_labels: list[str] | None = None  # --labels
    notes: tuple[str, ...] = ()  # what was decided and should be said (weights, inferred classes...)
    input_shape: tuple[int, int, int, int] | None = None
    prep: Preprocessing | None = None

    @property
    def resolution(self) -> int:
        return self.input_shape[2]  # type: ignore[index]

    @property
    def dynamic_batch(self) -> int | None:
        return DYNAMIC_MAX_BATCH if self.cfg.dynamic_batch else None

    @property
    def random_weights(self) -> bool:
        """A zoo model with a random init: int8 results are shown, not judged."""
        return self.spec is not None and self.weights is None

    def build_original(self) -> Original:
        module = self.cfg.model if self.source.kind == "module" else None
        return build_original(self.source, weights=self.weights, num_classes=self.num_classes, seed=self.cfg.seed,
                              module=module)

    def complete(self, original: Original) -> "Plan":
        """The input shape and preprocessing, now that the original (which may say them) is built."""
        shape, said = _input_shape(self, original)
        prep, prep_note = _preprocessing(self, shape, original)
        return replace(self, input_shape=shape, prep=prep, notes=self.notes + tuple(n for n in (said, prep_note) if n))

    def check_input(self, original: Original) -> None:
        """A factory's or module's original run once on a blank image of the completed input shape: a wrong
        channel count or a too small image is one line before anything is built (a zoo model's shape is
        checked against its spec, a program's and an ONNX file's against their own input)."""
        if self.source.kind in ("factory", "module") and isinstance(original.target, nn.Module):
            check_input(original.target, self.input_shape, describe(self.source), code_roots(self.source))

    def weights_record(self) -> str | None:
        """The weights as manifest.json records them: a published set by name, a checkpoint by its absolute
        path (so check finds it from any directory, and compares its sha256 with the record)."""
        w = self.weights
        if w is None or (self.spec is not None and isinstance(w, str) and self.spec.weights_named(w) is not None):
            return None if w is None else str(w)
        return str(Path(w).expanduser().resolve())

    def labels_of_weights(self, n_outputs: int) -> list[str] | None:
        """The published checkpoint's class names (ImageNet-1k...), when its head is kept."""
        record = self.spec.weights_named(self.weights) if self.spec and isinstance(self.weights, str) else None
        names = class_names(record.classes) if record is not None else None
        return names if names is not None and len(names) == n_outputs else None


def folder_holds_another(out: Path, source: ModelSource, *, force: bool) -> str | None:
    """Stop (one line) before an export of ``source`` goes into a folder whose manifest.json records an
    export of another source (another zoo name, file, factory or class): it would replace that export's
    artifacts. ``force`` replaces them (only files edgecnn recorded there, as always); the note says so."""
    earlier = try_load(out) if (out / MANIFEST).is_file() else None
    if earlier is None:
        return None
    theirs = ModelSource.from_dict(earlier.source) if earlier.source else ModelSource("zoo", earlier.model, earlier.model)
    if (theirs.kind, theirs.ref) == (source.kind, source.ref):
        return None
    them, us = describe(theirs), describe(source)
    if them == us:  # two files of the same name in different folders
        them, us = theirs.ref, source.ref
    if not force:
        raise ConfigError(f"{out} holds an export of {safe_text(them)}; this is {safe_text(us)}: choose another "
                          "--out, or pass --force to replace that export")
    return f"--force: replacing the export of {safe_text(them)} in {out} with {safe_text(us)}'s"


def _check_shape(shape) -> None:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ConfigError(f"input shape must be 4 positive integers N,C,H,W (e.g. 1,3,224,224), got {shape!r}")


def _given_labels(labels) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        return read_labels(labels)
    names = list(labels)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError("labels must be a non-empty list of class names")
    return names


def _input_shape(plan: Plan, original: Original) -> tuple[tuple[int, int, int, int], str | None]:
    """N, C, H, W from the zoo spec, --input-shape, the program or ONNX file, or the model's own config."""
    cfg, given = plan.cfg, plan.cfg.input_shape
    if given is not None and cfg.batch not in (1, given[0]):
        raise ConfigError(f"--batch {cfg.batch} and --input-shape {','.join(map(str, given))} disagree")
    batch = given[0] if given is not None else cfg.batch
    if plan.spec is not None:
        spec = plan.spec
        if given is not None and (given[1] != spec.in_chans or given[2] != given[3]):
            raise ConfigError(f"{spec.name} takes {spec.in_chans}-channel square inputs, got --input-shape "
                              f"{','.join(map(str, given))}")
        if given is not None and cfg.resolution is not None and cfg.resolution != given[2]:
            raise ConfigError(f"--resolution {cfg.resolution} and --input-shape {','.join(map(str, given))} disagree")
        r = spec.check_resolution(given[2] if given is not None else cfg.resolution)
        return (batch, spec.in_chans, r, r), None
    if plan.source.kind in ("program", "onnx"):
        own = (original.target.input_shape if isinstance(original.target, Program)
               else inspect_onnx(plan.source.ref).input_shape)
        what = "program" if plan.source.kind == "program" else "ONNX file"
        fixed_batch = own[0] if isinstance(own[0], int) else None
        if fixed_batch is not None and (batch != fixed_batch or cfg.dynamic_batch):
            raise ConfigError(f"the {what} was made for batch {fixed_batch}; leave --batch/--dynamic-batch out or "
                              "make its batch dimension dynamic")
        if given is not None:
            if any(isinstance(o, int) and o != g for o, g in zip(own[1:], given[1:])):
                raise ConfigError(f"--input-shape {','.join(map(str, given))} does not fit the {what}'s input "
                                  f"{list(own)}")
            shape = given
        elif all(isinstance(d, int) for d in own[1:]):
            shape = (batch, *own[1:])
        else:
            raise ConfigError(f"the {what}'s input {list(own)} has free dimensions: pass --input-shape N,C,H,W")
        return _square(tuple(shape)), None  # type: ignore[arg-type]
    if given is not None:
        return _square(tuple(given)), None  # type: ignore[arg-type]
    size = module_defaults(original.target).get("input_size") if not isinstance(original.target, Path) else None
    if size and len(size) == 3:
        return _square((batch, *map(int, size))), f"input shape {batch},{','.join(map(str, size))} from the model's config"
    raise ConfigError(f"{plan.source.name} does not say what input it takes: pass --input-shape N,C,H,W "
                      "(e.g. 1,3,224,224)")


def _square(shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if shape[2] != shape[3]:
        raise ConfigError(f"input {shape[2]}x{shape[3]}: edgecnn takes square inputs (H = W) for now")
    return shape


def _preprocessing(plan: Plan, shape: tuple[int, int, int, int], original: Original) -> tuple[Preprocessing, str | None]:
    """The weights record's (zoo) or the model's own (timm's pretrained_cfg) preprocessing, else ImageNet's
    plain one (said), then what the config overrides."""
    cfg, (_, channels, r, _) = plan.cfg, shape
    note = None
    if plan.spec is not None:
        # A local checkpoint is most often a fine-tune of the published weights: it keeps their preprocessing
        # (Lite0's [-1, 1] inputs...), said in the output; --mean/--std/--resize/--crop set another.
        published = plan.spec.weights_named("imagenet")
        own = plan.weights is not None and plan.spec.weights_named(str(plan.weights)) is None
        base = preprocessing(plan.spec, r, "imagenet" if own and published else plan.weights)
        if own and published and (published.mean, published.std, published.crop_pct) != (None, None, None) \
                and cfg.preprocessing is None and cfg.mean is None:
            note = (f"preprocessing: {plan.spec.name}'s ImageNet weights' own (mean {list(base.mean)}, std "
                    f"{list(base.std)}, resize {base.resize}), as for a fine-tune of them; set --mean/--std/--resize "
                    "if your checkpoint was trained otherwise")
    else:
        own = module_defaults(original.target) if not isinstance(original.target, Path) else {}
        mean = tuple(own.get("mean") or (IMAGENET_MEAN if channels == 3 else (0.5,) * channels))
        std = tuple(own.get("std") or (IMAGENET_STD if channels == 3 else (0.5,) * channels))
        base = Preprocessing(r, mean, std, float(own.get("crop_pct", 0.875)), channels)
        if not own and cfg.preprocessing is None and (cfg.mean is None or cfg.std is None):
            note = (f"preprocessing: the default (resize {base.resize}, crop {r}, mean {list(base.mean)}, std "
                    f"{list(base.std)}); set --mean/--std/--resize/--crop to what the model was trained with")
    given = cfg.preprocessing
    if isinstance(given, Preprocessing):
        if (given.resolution, given.channels) != (r, channels):
            raise ConfigError(f"the preprocessing is for {given.channels}x{given.resolution}x{given.resolution} "
                              f"inputs, the model takes {channels}x{r}x{r}")
        base = given
    elif given is not None and not isinstance(given, dict):
        raise ConfigError("preprocessing must be an edgecnn.data.Preprocessing or a dict of mean/std/resize/crop")
    over = {k: v for k, v in (given if isinstance(given, dict) else {}).items() if v is not None}
    over.update({k: getattr(cfg, k) for k in ("mean", "std", "resize", "crop") if getattr(cfg, k) is not None})
    unknown = set(over) - {"mean", "std", "resize", "crop"}
    if unknown:
        raise ConfigError(f"unknown preprocessing key '{sorted(unknown)[0]}' (keys: mean, std, resize, crop)")
    if not over:
        return base, note
    crop = int(over.get("crop", r))
    if crop != r:
        raise ConfigError(f"--crop {crop} must be the model's input size ({r}): the crop is what the model sees")
    resize = over.get("resize")
    resize = int(resize) if resize is not None else (base.resize if "crop" not in over else None)
    return Preprocessing.from_sizes(crop=crop, resize=resize, mean=over.get("mean", base.mean),
                                    std=over.get("std", base.std), channels=channels), None


def resolve_targets(targets: tuple[str, ...] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """Targets to build, and the missing ones with why. Asking by name for a missing one is an error."""
    asked = list(targets) if targets else list(backends.TARGETS)
    unknown = [t for t in asked if t not in backends.TARGETS]
    if unknown:
        raise ConfigError(f"unknown target '{unknown[0]}'; targets are: {', '.join(backends.TARGETS)}")
    missing = {t: backends.unavailable(t) for t in asked if backends.unavailable(t) is not None}
    if targets and missing:
        raise backends.missing(next(iter(missing)))
    return tuple(t for t in asked if t not in missing), missing
