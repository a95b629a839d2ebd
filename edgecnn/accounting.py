"""Parameters, multiply-accumulates and activation memory, per layer and in total.

Counted the CS231n way from one forward pass with hooks on leaf modules:
- MACs: convolutions (output elements x in_channels/groups x kernel area) and linear layers
  (output elements x in_features); BatchNorm, activations and pooling are not counted (BN folds
  into the convolution on export). These are the "FLOPs" of the torchvision and paper tables.
- params: every parameter of the model (what ``sum(p.numel())`` gives; aux heads included).
- activations: every tensor the forward pass allocates, for batch 1, with its dtype and bytes:
  the input (the CS231n table's first row), each leaf module's output, and the functional
  operations between modules (residual additions, concatenations, SE gating products, pooling
  called as a function), which hooks on modules alone never see. In-place operations and views
  (in-place ReLU, Dropout/Identity in eval mode, flatten, reshape, split) allocate nothing and
  count zero.

This is the *training* view (every forward tensor is kept for the backward pass; BatchNorm outputs
included). What a deployed model holds at once is another figure, measured on the exported graph:
:mod:`edgecnn.harness.memory`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

# Bytes kept per parameter while training, in units of the weights themselves: the weights, their
# gradients, and the optimizer's state (one momentum buffer for SGD, two moment estimates for Adam).
OPTIMIZER_COPIES = {"sgd": 2, "sgd_momentum": 3, "adam": 4}
# The backward pass needs a gradient the size of every stored forward activation (CS231n: "~x2 for bwd").
BACKWARD_FACTOR = 2


@dataclass
class LayerStats:
    name: str
    type: str
    output_shape: tuple[int, ...]
    activations: int  # elements allocated (0 for in-place ops and views)
    params: int
    macs: int
    dtype: str = "float32"
    bytes: int = 0  # activations x the dtype's size
    kind: str = "module"  # module | functional | input


@dataclass
class ModelStats:
    model: str
    resolution: int
    params: int
    macs: int
    activations: int
    layers: list[LayerStats] = field(default_factory=list)
    param_bytes: int = 0

    @property
    def activation_bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    def to_dict(self, layers: bool = False) -> dict:
        d = asdict(self)
        d["activation_bytes"] = self.activation_bytes
        d["training_memory"] = training_memory(self)
        if not layers:
            d.pop("layers")
        return d


def training_memory(stats: ModelStats) -> dict:
    """Training memory per image, the lecture's way, in bytes: an upper bound (what PyTorch really keeps is
    :func:`edgecnn.harness.training.training_memory`; ResNet-50: 2.6x less).

    Forward activations (functional operations included) x2 for the backward pass, plus the
    parameters times the copies each optimizer keeps (weights + gradients + its state). Batch-size
    independent parts (the parameter side) and per-image parts (activations) are kept apart, so
    ``parameters + batch x activations`` budgets a batch.
    """
    acts = stats.activation_bytes * BACKWARD_FACTOR
    per_optimizer = {opt: stats.param_bytes * k for opt, k in OPTIMIZER_COPIES.items()}
    return {
        "activations_forward_bytes": stats.activation_bytes,
        "activations_forward_backward_bytes": acts,
        "parameter_bytes": per_optimizer,
        "total_bytes_batch1": {opt: acts + p for opt, p in per_optimizer.items()},
    }


_ALIASING = (nn.Dropout, nn.Identity, nn.Flatten)


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight
        return out.numel() * w.shape[1] * math.prod(w.shape[2:])
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class _FunctionalOps(TorchFunctionMode):
    """Records tensors allocated by torch functions called outside leaf modules.

    A new tensor is one that is neither an input of the call (in-place ops return their input)
    nor a view of another tensor (``_base`` set): views and in-place results allocate nothing.
    """

    def __init__(self, record) -> None:
        super().__init__()
        self.record = record
        self.leaf_depth = 0
        self.scope: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.leaf_depth == 0 and isinstance(out, torch.Tensor) and out._base is None:
            inputs = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            if not any(out is a for a in inputs) and not isinstance(out, nn.Parameter):
                self.record(self.scope[-1] if self.scope else "", getattr(func, "__name__", str(func)).strip("_"), out)
        return out


@torch.no_grad()
def profile(model: nn.Module, resolution: int, *, in_chans: int = 3, name: str | None = None) -> ModelStats:
    """Run one batch-1 forward pass and collect per-layer statistics (in execution order)."""
    layers: list[LayerStats] = []
    names = {m: n for n, m in model.named_modules()}
    seen: set[nn.Module] = set()
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    leaf_set = set(leaves)

    def add(name_: str, type_: str, out: torch.Tensor, allocated: bool, params: int, macs: int, kind: str) -> None:
        n = out.numel() if allocated else 0
        layers.append(LayerStats(name_, type_, tuple(out.shape), n, params, macs, _dtype_name(out),
                                 n * out.element_size(), kind))

    def functional(scope: str, op: str, out: torch.Tensor) -> None:
        add(f"{scope}.{op}" if scope else op, op, out, True, 0, 0, "functional")

    mode = _FunctionalOps(functional)

    def pre_hook(module: nn.Module, _inp) -> None:
        if module in leaf_set:
            mode.leaf_depth += 1
        else:
            mode.scope.append(names[module])

    def hook(module: nn.Module, _inp, out) -> None:
        if module not in leaf_set:
            mode.scope.pop()
            return
        mode.leaf_depth -= 1
        if not isinstance(out, torch.Tensor):
            return
        inplace = getattr(module, "inplace", False) or isinstance(module, _ALIASING)
        params = 0 if module in seen else sum(p.numel() for p in module.parameters(recurse=False))
        seen.add(module)
        add(names[module], type(module).__name__, out, not inplace, params, _macs(module, out), "module")

    modules = [m for m in model.modules() if m is not model]
    handles = [m.register_forward_pre_hook(pre_hook) for m in modules]
    handles += [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        x = torch.zeros(1, in_chans, resolution, resolution, device=device, dtype=dtype)
        add("input", "Input", x, True, 0, 0, "input")
        with mode:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = list(model.parameters())
    return ModelStats(
        model=name or type(model).__name__,
        resolution=resolution,
        params=sum(p.numel() for p in params),
        macs=sum(layer.macs for layer in layers),
        activations=sum(layer.activations for layer in layers),
        layers=layers,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
    )


def model_stats(name: str, resolution: int | None = None, **options) -> ModelStats:
    """Statistics for a registered model, built with (cheap) random weights."""
    from .models import get_spec
    from .models._factory import build_model

    spec = get_spec(name)
    res = spec.check_resolution(resolution)
    num_classes = options.pop("num_classes", None) or spec.num_classes
    # On the meta device: shapes without storage or arithmetic, so counting VGG or EfficientNet-B7 is instant.
    with torch.device("meta"):
        model = build_model(spec, num_classes, options)
    return profile(model, res, in_chans=spec.in_chans, name=name)


def rounding(figure: float) -> float:
    """Half a unit of the last significant digit of a published figure: '4.2M' means 4.15M..4.25M."""
    mantissa, exponent = f"{figure:.6e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0")
    return 0.5 * 10 ** (int(exponent) - len(digits) + 1)


def departs(measured: float, published: float, tolerance: float = 0.01) -> bool:
    """True when a measured figure is further from a published one than ``tolerance`` and its rounding allow."""
    return abs(measured - published) > max(tolerance * abs(published), rounding(published))


FIGURES = ("params", "macs", "activations")


@dataclass
class SourceCheck:
    """One published source beside the model measured under that source's conditions."""

    source: "Published"  # noqa: F821 - edgecnn.models.Published; not imported here (models import nothing upward)
    stats: ModelStats
    options: dict

    def gap(self, figure: str) -> float | None:
        """Relative difference measured / published - 1, or None where the source gives no figure."""
        published = getattr(self.source, figure)
        return None if not published else getattr(self.stats, figure) / published - 1

    @property
    def departures(self) -> list[str]:
        """Figures more than 1% (and the published rounding) away from the measurement."""
        return [f for f in FIGURES
                if getattr(self.source, f) and departs(getattr(self.stats, f), getattr(self.source, f))]


def compare_sources(name: str, *, resolution: int | None = None, options: dict | None = None
                    ) -> tuple[ModelStats, list[SourceCheck]]:
    """The model as asked for, and each published source beside the model under its own conditions.

    A source's figures hold at its resolution with its builder options (the Inception-v3 card counts
    the auxiliary head; the EfficientNet-B2 paper uses 260 px where torchvision evaluates at 288), so
    each is compared with a measurement made under those conditions, never with the default build.
    """
    from .models import get_spec

    spec = get_spec(name)
    cache: dict[tuple, ModelStats] = {}

    def measure(res: int | None, opts: dict) -> ModelStats:
        key = (spec.check_resolution(res), tuple(sorted(opts.items())))
        if key not in cache:
            cache[key] = model_stats(name, key[0], **opts)
        return cache[key]

    stats = measure(resolution, dict(options or {}))
    checks = [SourceCheck(src, measure(src.resolution, dict(src.options)), dict(src.options))
              for src in spec.published.sources if any(getattr(src, f) for f in FIGURES + ("top1",))]
    return stats, checks
