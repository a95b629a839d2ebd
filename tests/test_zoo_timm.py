"""Zoo models against timm's implementations of the same networks: the same state tensors in the same order, and,
with timm's (randomised) weights and BatchNorm statistics copied across, the same float64 logits, exactly.

timm is not a dependency and CI does not install it: these tests skip without it (tests/timm_import.py). The
parameter counts they establish are pinned without timm in tests/test_zoo_literature.py (REFERENCE_PARAMS)."""
import pytest
import torch

from edgecnn.models import get_spec
from edgecnn.models._factory import build_model
from timm_import import import_timm


def _registered(name):
    return lambda timm: timm.create_model(name, pretrained=False)


def _minimal(variant):
    """timm registers the minimalistic MobileNetV3 only as its TF ports (TF 'same' padding); its generator builds the
    PyTorch-padded network, with Google's BatchNorm epsilon (1e-3) as ours and the TF ports use."""
    def build(timm):
        from timm.models.mobilenetv3 import _gen_mobilenet_v3

        model = _gen_mobilenet_v3(variant, 1.0, pretrained=False)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
        return model
    return build


PAIRS = {
    "dpn98": _registered("dpn98"),
    "dpn107": _registered("dpn107"),
    "mobilenet_v1_128": _registered("mobilenetv1_100"),  # the 1.0 network; Table 7 changes only the input
    "mobilenet_v3_large_minimal": _minimal("mobilenetv3_large_minimal_100"),
    "mobilenet_v3_small_minimal": _minimal("mobilenetv3_small_minimal_100"),
}
# timm's registered names whose parameter counts the zoo's REFERENCE_PARAMS quote
REGISTERED = {"mobilenet_v3_large_minimal": "tf_mobilenetv3_large_minimal_100",
              "mobilenet_v3_small_minimal": "tf_mobilenetv3_small_minimal_100"}


def _state(model):
    return [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_same_network_as_timm(name):
    timm = import_timm()
    torch.manual_seed(0)
    ours, theirs = build_model(get_spec(name), 1000, {}).eval(), PAIRS[name](timm).eval()
    with torch.no_grad():
        for key, value in theirs.state_dict().items():  # timm's own init; BatchNorm statistics away from 0/1
            if "running_var" in key:
                value.copy_(torch.rand_like(value) + 0.5)
            elif "running_mean" in key:
                value.copy_(torch.randn_like(value) * 0.1)
    mine, timms = _state(ours), _state(theirs)
    # a 1x1 conv head after pooling (timm) is our Linear: the same numbers, one reshape apart
    assert [v.numel() for _, v in mine] == [v.numel() for _, v in timms]
    assert [v.shape for _, v in mine] == [v.shape for _, v in timms] or name.startswith("mobilenet_v3")
    ours.load_state_dict({k: v.reshape(mine_v.shape) for (k, mine_v), (_, v) in zip(mine, timms)})
    ours.double(), theirs.double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert (b[0] - b[1]).abs().max() > 1e-3, "the logits do not depend on the input: a vacuous comparison"
    # float64, the same operations: equal to rounding (a 1x1 conv head and a Linear sum in their own order)
    assert torch.allclose(a, b, rtol=0, atol=1e-12 * float(b.abs().max())), (a - b).abs().max()


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_parameter_count_of_the_registered_timm_model(name):
    timm = import_timm()
    with torch.device("meta"):
        theirs = timm.create_model(REGISTERED[name], pretrained=False)
        ours = build_model(get_spec(name), 1000, {})
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
