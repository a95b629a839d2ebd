"""int8 recipes and presets, the calibration reader and the 7-bit weight overrides (fast: no quantization)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgecnn.artifact import INPUT_NAME
from edgecnn.errors import ConfigError
from edgecnn.exporters.int8 import (PRESETS, TENSORRT_PRESET, BatchReader, Int8Recipe, _reduce_range_overrides,
                                    get_preset, recipe_for)

import tiny_onnx


def test_presets_are_pinned():
    assert PRESETS == {
        "u8s8": Int8Recipe(preset="u8s8"),
        "u8s8-saturation-aware": Int8Recipe(preset="u8s8-saturation-aware", saturation_aware=True),
        "u8s8-reduce-range": Int8Recipe(preset="u8s8-reduce-range", reduce_range=True),
        "s8s8": Int8Recipe(preset="s8s8", activation_type="int8"),
    }
    default = Int8Recipe()
    assert (default.per_channel, default.activation_type, default.weight_type, default.calibration,
            default.percentile, default.bias_correction, default.equalize) == (True, "uint8", "int8", "minmax",
                                                                               99.999, True, False)
    assert TENSORRT_PRESET == "s8s8" and PRESETS[TENSORRT_PRESET].symmetric
    assert PRESETS["u8s8"].u8s8 and not PRESETS["u8s8"].symmetric and not PRESETS["s8s8"].u8s8


@pytest.mark.parametrize("fields, message", [
    ({"calibration": "kl"}, "calibration method must be one of minmax, percentile, entropy, got 'kl'"),
    ({"activation_type": "int4"}, "activation/weight type must be int8 or uint8"),
    ({"weight_type": "float"}, "activation/weight type must be int8 or uint8"),
])
def test_an_invalid_recipe_is_a_config_error(fields, message):
    with pytest.raises(ConfigError) as e:
        Int8Recipe(**fields)
    assert str(e.value) == message


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy"])
@pytest.mark.parametrize("types", [("int8", "int8"), ("uint8", "int8"), ("uint8", "uint8"), ("int8", "uint8")])
def test_every_valid_recipe_is_accepted(calibration, types):
    r = Int8Recipe(calibration=calibration, activation_type=types[0], weight_type=types[1])
    assert (r.calibration, r.activation_type, r.weight_type) == (calibration, *types)


def test_recipe_to_dict_lists_nodes():
    r = Int8Recipe(exclude_nodes=("a", "b"), reduce_range_nodes=("c",))
    d = r.to_dict()
    assert d["exclude_nodes"] == ["a", "b"] and d["reduce_range_nodes"] == ["c"]
    assert Int8Recipe(**{**d, "exclude_nodes": tuple(d["exclude_nodes"]),
                         "reduce_range_nodes": tuple(d["reduce_range_nodes"])}) == r
    assert d == {**r.__dict__, "exclude_nodes": ["a", "b"], "reduce_range_nodes": ["c"]}


def test_get_preset_and_recipe_for(fake_isa):
    assert get_preset("s8s8") is PRESETS["s8s8"]
    with pytest.raises(ConfigError) as e:
        get_preset("u8u8")
    assert str(e.value) == "unknown int8 preset 'u8u8'; presets: u8s8, u8s8-saturation-aware, u8s8-reduce-range, s8s8"
    fake_isa("avx2", "avx512", "avx512_vnni")
    assert recipe_for() == PRESETS["u8s8"]
    r = recipe_for("s8s8", calibration="entropy", per_channel=False, bias_correction=None, equalize=None)
    assert r == Int8Recipe(preset="s8s8", activation_type="int8", calibration="entropy", per_channel=False)


def test_batch_reader_draws_a_progress_bar_only_when_asked(capsys):
    data = np.zeros((3, 2, 1, 1), np.float32)
    assert len(list(BatchReader(data))) == 3 and capsys.readouterr().err == ""
    assert BatchReader(data).progress is False
    reader = BatchReader(data, progress=True)
    assert reader.progress is True and len(list(reader)) == 3
    err = capsys.readouterr().err
    assert "int8 calibration:" in err and "/3 [" in err and "batch/s]" in err
    assert not err.endswith("\n")  # leave=False: the finished bar is cleared, not left in the log


def test_batch_reader_feeds_batch_1_inputs_then_stops():
    data = np.arange(3 * 2 * 1 * 1, dtype=np.float32).reshape(3, 2, 1, 1)
    for progress in (False, True):
        reader = BatchReader(data, progress=progress)
        feeds = [reader.get_next() for _ in range(4)]
        assert feeds[3] is None and [list(f) for f in feeds[:3]] == [[INPUT_NAME]] * 3
        assert all(np.array_equal(f[INPUT_NAME], data[i: i + 1]) for i, f in enumerate(feeds[:3]))
        reader.rewind()
        assert np.array_equal(reader.get_next()[INPUT_NAME], data[:1])
        assert len(list(reader)) == 3


def _two_gemms(tmp_path):
    """The tiny model plus a Gemm without transB and a Conv whose weights are an input, not a constant."""
    model = tiny_onnx.conv_gemm_model()
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.ones((4, 4), np.float32), "fc2.w"))
    g.node.append(helper.make_node("Gemm", ["logits", "fc2.w"], ["logits2"], name="fc2"))
    g.node.append(helper.make_node("Conv", [INPUT_NAME, INPUT_NAME], ["odd"], name="conv_dynamic"))
    g.initializer.append(numpy_helper.from_array(np.ones((4, 4), np.float32), "fc3.w"))
    g.node.append(helper.make_node("Gemm", ["logits2", "fc3.w"], ["logits3"], name="fc3", transA=1))
    g.initializer.append(numpy_helper.from_array(np.ones((4,), np.float32), "shift"))
    g.node.append(helper.make_node("Add", ["logits3", "shift"], ["shifted"], name="add"))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_reduce_range_overrides_give_7_bit_weights_on_the_right_axis(tmp_path):
    path = _two_gemms(tmp_path)
    assert _reduce_range_overrides(path, [], per_channel=True) == {}
    assert _reduce_range_overrides(path, ["conv", "fc", "fc2"], per_channel=True) == {
        "conv.w": [{"axis": 0, "reduce_range": True}],  # Conv: output channels first
        "fc.w": [{"axis": 0, "reduce_range": True}],  # Gemm with transB: (out, in)
        "fc2.w": [{"axis": 1, "reduce_range": True}],  # Gemm without: (in, out)
    }
    assert _reduce_range_overrides(path, ["fc2"], per_channel=False) == {"fc2.w": [{"reduce_range": True}]}
    # transA is not transB: the weights of a Gemm with transA only are still (in, out)
    assert _reduce_range_overrides(path, ["fc3"], per_channel=True) == {"fc3.w": [{"axis": 1, "reduce_range": True}]}


def test_reduce_range_overrides_read_names_only_not_external_weights(tmp_path):
    """A model whose weights live in an external file: only initializer names are read, never the data."""
    model = onnx.load(_two_gemms(tmp_path))
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    (tmp_path / "w.bin").unlink()  # would fail any attempt to load the weights
    assert _reduce_range_overrides(str(path), ["conv"], per_channel=True) == {"conv.w": [{"axis": 0, "reduce_range": True}]}


def test_reduce_range_overrides_refuse_what_has_no_constant_weights(tmp_path):
    path = _two_gemms(tmp_path)
    with pytest.raises(ConfigError) as e:
        _reduce_range_overrides(path, ["a", "conv", "b", "c", "d", "e", "f"], per_channel=True)
    assert str(e.value) == "reduce_range_nodes not in the model: a, b, c, d, e"
    with pytest.raises(ConfigError) as e:
        _reduce_range_overrides(path, ["relu"], per_channel=True)
    assert str(e.value) == "7-bit weights need a Conv/Gemm with constant weights; 'relu' is Relu"
    with pytest.raises(ConfigError, match="'conv_dynamic' is Conv"):
        _reduce_range_overrides(path, ["conv_dynamic"], per_channel=True)
    with pytest.raises(ConfigError, match="'add' is Add"):  # constant second input, but not a Conv/Gemm
        _reduce_range_overrides(path, ["add"], per_channel=True)


def test_tensorrt_recipe_keeps_the_users_choices_but_the_layout():
    from edgecnn.exporters.int8 import tensorrt_recipe

    mine = Int8Recipe(preset="u8s8-saturation-aware", saturation_aware=True, reduce_range=True, calibration="entropy",
                      per_channel=False, exclude_nodes=("conv1",), reduce_range_nodes=("fc",))
    trt = tensorrt_recipe(mine)
    assert trt == Int8Recipe(preset="s8s8", activation_type="int8", weight_type="int8", calibration="entropy",
                             per_channel=False, exclude_nodes=("conv1",), reduce_range=False, saturation_aware=False,
                             reduce_range_nodes=(), quantize_bias=False, quantize_output=False)
    assert trt.symmetric and not trt.u8s8 and mine.u8s8 and not mine.symmetric


def _qdq_output_model(extra_reader: bool = False):
    """x -> Relu -> t -> QuantizeLinear -> DequantizeLinear -> output (and, optionally, t read by an Identity)."""
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("Relu", ["x"], ["t"], name="relu"),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["tq"], name="q"),
             helper.make_node("DequantizeLinear", ["tq", "s", "z"], ["y"], name="dq")]
    outputs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])]
    if extra_reader:
        nodes.append(helper.make_node("Identity", ["t"], ["y2"], name="other"))
        outputs.append(helper.make_tensor_value_info("y2", onnx.TensorProto.FLOAT, [1, 2]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float_outputs_takes_the_qdq_pair_off_a_graph_output():
    from edgecnn.exporters.int8 import float_outputs

    model = _qdq_output_model()
    assert float_outputs(model) == 1
    assert [(n.op_type, list(n.output)) for n in model.graph.node] == [("Relu", ["y"])]
    assert list(model.graph.initializer) == []  # the pair's scale and zero point went with it
    onnx.checker.check_model(model)
    shared = _qdq_output_model(extra_reader=True)  # the quantized tensor's input is read elsewhere: left alone
    assert float_outputs(shared) == 0 and [n.op_type for n in shared.graph.node] == [
        "Relu", "QuantizeLinear", "DequantizeLinear", "Identity"]
    assert float_outputs(model) == 0  # nothing left to take off


def test_model_batch_reads_the_input_only(tmp_path):
    from edgecnn.exporters.int8 import model_batch

    assert model_batch(tiny_onnx.save(tiny_onnx.conv_gemm_model(batch=4), tmp_path / "b4.onnx").path) == 4
    assert model_batch(tiny_onnx.save(tiny_onnx.conv_gemm_model(batch="n"), tmp_path / "dyn.onnx").path) == 1
    path = tmp_path / "ext.onnx"  # weights in an external file that is gone: never read
    onnx.save_model(tiny_onnx.conv_gemm_model(batch=2), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    assert model_batch(path) == 2


def test_float_outputs_with_several_outputs_and_shared_tensors():
    """Two pairs taken off; a non-QDQ output and a pair whose quantized tensor has two readers left alone; the
    shared scale and zero point (still used) and an unrelated initializer kept."""
    from edgecnn.exporters.int8 import float_outputs

    f = onnx.TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.ones(2, np.float32), "spare")]
    nodes = [helper.make_node("Neg", ["x"], ["y0"], name="neg")]
    for i in (1, 2, 4):
        nodes += [helper.make_node("Relu", ["x"], [f"t{i}"], name=f"relu{i}"),
                  helper.make_node("QuantizeLinear", [f"t{i}", "s", "z"], [f"q{i}"], name=f"q{i}"),
                  helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"y{i}"], name=f"dq{i}")]
    nodes.append(helper.make_node("DequantizeLinear", ["q2", "s", "z"], ["y3"], name="dq3"))  # q2 read twice
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [1, 2])],
                              [helper.make_tensor_value_info(f"y{i}", f, [1, 2]) for i in range(5)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    n = float_outputs(model)
    assert n == 2 and type(n) is int
    assert [(node.name, list(node.output)) for node in model.graph.node] == [
        ("neg", ["y0"]), ("relu1", ["y1"]), ("relu2", ["t2"]), ("q2", ["q2"]), ("dq2", ["y2"]), ("relu4", ["y4"]),
        ("dq3", ["y3"])]
    assert [i.name for i in model.graph.initializer] == ["s", "z", "spare"]
    onnx.checker.check_model(model)
