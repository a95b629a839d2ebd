"""The model zoo: one module per family, each registering its entrypoints in ``MODELS``."""
from __future__ import annotations

import importlib

from ._factory import create_model, get_spec, list_models, preprocessing
from ._spec import MODELS, ModelSpec, Published, Weights, register_model

FAMILIES = (
    "lenet", "alexnet", "vgg", "googlenet", "inception", "resnet", "densenet", "squeezenet",
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v1", "shufflenet_v2", "mnasnet", "efficientnet",
    # issue 13: the rest of the literature
    "senet", "preact_resnet", "squeezenext", "xception", "inception_v4", "bn_inception", "dpn", "pyramidnet",
    "resattnet", "nasnet",
)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

__all__ = ["MODELS", "ModelSpec", "Published", "Weights", "create_model", "get_spec", "list_models", "preprocessing",
           "register_model"]
