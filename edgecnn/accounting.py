"""Parameters, multiply-accumulates and activation memory, per layer and in total.

Counted the CS231n way from one forward pass with hooks on leaf modules:
- MACs: convolutions (output elements x in_channels/groups x kernel area) and linear layers
  (output elements x in_features); BatchNorm, activations and pooling are not counted (BN folds
  into the convolution on export). These are the "FLOPs" of the torchvision and paper tables.
- params: every parameter of the model (what ``sum(p.numel())`` gives; aux heads included).
- activations: elements produced by each leaf module, for batch 1, and their fp32 bytes; in-place
  activations and modules that return a view or their input in eval mode (Dropout, Identity,
  Flatten) are excluded: they allocate nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn


@dataclass
class LayerStats:
    name: str
    type: str
    output_shape: tuple[int, ...]
    activations: int
    params: int
    macs: int


@dataclass
class ModelStats:
    model: str
    resolution: int
    params: int
    macs: int
    activations: int
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def activation_bytes(self) -> int:
        return self.activations * 4

    def to_dict(self, layers: bool = False) -> dict:
        d = asdict(self)
        d["activation_bytes"] = self.activation_bytes
        if not layers:
            d.pop("layers")
        return d


_ALIASING = (nn.Dropout, nn.Identity, nn.Flatten)


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight
        return out.numel() * (w.shape[1] * int(torch.tensor(w.shape[2:]).prod()))
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


@torch.no_grad()
def profile(model: nn.Module, resolution: int, *, in_chans: int = 3, name: str | None = None) -> ModelStats:
    """Run one batch-1 forward pass and collect per-layer statistics (in execution order)."""
    layers: list[LayerStats] = []
    names = {m: n for n, m in model.named_modules()}
    seen: set[nn.Module] = set()

    def hook(module: nn.Module, _inp, out) -> None:
        if not isinstance(out, torch.Tensor):
            return
        inplace = getattr(module, "inplace", False) or isinstance(module, _ALIASING)
        params = 0 if module in seen else sum(p.numel() for p in module.parameters(recurse=False))
        seen.add(module)
        layers.append(LayerStats(names[module], type(module).__name__, tuple(out.shape),
                                 0 if inplace else out.numel(), params, _macs(module, out)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        model(torch.zeros(1, in_chans, resolution, resolution, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ModelStats(
        model=name or type(model).__name__,
        resolution=resolution,
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(layer.macs for layer in layers),
        activations=sum(layer.activations for layer in layers),
        layers=layers,
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
