"""Memory accounting: the CS231n VGG-16 table, functional operations, training memory, the deployed peak."""
import argparse
import json

import pytest

from edgecnn import cli
from edgecnn.accounting import OPTIMIZER_COPIES, model_stats, training_memory
from edgecnn.harness.memory import MEASURED_ON

# CS231n "ConvNets" notes, VGG-16 table: one row per layer output (ReLUs run in place), the input row first.
CS231N_VGG16_ROWS = [224 * 224 * 3] + [224 * 224 * 64] * 2 + [112 * 112 * 64] + [112 * 112 * 128] * 2 \
    + [56 * 56 * 128] + [56 * 56 * 256] * 3 + [28 * 28 * 256] + [28 * 28 * 512] * 3 + [14 * 14 * 512] \
    + [14 * 14 * 512] * 3 + [7 * 7 * 512] + [4096, 4096, 1000]
CS231N_VGG16_WEIGHTS = [0, 1_728, 36_864, 0, 73_728, 147_456, 0, 294_912, 589_824, 589_824, 0, 1_179_648,
                        2_359_296, 2_359_296, 0, 2_359_296, 2_359_296, 2_359_296, 0, 102_760_448, 16_777_216, 4_096_000]


def test_vgg16_reproduces_the_cs231n_table_row_by_row():
    stats = model_stats("vgg16")
    rows = [layer for layer in stats.layers if layer.activations and layer.name != "avgpool"]
    assert [r.activations for r in rows] == CS231N_VGG16_ROWS
    # The lecture lists weights without biases.
    weights = [r.params - (r.output_shape[1] if r.params else 0) for r in rows]
    assert weights == CS231N_VGG16_WEIGHTS
    # Its rows add up to 15.2M, not the "24M x 4 bytes = 93MB" it prints: an arithmetic slip.
    assert sum(CS231N_VGG16_ROWS) == 15_237_608
    # torchvision's adaptive average pool (7x7 -> 7x7 at 224 px, not in the paper) adds one copy.
    assert stats.activations == 15_237_608 + 7 * 7 * 512
    assert all(r.dtype == "float32" and r.bytes == 4 * r.activations for r in stats.layers)


def test_functional_operations_are_counted():
    resnet = model_stats("resnet50")
    adds = sum(layer.activations for layer in resnet.layers if layer.kind == "functional" and layer.type == "add")
    assert adds == 5_519_360  # 16 residual additions
    dense = model_stats("densenet121")
    cats = sum(layer.activations for layer in dense.layers if layer.type == "cat")
    assert cats == 10_549_504 and cats > dense.activations * 0.3
    # views and in-place ops allocate nothing: no functional rows in VGG-16 (flatten is a view)
    assert not [layer for layer in model_stats("vgg16").layers if layer.kind == "functional"]


def test_training_memory_per_image():
    stats = model_stats("resnet18")
    mem = training_memory(stats)
    assert mem["activations_forward_backward_bytes"] == 2 * stats.activation_bytes
    assert mem["parameter_bytes"]["sgd_momentum"] == 3 * 4 * stats.params
    assert mem["parameter_bytes"]["adam"] == 4 * 4 * stats.params
    assert mem["total_bytes_batch1"]["adam"] == 2 * stats.activation_bytes + 16 * stats.params
    assert OPTIMIZER_COPIES == {"sgd": 2, "sgd_momentum": 3, "adam": 4}


def test_model_arg_values():
    """info and export read --model-arg with one parser (cli.model_arg): Python literals, true/false/none."""
    texts = ["width_mult=0.75", "aux_logits=true", "depth=3", "mode=fast", "x=none"]
    assert dict(cli.model_arg(t) for t in texts) == {
        "width_mult": 0.75, "aux_logits": True, "depth": 3, "mode": "fast", "x": None}
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        cli.model_arg("width_mult")


def test_info_json_carries_bytes_dtype_and_model_args(capsys):
    assert cli.main(["info", "inception_v3", "--json", "--layers", "--model-arg", "aux_logits=true"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 27_161_264 and out["options"] == {"aux_logits": True}  # the card's figure, aux head built
    assert {"dtype", "bytes", "kind"} <= set(out["layers"][0]) and out["layers"][0]["name"] == "input"
    assert out["training_memory"]["parameter_bytes"]["adam"] == 16 * out["params"]
    assert cli.main(["info", "lenet5", "--model-arg", "colour=red"]) == 2
    assert "does not take option 'colour'" in capsys.readouterr().err


onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("name", MEASURED_ON)  # the families `info --memory` says the tolerance was checked on
def test_inference_peak_agrees_with_onnxruntime(name):
    from edgecnn.harness.memory import MEASURED_TOLERANCE, inference_memory

    mem = inference_memory(name, measure=True)
    fp32, fp16, int8 = (mem.per_precision[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.weight_bytes == pytest.approx(4 * model_stats(name).params, rel=0.01)  # BN folded: a little less
    assert fp16.peak_bytes < 0.6 * fp32.peak_bytes and int8.peak_bytes < 0.35 * fp32.peak_bytes
    if mem.measured is None:
        pytest.skip("no /proc/self/clear_refs here: cannot measure resident memory")
    measured = mem.measured["weight_bytes"] + mem.measured["activation_bytes"]
    assert measured == pytest.approx(fp32.peak_bytes, rel=MEASURED_TOLERANCE), (measured, fp32.peak_bytes)


def test_liveness_frees_dead_tensors_and_runs_in_place(tmp_path):
    from onnx import TensorProto, helper

    from edgecnn.harness.memory import graph_memory

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])
    nodes = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Exp", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Exp", ["c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "chain", [x], [y]))
    g = graph_memory(model)
    # x and a alive while a is made (the caller's x is never overwritten); a dies into b; Relu writes into
    # b's buffer; never more than two at once.
    assert g.peak_activation_bytes == 2 * 4000 and g.weight_bytes == 0
    assert [t.bytes for t in g.tensors] == [4000, 4000, 4000, 0, 4000]
    assert graph_memory(model, "fp16").peak_activation_bytes == 4000 + 2000  # I/O stays fp32; a, b, c in 2 KB
