import pytest

from edgecnn.errors import UnknownModelError
from edgecnn.registry import Registry


def test_duplicate_name_raises():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 2)


def test_unknown_name_lists_close_matches():
    r = Registry("model", UnknownModelError)
    for n in ("mobilenet_v2", "mobilenet_v3_small", "resnet18"):
        r.register(n, n)
    with pytest.raises(UnknownModelError, match="did you mean: mobilenet_v2"):
        r.get("mobilenet_v2x")
    assert r.names() == ["mobilenet_v2", "mobilenet_v3_small", "resnet18"]
    assert "resnet18" in r and len(r) == 3
