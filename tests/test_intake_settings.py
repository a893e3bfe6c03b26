"""What the model expects: input size, channel order, pixel scale, normalisation, class names, batch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from intake_graphs import BGR_MEAN, BGR_STD, bgr_255, bgr_reference_input, paddle_style
from onnx import helper, numpy_helper

from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.features.runtime import create_session
from onnxaudit.model import load_class_names, prepare_model

BGR_SETTINGS = dict(
    input_shape=(3, 12, 12), channel_order="bgr", input_scale=255, mean=BGR_MEAN, std=BGR_STD
)


def saved(tmp_path, model, name="m"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    name = model.graph.input[0].name
    return create_session(model, device="cpu").run(None, {name: x})[0]


@pytest.mark.parametrize("from_metadata", [False, True])
def test_bgr_0_255_model_is_fed_what_it_expects(tmp_path, from_metadata):
    model = bgr_255(seed=1, metadata=from_metadata)
    kwargs = {} if from_metadata else BGR_SETTINGS
    prepared = prepare_model(saved(tmp_path, model), **kwargs)
    settings = prepared.info.preprocessing
    assert prepared.info.input_shape == (3, 12, 12)
    assert (settings.channel_order, settings.input_scale) == ("bgr", 255.0)
    assert set(settings.sources.values()) >= {"metadata" if from_metadata else "argument"}
    x = np.random.default_rng(0).random((4, 3, 12, 12), dtype=np.float32)
    logits = FeatureExtractor(prepared, device="cpu").transform(x)["logits"]
    expected = run(model, bgr_reference_input(x))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    rgb_fed = run(model, bgr_reference_input(x[:, ::-1].copy()))
    assert not np.allclose(logits, rgb_fed, atol=1e-3)  # the order matters to this model
    identity = prepared.identity()
    assert identity["preprocessing"]["channel_order"] == "bgr"
    assert tuple(identity["preprocessing"]["mean"]) == BGR_MEAN


def test_arguments_override_metadata(tmp_path):
    prepared = prepare_model(saved(tmp_path, bgr_255(metadata=True)), channel_order="rgb")
    settings = prepared.info.preprocessing
    assert settings.channel_order == "rgb" and settings.sources["channel_order"] == "argument"
    assert settings.input_scale == 255.0 and settings.sources["input_scale"] == "metadata"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(channel_order="gbr"), "--channel-order takes rgb or bgr"),
        (dict(input_scale=0), "--input-scale takes one positive number"),
        (dict(mean=(1.0, 2.0)), "--mean has 2 values but the model takes 3 channels"),
        (dict(std=(0.0,)), "--std values must be non-zero"),
        (dict(input_shape=(3, 12)), "--input-shape takes C,H,W"),
        (dict(class_names=["a", "b"]), "2 class names given but the model has 3 classes"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, kwargs, message):
    settings = {**BGR_SETTINGS, **kwargs}
    with pytest.raises(AuditError, match=message):
        prepare_model(saved(tmp_path, bgr_255()), **settings)


def test_dynamic_size_needs_input_shape_and_then_works(tmp_path):
    path = saved(tmp_path, paddle_style(seed=2))
    with pytest.raises(AuditError, match="give them with --input-shape C,H,W"):
        prepare_model(path)
    prepared = prepare_model(path, input_shape=(3, 20, 24))
    assert prepared.info.input_shape == (3, 20, 24)
    layer = prepared.info.layer("relu_1.tmp_0")
    assert (layer.height, layer.width, layer.stride) == (10, 12, 2.0)


def test_class_names_from_a_file(tmp_path):
    lines = tmp_path / "classes.txt"
    lines.write_text("cat\n\ndog\nbird\n")
    listed = tmp_path / "classes.json"
    listed.write_text(json.dumps(["cat", "dog", "bird"]))
    assert load_class_names(lines) == load_class_names(listed) == ["cat", "dog", "bird"]
    names = load_class_names(lines)
    prepared = prepare_model(saved(tmp_path, small_cnn(seed=0)), class_names=names)
    assert prepared.info.class_names == ["cat", "dog", "bird"]
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2")
    with pytest.raises(AuditError, match="not a valid JSON list"):
        load_class_names(broken)


def fixed_batch_cnn(mix_batch: bool, classes: int = 3) -> onnx.ModelProto:
    """small_cnn with a batch of 1 and a Reshape to (1, -1); optionally a batch-mixing mean."""
    model = small_cnn(seed=4, classes=classes)
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    flatten = next(n for n in graph.node if n.op_type == "Flatten")
    reshape = helper.make_node("Reshape", [flatten.input[0], "flat_shape"], ["flat"])
    graph.node.remove(flatten)
    graph.node.insert(len(graph.node) - 1, reshape)
    graph.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    if mix_batch:  # subtracts the batch mean: a per-image run gives other scores
        gemm = graph.node[-1]
        gemm.input[0] = "flat_centred"
        graph.node.insert(
            len(graph.node) - 1,
            helper.make_node("ReduceMean", ["flat"], ["flat_mean"], axes=[0], keepdims=1),
        )
        graph.node.insert(
            len(graph.node) - 1, helper.make_node("Sub", ["flat", "flat_mean"], ["flat_centred"])
        )
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("classes", [3, 1000])  # 1000: a head big enough to be set aside
def test_fixed_batch_is_made_dynamic_when_safe(tmp_path, classes):
    model = fixed_batch_cnn(mix_batch=False, classes=classes)
    prepared = prepare_model(saved(tmp_path, model))
    assert prepared.info.batch == "made dynamic" and prepared.info.fixed_batch is None
    x = np.random.default_rng(5).random((6, 1, 8, 8), dtype=np.float32)
    logits = FeatureExtractor(prepared, ["relu2"], grid=2, device="cpu").transform(x)["logits"]
    per_image = np.concatenate([run(model, x[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(logits, per_image, rtol=1e-5, atol=1e-6)


def test_fixed_batch_runs_per_image_when_not_safe(tmp_path):
    model = fixed_batch_cnn(mix_batch=True)
    prepared = prepare_model(saved(tmp_path, model))
    assert prepared.info.batch == "fixed" and prepared.info.fixed_batch == 1
    x = np.random.default_rng(6).random((3, 1, 8, 8), dtype=np.float32)
    extractor = FeatureExtractor(prepared, ["relu2"], batch_size=64, device="cpu")
    assert extractor.batch_size == 1
    logits = extractor.transform(x)["logits"]
    per_image = np.concatenate([run(model, x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(logits, per_image, rtol=1e-5, atol=1e-6)


def test_set_aside_weights_come_back_whole(tmp_path):
    """Passes run on a hollow graph; the prepared model must hold every weight byte again."""
    model = small_cnn(seed=7, classes=1000)  # fc_w: 6000 values, over the set-aside limit
    prepared = prepare_model(saved(tmp_path, model), mean=(0.5,), std=(0.5,))
    weights = {t.name: numpy_helper.to_array(t) for t in prepared.proto.graph.initializer}
    np.testing.assert_array_equal(
        weights["fc_w"],
        numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fc_w")),
    )
    x = np.random.default_rng(8).random((2, 1, 8, 8), dtype=np.float32)
    logits = FeatureExtractor(prepared, device="cpu").transform(x)["logits"]
    np.testing.assert_allclose(logits, run(model, (x - 0.5) / 0.5), rtol=1e-5, atol=1e-5)
