"""Deterministic weights and inputs that do not depend on torch's RNG.

Used twice, by design: ``tests/fixtures/make_torchvision_reference.py`` runs it against
torchvision (in a separate environment) to record key layouts and float64 logits, and
``tests/test_zoo.py`` (``test_torchvision_layout_and_forward``) runs it against our models. Same numbers in, same
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


# The fixtures store logits to 12 significant digits (make_torchvision_reference.py).
STORED_DIGITS = 12


@torch.no_grad()
def reference_logits(model: torch.nn.Module, name: str, in_chans: int = 3) -> np.ndarray:
    model = model.double().eval()
    model.load_state_dict(deterministic_state_dict(model), strict=True)
    return model(reference_input(in_chans, reference_resolution(name))).numpy()


@torch.no_grad()
def rounding_spread(model: torch.nn.Module, name: str, logits: np.ndarray, in_chans: int = 3) -> float:
    """How far this model's float64 logits move when only the order of the floating-point sums changes.

    Two re-orderings of the same arithmetic, run here: each image on its own (other GEMM blocking)
    and channels-last memory (other convolution kernels). Whatever CPU and library recorded the
    fixture summed in some other order still, so its logits can differ from ours by this much, amplified
    or not by the architecture: for most models it is ~1e-14 x the logit scale, but a randomly
    initialised EfficientNet-B7 (55 SE-gated blocks, no BatchNorm statistics fitted) amplifies 1e-16
    rounding to ~1e-5 (measured on AMD EPYC Zen 3 and reported on an Intel Xeon with AMX alike).
    ``model`` must already hold the reference weights (after :func:`reference_logits`)."""
    x = reference_input(in_chans, reference_resolution(name))
    single = np.concatenate([model(x[i: i + 1]).numpy() for i in range(len(x))])
    cl = model.to(memory_format=torch.channels_last)
    channels_last = cl(x.to(memory_format=torch.channels_last)).numpy()
    model.to(memory_format=torch.contiguous_format)
    return float(max(np.abs(single - logits).max(), np.abs(channels_last - logits).max()))


def logit_tolerance(reference: np.ndarray, spread: float) -> np.ndarray:
    """Per-logit bound for comparing our float64 logits with a recorded fixture, on any CPU.

    Three terms: the fixture's own storage rounding (half a unit in the 12th significant digit),
    float64 accumulation error at the logit scale (1e-12 x max |logit|, ~4500 unit roundoffs: far
    above what a few hundred layers of well-conditioned sums produce), and 16x the re-ordering spread
    measured on this machine, for architectures that amplify rounding. A real difference in the
    architecture (a stride, a width, a missing layer) moves logits by O(1) of their scale, which
    stays orders of magnitude above all three."""
    reference = np.abs(np.asarray(reference, np.float64))
    return 0.5 * 10.0 ** (1 - STORED_DIGITS) * reference + 1e-12 * reference.max() + 16.0 * spread


def key_layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]
