"""timm, imported where its torchvision dependency is a CUDA wheel beside a CPU torch (tests that compare with timm
skip without it: CI does not install timm)."""
from __future__ import annotations

import importlib
import sys

import pytest
import torch

_TORCHVISION_SCHEMAS = None


def import_timm():
    """timm needs torchvision's Python parts only. PyPI's torchvision wheels are CUDA builds whose C ops do not
    load next to the CPU torch, and torchvision's import then fails registering fake kernels for two of them;
    declaring those two schemas lets the import through (nothing here runs a torchvision op)."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        pytest.skip("timm is not installed (CI does not install it): pip install timm")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    global _TORCHVISION_SCHEMAS
    _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "FRAGMENT")  # kept: its definitions live with it
    for op in ("nms", "qnms"):
        try:
            _TORCHVISION_SCHEMAS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already there
            pass
    for name in [n for n in sys.modules if n.split(".")[0] in ("timm", "torchvision")]:
        del sys.modules[name]
    return importlib.import_module("timm")
