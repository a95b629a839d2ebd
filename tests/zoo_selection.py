"""Which registered models the fast (CI) run exercises, and which wait for `pytest -m slow`.

Heavy models (over 60M parameters: 20-50 s each to build, export and compile on 2 cores) run in the
slow sweep unless they are the smallest member of their family, so every family is in the fast run.
Issue 13 added the literature's variants beside models that already exercise the same layers
(other widths, depths or stride placements): those are built, run and exported in the slow sweep only
(the fast run still pins their parameter and multiply-add counts, on the meta device).
PyramidNet-200, a one-model family, costs ~2 minutes there alone (16.5 G multiply-adds at the 224 px
of create_model's BatchNorm calibration): it is exported in the slow sweep, and the fast run exports a
shallow build of the same units instead (EXPORT_TOO_COSTLY: the builder options it uses), so the family's
code is exported in every run.
"""
import pytest
import torch

from edgecnn.models import MODELS
from edgecnn.models._factory import build_model

HEAVY_PARAMS = 60e6
LITERATURE_VARIANTS = {
    "resnet50_v1", "resnet101_v1", "resnet152_v1", "resnext101_32x4d",
    "se_resnet50", "se_resnet101", "se_resnext101_32x4d",
    "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152",
    "squeezenext23_w2", "squeezenext23v5_w2", "squeezenet1_0_simple_bypass",
    "inception_v4", "inception_resnet_v2", "dpn92", "resattnet92", "densenet264", "googlenet_2014",
    "mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075", "mobilenet_v2_130", "mobilenet_v2_140",
    "mobilenet_v3_large_075", "mobilenet_v3_small_075", "mnasnet_a1", "squeezenet1_0_complex_bypass",
    "squeezenext23v5_w1",
    # issue 25: the lectures' missing variants, beside members that run the same layers in the fast sweep
    "plain18", "plain34", "mobilenet_v1_128", "mobilenet_v1_160", "mobilenet_v1_192", "dpn98", "dpn107",
    "mobilenet_v3_large_minimal", "mobilenet_v3_small_minimal", "pyramidnet200_a450", "wrn28_10", "inception_v2",
    "squeezenext23_w3d2", "squeezenext23v5_w3d2",
    *(f"shufflenet_v1_g{g}_x0_5" for g in (1, 2, 4, 8)), *(f"shufflenet_v1_g{g}_x0_25" for g in (1, 2, 3, 4, 8)),
}
# name -> the builder options of the shallow build the fast run exports in its place
EXPORT_TOO_COSTLY = {"pyramidnet200_a300": {"depths": (1, 1, 1, 1)}}


def _count(name: str) -> int:
    with torch.device("meta"):  # shapes only: no storage, no arithmetic
        return sum(p.numel() for p in build_model(MODELS.get(name), 1000, {}).parameters())


def sweep(*, export: bool) -> list:
    """Every model as a pytest param; the heavy ones and the literature variants marked slow (with ``export``,
    also the models whose export alone costs minutes)."""
    cost = {n: MODELS.get(n).published.params or _count(n) for n in MODELS.names()}  # test_zoo.py pins them
    variants = LITERATURE_VARIANTS
    smallest = {}  # per family, the smallest member that is not a variant: the one the fast run keeps
    for name in MODELS.names():
        family = MODELS.get(name).family
        if name not in variants and (family not in smallest or cost[name] < cost[smallest[family]]):
            smallest[family] = name
    keep = set(smallest.values())
    slow = {n for n, params in cost.items() if params > HEAVY_PARAMS and n not in keep} | variants
    if export:
        slow |= set(EXPORT_TOO_COSTLY)
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in MODELS.names()]
