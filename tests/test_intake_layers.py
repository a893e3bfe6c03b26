"""Candidate layers, shapes computed inside the graph, and the `layers` / `extract` verbs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from intake_graphs import paddle_style, tensor_values, tf2onnx_style
from typer.testing import CliRunner

from onnxaudit.cli import app
from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.features.gradients import CrossEntropy, InputGradient
from onnxaudit.model import prepare_model, resolve_layers

runner = CliRunner()
LONG = "backbone/" + "stage_with_a_very_long_exporter_generated_name/" * 3 + "relu1"


def saved(tmp_path, model, name="m"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def test_computed_pads_are_folded_and_the_padded_input_is_no_layer(tmp_path):
    model = tf2onnx_style(seed=1)
    prepared = prepare_model(saved(tmp_path, model))
    ops = [n.op_type for n in prepared.proto.graph.node]
    assert "Shape" not in ops and "Pad" in ops  # the pads became a constant
    names = [layer.name for layer in prepared.info.layers]
    assert names == ["conv_nchw", "conv/Relu:0"]  # not 'padded' / 'padded_nchw'
    assert prepared.info.layer("conv/Relu:0").layout == "NHWC"
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    x_nhwc = x.transpose(0, 2, 3, 1).copy()
    expected = tensor_values(model, "dense/BiasAdd:0", x_nhwc)
    out = FeatureExtractor(prepared, names, grid=7, device="cpu").transform(x)
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-5, atol=1e-6)
    assert out["conv/Relu:0"].shape == (3, 49, 8)
    gradient = InputGradient(prepared.proto, CrossEntropy(), device="cpu")(x, np.array([0, 1, 2]))
    assert gradient.input_grad.shape == x.shape and np.abs(gradient.input_grad).sum() > 0


def test_batch_dependent_shape_arithmetic_is_kept(tmp_path):
    prepared = prepare_model(saved(tmp_path, paddle_style(seed=3)), input_shape=(3, 16, 16))
    assert "Shape" in [n.op_type for n in prepared.proto.graph.node]  # (N, -1) follows the batch
    extractor = FeatureExtractor(prepared, ["relu_1.tmp_0"], grid=3, sample_feature=True)
    for batch in (1, 5):
        x = np.random.default_rng(batch).random((batch, 3, 16, 16), dtype=np.float32)
        out = extractor.transform(x)
        assert out["logits"].shape == (batch, 4) and out["sample_feature"].shape == (batch, 8)


def test_constants_and_weights_are_not_layers(tmp_path):
    model = small_cnn(seed=0)
    graph = model.graph
    helper = onnx.helper
    # a 4-D constant computed in the graph, added to conv1: it is not an activation
    graph.node.insert(
        0,
        helper.make_node(
            "Constant",
            [],
            ["bias_map"],
            value=onnx.numpy_helper.from_array(np.ones((1, 4, 8, 8), np.float32)),
        ),
    )
    graph.node.insert(1, helper.make_node("Relu", ["bias_map"], ["bias_map_relu"]))
    conv1 = next(n for n in graph.node if n.output[0] == "conv1")
    conv1.output[0] = "conv1_raw"
    graph.node.insert(
        list(graph.node).index(conv1) + 1,
        helper.make_node("Add", ["conv1_raw", "bias_map_relu"], ["conv1"]),
    )
    names = [layer.name for layer in prepare_model(saved(tmp_path, model)).info.layers]
    assert "bias_map_relu" not in names and "bias_map" not in names
    assert names == ["conv1_raw", "conv1", "relu1", "pool1", "conv2", "relu2"]


def test_layers_resolve_by_name_or_number(tmp_path):
    info = prepare_model(saved(tmp_path, small_cnn(seed=0))).info
    assert resolve_layers(info, ["0", "relu2", " 2"]) == ["conv1", "relu2", "pool1"]
    assert resolve_layers(info, ["all"]) == [layer.name for layer in info.layers]
    with pytest.raises(AuditError, match="layer number 9 is out of range"):
        resolve_layers(info, ["9"])
    with pytest.raises(AuditError, match="unknown layer 'nope'"):
        resolve_layers(info, ["nope"])


def long_named_cnn() -> onnx.ModelProto:
    model = small_cnn(seed=0)
    for node in model.graph.node:
        node.input[:] = [LONG if i == "relu1" else i for i in node.input]
        node.output[:] = [LONG if o == "relu1" else o for o in node.output]
    return model


def test_layers_piped_shows_full_names_and_json(tmp_path):
    path = saved(tmp_path, long_named_cnn())
    table = runner.invoke(app, ["layers", str(path)])
    assert table.exit_code == 0, table.output
    assert LONG in table.output and "before normalisation" not in table.output
    result = runner.invoke(app, ["layers", str(path), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert described["logits_name"] == "logits" and described["num_classes"] == 3
    assert "does not end in Softmax" in described["logits_reason"]
    assert described["sample_feature_name"] == "flat"
    first = described["layers"][1]
    assert first["index"] == 1 and first["name"] == LONG and first["op_type"] == "Relu"
    assert (first["channels"], first["height"], first["width"], first["stride"]) == (4, 8, 8, 1.0)
    assert described["preprocessing"]["channel_order"] == "rgb"


def test_cli_options_reach_the_model(tmp_path):
    path = saved(tmp_path, paddle_style(seed=0))
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\nc\nd\n")
    args = ["layers", str(path), "--json", "--input-shape", "3,12,20", "--channel-order", "bgr"]
    result = runner.invoke(app, [*args, "--input-scale", "255", "--classes", str(classes)])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert described["input_shape"] == [3, 12, 20] and described["class_names"] == list("abcd")
    assert described["preprocessing"]["input_scale"] == 255.0
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (8, 12, 20, 3), dtype=np.uint8), y=np.arange(8) % 4)
    out = tmp_path / "feats.npz"
    extract = ["extract", str(path), "-d", str(data), "--layers", "0,3", "--grid", "7"]
    result = runner.invoke(app, [*extract, "--out", str(out), "--input-shape", "3,12,20"])
    assert result.exit_code == 0, result.output
    assert "labels 0=0, 1=1, 2=2, 3=3" in result.output
    with np.load(out) as saved_features:
        # 6 x 10 maps pooled to at most 7 x 7 regions: 6 x 7
        assert saved_features["conv2d_0.tmp_0"].shape == (8, 42, 8)
        assert saved_features["relu_1.tmp_0"].shape == (8, 42, 8)
        assert saved_features["logits"].shape == (8, 4)


def test_a_graph_that_cannot_run_names_the_node(tmp_path):
    """Shapes only a run can tell: the error says which node failed and on what batch."""
    model = small_cnn(seed=0)
    graph = model.graph
    helper = onnx.helper
    ints = onnx.numpy_helper.from_array
    graph.initializer.extend(
        [ints(np.array([0], np.int64), "zero"), ints(np.array([1], np.int64), "one")]
    )
    graph.initializer.append(ints(np.array([7], np.int64), "seven"))
    flatten = next(n for n in graph.node if n.op_type == "Flatten")
    at = list(graph.node).index(flatten)
    computed = [
        helper.make_node("Shape", ["gap"], ["gap_shape"]),
        helper.make_node("Slice", ["gap_shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "seven"], ["target"], axis=0),  # 6 features, not 7
        helper.make_node("Reshape", ["gap", "target"], ["flat"], name="head/reshape"),
    ]
    graph.node.remove(flatten)
    for offset, node in enumerate(computed):
        graph.node.insert(at + offset, node)
    with pytest.raises(AuditError, match=r"probing batch of shape \[1, 1, 8, 8\].*head/reshape"):
        prepare_model(saved(tmp_path, model))
