"""What an export is asked to do: :class:`ExportConfig`, checked and resolved before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .. import backends
from ..errors import ConfigError
from ..exporters.int8 import Int8Recipe, recipe_for
from ..exporters.torch_onnx import check_opset
from ..models import ModelSpec, get_spec

DEFAULT_CALIB_SIZE = 128
DEFAULT_EVAL_SIZE = 32
DYNAMIC_MAX_BATCH = 32
# TensorRT 10's ONNX parser documents opsets 9 to 20 (onnx-tensorrt docs/operators.md, 10.0); later 10.x
# releases read more, but 10.3 is what JetPack 6 has, so a TensorRT target caps the opset here.
TENSORRT_MAX_OPSET = 20


@dataclass
class ExportConfig:
    """One export. ``None`` means "the default", resolved in one place (:meth:`resolve`)."""

    model: str
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

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("edgecnn_out") / self.model

    def resolve(self) -> "Plan":
        """Check every option and resolve every default; nothing heavy runs before this passes."""
        spec = get_spec(self.model)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch must be a positive integer, got {self.batch!r}")
        if self.calib_size < 1 or self.eval_size < 1:
            raise ConfigError("calibration and evaluation sizes must be at least 1")
        if self.max_drop is not None and not 0 < self.max_drop < 1:
            raise ConfigError(f"--max-drop is a fraction of logit cosine, between 0 and 1 (e.g. 0.01), got {self.max_drop}")
        if self.dynamic_batch and self.batch > DYNAMIC_MAX_BATCH:  # the batch is the profile's optimum: within 1..max
            raise ConfigError(f"with a dynamic batch, batch (the size to optimise for) must be at most "
                              f"{DYNAMIC_MAX_BATCH}, got {self.batch}")
        recipe = self.int8 if isinstance(self.int8, Int8Recipe) else recipe_for() if self.int8 else None
        targets, missing = resolve_targets(self.targets)
        opset = check_opset(self.opset, exporter=self.exporter)
        if "tensorrt" in targets and opset > TENSORRT_MAX_OPSET:
            raise ConfigError(f"opset {opset} is above what TensorRT's ONNX parser supports ({TENSORRT_MAX_OPSET}); "
                              f"use --opset {TENSORRT_MAX_OPSET} or lower, or leave tensorrt out of --targets")
        return Plan(self, spec, spec.check_resolution(self.resolution), opset, recipe, targets, missing)

    def to_dict(self, plan: "Plan") -> dict:
        """The config as recorded in manifest.json, defaults resolved."""
        d = asdict(self)
        d.update(opset=plan.opset, targets=list(self.targets) if self.targets else None, int8=plan.recipe is not None)
        if plan.recipe is not None:
            d.update(int8_preset=plan.recipe.preset, int8_recipe=plan.recipe.to_dict())
        return d


@dataclass(frozen=True)
class Plan:
    """An :class:`ExportConfig` with every default resolved."""

    cfg: ExportConfig
    spec: ModelSpec
    resolution: int
    opset: int
    recipe: Int8Recipe | None
    targets: tuple[str, ...]
    missing: dict[str, str]  # targets left out, and why (never silently dropped)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.cfg.batch, self.spec.in_chans, self.resolution, self.resolution)

    @property
    def dynamic_batch(self) -> int | None:
        return DYNAMIC_MAX_BATCH if self.cfg.dynamic_batch else None


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
