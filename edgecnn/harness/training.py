"""Training memory from PyTorch itself: what autograd saves for the backward pass, and what each optimizer keeps.

The lecture's rule (CS231n: forward activations "~x2 for bwd", :func:`edgecnn.accounting.training_memory`) is an
upper bound: PyTorch keeps for backward only the tensors a gradient formula needs (a convolution its input, a
ReLU its output, which an in-place ReLU shares with the BatchNorm before it; an addition nothing), and frees each
activation gradient as soon as it has been used. Here the forward pass runs in training mode under
``torch.autograd.graph.saved_tensors_hooks`` and every tensor autograd saves is recorded once per storage
(a tensor saved by several nodes, or a view of another, costs its storage once). Parameters and buffers are
saved too (a convolution keeps its weight); they are the parameter side of the budget, not activations, and
are left out of the activation count.

- activations per image: saved bytes at batch 2 minus batch 1 (the input batch included: the first
  convolution saves it); the batch-independent rest (BatchNorm's per-channel statistics) is ``saved_fixed``;
- parameters, their gradients (one per trainable parameter, same dtype), and the optimizer's state as
  PyTorch's optimizers create it: SGD none, SGD with momentum one buffer per parameter, Adam/AdamW two
  (``exp_avg``, ``exp_avg_sq``) plus a scalar ``step`` tensor per parameter.

The model runs on the meta device (shapes, no arithmetic): the same autograd graph as on a CPU, instantly.
:data:`TRAINING_TOLERANCE` is how far the per-image figure was measured from a real CPU training step
(tests/test_memory_measured.py measures it again on three families).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")
# Saved-for-backward bytes per image against a real training step's peak resident growth per image, batch 2 -> 6
# (SGD with momentum, fresh process, one thread, glibc's mmap threshold fixed at 64 KiB so that freed tensors leave
# resident memory; batch 1 is no reference point: PyTorch runs small batch-1 convolutions on another kernel than
# oneDNN's, whose scratch then shows up as growth: ResNet-18 batch 1 -> 5 grew 1.8x what batch 2 -> 6 did).
# Measured 2026-12-07 on an AMD EPYC (AVX2, AVX-512 VNNI; 2 cores under load), torch 2.13 CPU, 96 px:
# ResNet-18 -8.8%, SqueezeNet 1.1 +2.6%, ShuffleNetV2 x0.5 -1.7%, MobileNetV2 +2.1%, DenseNet-121 +0.8%,
# MobileNet v1 -1.5%, ShuffleNet v1 g3 -1.8%; 64 px: SqueezeNet 1.1 +14.5% (1.2 MiB per image), MobileNetV2 +2.0%.
# tests/test_memory_measured.py measures three families again.
TRAINING_TOLERANCE = 0.15


def _state_bytes(param_bytes: int, n_params: int) -> dict[str, int]:
    """Optimizer state, as torch.optim creates it (checked against a real step in tests/test_memory_measured.py)."""
    step = 4 * n_params  # Adam's per-parameter ``step``: a float32 scalar tensor
    return {"sgd": 0, "sgd_momentum": param_bytes, "adam": 2 * param_bytes + step, "adamw": 2 * param_bytes + step}


@dataclass
class TrainingMemory:
    model: str
    resolution: int
    saved_per_image_bytes: int  # activations autograd keeps for backward, per image
    saved_fixed_bytes: int  # saved, not parameters, independent of the batch (BatchNorm statistics)
    saved_tensors: int  # distinct storages saved at batch 1 (parameters and buffers excluded)
    parameter_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: dict[str, int]
    lecture_per_image_bytes: int  # the lecture's rule: every forward activation x2 (an upper bound)

    def total_bytes(self, optimizer: str, batch: int = 1) -> int:
        """Parameters + gradients + optimizer state + the activations saved for a batch of ``batch``."""
        return (self.parameter_bytes + self.gradient_bytes + self.optimizer_state_bytes[optimizer]
                + self.saved_fixed_bytes + batch * self.saved_per_image_bytes)

    @property
    def lecture_ratio(self) -> float:
        """The lecture's x2 figure over what autograd saves, per image."""
        return self.lecture_per_image_bytes / self.saved_per_image_bytes if self.saved_per_image_bytes else float("inf")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(total_bytes_batch1={o: self.total_bytes(o) for o in OPTIMIZERS}, lecture_ratio=self.lecture_ratio,
                 tolerance=TRAINING_TOLERANCE)
        return d

    def lines(self) -> list[str]:
        mib = 2**20
        tot = self.total_bytes
        return [
            f"training memory (PyTorch autograd, saved for backward): {self.saved_per_image_bytes / mib:.1f} MiB per "
            f"image (+{self.saved_fixed_bytes / mib:.2f} MiB per batch); parameters {self.parameter_bytes / mib:.1f} "
            f"MiB, gradients {self.gradient_bytes / mib:.1f} MiB, optimizer state: SGD 0, SGD+momentum "
            f"{self.optimizer_state_bytes['sgd_momentum'] / mib:.1f} MiB, Adam/AdamW "
            f"{self.optimizer_state_bytes['adam'] / mib:.1f} MiB; at batch 1: {tot('sgd') / mib:.1f} MiB (SGD), "
            f"{tot('sgd_momentum') / mib:.1f} MiB (SGD+momentum), {tot('adam') / mib:.1f} MiB (Adam/AdamW); "
            f"within {TRAINING_TOLERANCE:.0%} of a real CPU training step's growth per image (measured)",
            "the lecture's rule (forward activations x2, an upper bound): "
            f"{self.lecture_per_image_bytes / mib:.1f} MiB "
            f"per image, {self.lecture_ratio:.1f}x what autograd saves",
        ]


def saved_for_backward(model, x) -> tuple[int, int]:
    """Bytes and number of distinct storages autograd saves for backward in ``model(x)``, parameters and buffers
    excluded (they are the parameter side of the budget)."""
    import torch

    own = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in own:  # the storage's identity: data_ptr is 0 for every meta tensor
            seen[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values()), len(seen)


def training_memory(name: str, resolution: int | None = None, **options) -> TrainingMemory:
    """What training ``name`` (a zoo model) holds, from PyTorch's autograd, per image and per optimizer."""
    import torch

    from ..accounting import model_stats
    from ..models import get_spec
    from ..models._factory import build_model

    spec = get_spec(name)
    res = spec.check_resolution(resolution)
    num_classes = options.pop("num_classes", None) or spec.num_classes
    with torch.device("meta"):
        model = build_model(spec, num_classes, dict(options)).train()
        saved = [saved_for_backward(model, torch.zeros(b, spec.in_chans, res, res)) for b in (1, 2)]
    per_image = saved[1][0] - saved[0][0]
    params = [p for p in model.parameters()]
    trainable = [p for p in params if p.requires_grad]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    lecture = model_stats(name, res, num_classes=num_classes, **options).activation_bytes * 2
    return TrainingMemory(model=name, resolution=res, saved_per_image_bytes=per_image,
                          saved_fixed_bytes=saved[0][0] - per_image, saved_tensors=saved[0][1],
                          parameter_bytes=param_bytes, gradient_bytes=trainable_bytes,
                          optimizer_state_bytes=_state_bytes(trainable_bytes, len(trainable)),
                          lecture_per_image_bytes=lecture)
