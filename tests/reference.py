"""Deterministic weights and inputs that do not depend on torch's RNG.

Used twice, by design: ``tests/fixtures/make_torchvision_reference.py`` runs it against
torchvision (in a separate environment) to record key layouts and float64 logits, and
``tests/test_torchvision_layout.py`` runs it against our models. Same numbers in, same
architecture => same logits out, without torchvision installed in CI.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np
import torch

REFERENCE_BATCH = 2


def reference_resolution(name: str) -> int:
    """Small inputs keep the float64 forward cheap; a few architectures need more than 32 px."""
    return {"inception_v3": 80, "alexnet": 64}.get(name, 32)


def deterministic_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    own = model.state_dict()
    out = OrderedDict()
    out._metadata = getattr(own, "_metadata", None)  # torchvision's MNASNet checks the saved version
    for key, value in own.items():
        shape = tuple(value.shape)
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            arr = np.zeros(shape)
        elif key.endswith("running_var"):
            arr = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or key.endswith("bias"):
            arr = rng.normal(0.0, 0.1, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            arr = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:  # norm scales
            arr = 1.0 + rng.normal(0.0, 0.1, shape)
        out[key] = torch.from_numpy(np.asarray(arr)).to(value.dtype if not value.is_floating_point() else torch.float64)
    return out


def reference_input(in_chans: int, resolution: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.standard_normal((REFERENCE_BATCH, in_chans, resolution, resolution)))


@torch.no_grad()
def reference_logits(model: torch.nn.Module, name: str, in_chans: int = 3) -> np.ndarray:
    model = model.double().eval()
    model.load_state_dict(deterministic_state_dict(model), strict=True)
    return model(reference_input(in_chans, reference_resolution(name))).numpy()


def key_layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]
