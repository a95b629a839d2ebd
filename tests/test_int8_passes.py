"""Cross-layer equalisation and bias correction, on small float models built here.

Each model has what the pass is for (channel ranges 100x apart; inputs with a non-zero mean), so
the tests can check the pass's own claim: equalisation leaves the function unchanged and gives both
sides of a pair the same channel range; bias correction removes the mean output shift of int8 weights.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgecnn.exporters.graph import collect  # noqa: E402


def float_model(path, *, act: str = "Relu", seed: int = 0):
    """pointwise (16 -> 32) -> act -> depthwise 3x3 stride 2 -> act -> pointwise (32 -> 8), with biases.

    The first layer's output channels span ranges 100x apart (what a trained depthwise net has)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(32, 16, 1, 1)) * np.logspace(-1, 1, 32)[:, None, None, None]
    w2 = rng.normal(size=(32, 1, 3, 3)) * np.logspace(1, -1, 32)[:, None, None, None]
    w3 = rng.normal(size=(8, 32, 1, 1)) * 0.2
    b1, b2, b3 = rng.normal(size=32) * 0.1, rng.normal(size=32) * 0.1, rng.normal(size=8) * 0.1
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"), (b3, "b3"))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["y1"], name="pw1")]
    if act == "Clip":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["y1", "lo", "hi"], ["a1"], name="act1"))
    else:
        nodes.append(helper.make_node("Relu", ["y1"], ["a1"], name="act1"))
    nodes += [helper.make_node("Conv", ["a1", "w2", "b2"], ["y2"], name="dw", group=32, strides=[2, 2],
                               pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["y2"], ["a2"], name="act2"),
              helper.make_node("Conv", ["a2", "w3", "b3"], ["y"], name="pw2")]
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 8, 8])
    graph = helper.make_graph(nodes, "block", [x_info],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return model


def inputs(n: int, seed: int = 1) -> np.ndarray:
    """Positive-mean inputs, like the output of a ReLU."""
    return np.abs(np.random.default_rng(seed).normal(0.5, 1.0, size=(n, 16, 8, 8))).astype(np.float32)


def weights(model) -> dict:
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}


def test_equalisation_keeps_the_function_and_equalises_ranges(tmp_path):
    from edgecnn.exporters.equalize import equalize

    model = float_model(tmp_path / "m.onnx")
    x = inputs(16)
    eq, report = equalize(model, x)
    assert report["pairs"] == 2 and report["equalised"] == 2 and "rejected" not in report, report
    assert report["drift"] < 1e-9
    before, after = collect(model, ["y"], x)["y"], collect(eq, ["y"], x)["y"]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5 * np.abs(before).max())
    w = weights(eq)
    # every channel of the depthwise layer now spans the same range as the pointwise layers around it
    r_dw = np.abs(w["w2"]).reshape(32, -1).max(axis=1)
    r_pw1 = np.abs(w["w1"]).reshape(32, -1).max(axis=1)
    r_pw2 = np.abs(w["w3"]).max(axis=(0, 2, 3))
    np.testing.assert_allclose(r_dw, r_pw1, rtol=0.02)
    np.testing.assert_allclose(r_dw, r_pw2, rtol=0.02)
    spread = lambda r: r.max() / r.min()  # noqa: E731
    assert spread(np.abs(weights(model)["w2"]).reshape(32, -1).max(axis=1)) > 50
    assert spread(r_dw) < spread(np.abs(weights(model)["w2"]).reshape(32, -1).max(axis=1)) / 10


def test_equalisation_leaves_relu6_pairs_alone(tmp_path):
    from edgecnn.exporters.equalize import equalize, summary

    model = float_model(tmp_path / "m.onnx", act="Clip")
    eq, report = equalize(model, inputs(8))
    assert report["pairs"] == 1 and report["relu6_pairs_left"] == 1, report
    w0, w1 = weights(model), weights(eq)
    np.testing.assert_array_equal(w0["w1"], w1["w1"])  # the pointwise -> ReLU6 side is untouched
    assert not np.allclose(w0["w3"], w1["w3"])  # the depthwise -> ReLU -> pointwise pair is scaled
    assert "1 pairs through ReLU6 left alone" in summary(report)


@pytest.mark.parametrize("per_channel", [True, False])
def test_bias_correction_removes_the_mean_shift_of_int8_weights(tmp_path, per_channel):
    """The per-channel mean error of the int8 model's output against the float one shrinks.

    What is left is the activations' share (measured: 0.51x per-channel, 0.29x per-tensor weights)."""
    from dataclasses import replace

    from edgecnn.exporters.int8 import Int8Recipe, quantize_int8
    from edgecnn.artifact import describe

    float_model(tmp_path / "m.onnx")
    src = describe(tmp_path / "m.onnx", stage="fp32", precision="fp32", parent=None)
    x = inputs(32)
    ref = collect(onnx.load(str(src.path)), ["y"], x)["y"]
    shift = {}
    for bc in (False, True):
        recipe = replace(Int8Recipe(per_channel=per_channel, reduce_range=True), bias_correction=bc)
        q = quantize_int8(src, tmp_path / f"q{bc}.onnx", x, recipe=recipe, opset=17, progress=False)
        assert ("bias correction: 3 layer(s)" in q.notes) == bc, q.notes
        err = collect(onnx.load(str(q.path)), ["y"], x)["y"] - ref
        shift[bc] = np.sqrt(np.mean(err.mean(axis=(0, 2, 3)) ** 2)) / np.std(ref)
    assert shift[True] < 0.6 * shift[False], shift


@pytest.mark.parametrize("kernel,strides,pads,dilations", [
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),  # MobileNet's strided depthwise
    ((5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # EfficientNet-Lite's 5x5
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),  # pointwise
    ((3, 5), (3, 2), (0, 1, 2, 3), (2, 1)),  # asymmetric everything, stride 3, dilation 2
    ((7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),  # a ResNet stem
])
def test_bias_correction_tap_means_equal_an_explicit_im2col(kernel, strides, pads, dilations):
    """The box-sum tap means of a padded, strided, dilated convolution equal the mean of an explicit im2col."""
    from edgecnn.exporters.bias_correction import _taps_mean

    x = np.random.default_rng(0).normal(1.0, 1.0, size=(3, 4, 11, 9))
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    got = _taps_mean(x, kernel, strides, pads, dilations)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh, ow = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1, (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    cols = np.array([[xp[:, :, sh * i: sh * i + dh * (kh - 1) + 1: dh, sw * j: sw * j + dw * (kw - 1) + 1: dw]
                      for j in range(ow)] for i in range(oh)])  # (oh, ow, N, C, kh, kw)
    np.testing.assert_allclose(got, cols.mean(axis=(0, 1, 2)), rtol=1e-12)
