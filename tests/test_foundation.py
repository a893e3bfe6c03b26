"""Model description, graph rewrites and streamed extraction against onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from onnx.reference import ReferenceEvaluator

from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.features.runtime import create_session
from onnxaudit.model import passes as rewrite
from onnxaudit.model import prepare_model

LAYERS = ["conv1", "relu1", "pool1", "conv2"]


def reference(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Intermediate tensors computed by the reference evaluator (independent of onnxruntime)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in names:
        exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    values = ReferenceEvaluator(exposed).run(None, {"x": x})
    outputs = [o.name for o in exposed.graph.output]
    return dict(zip(outputs, values, strict=True))


def adaptive_pool(x: np.ndarray, grid: int) -> np.ndarray:
    """Numpy adaptive average pooling (N, C, H, W) -> (N, R, C), the definition used by torch."""
    n, c, h, w = x.shape
    gh, gw = min(grid, h), min(grid, w)
    out = np.empty((n, c, gh, gw), x.dtype)
    for i in range(gh):
        for j in range(gw):
            rows = slice(i * h // gh, -(-(i + 1) * h // gh))
            cols = slice(j * w // gw, -(-(j + 1) * w // gw))
            out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out.reshape(n, c, gh * gw).transpose(0, 2, 1)


@pytest.fixture
def nchw_path(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(seed=1), path)
    return path


def test_describe_reads_structure(nchw_path):
    info = prepare_model(nchw_path).info
    assert info.input_name == "x" and info.input_shape == (1, 8, 8) and info.layout == "NCHW"
    assert info.logits_name == "logits" and info.num_classes == 3
    assert info.sample_feature_name == "flat" and info.sample_feature_dim == 6
    assert [layer.name for layer in info.layers] == ["conv1", "relu1", "pool1", "conv2", "relu2"]
    pool1 = info.layer("pool1")
    assert (pool1.channels, pool1.height, pool1.width, pool1.stride) == (4, 4, 4, 2.0)
    with pytest.raises(AuditError, match="unknown layer"):
        info.layer("nope")


@pytest.mark.parametrize("grid", [None, 2, 3])
def test_exposed_tensors_match_reference(nchw_path, grid):
    model = onnx.load(nchw_path)
    prepared = prepare_model(nchw_path)
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    expected = reference(model, x, LAYERS + ["flat"])
    out = FeatureExtractor(
        prepared, LAYERS, grid=grid, sample_feature=True, batch_size=2
    ).transform(x)
    for name in LAYERS:
        want = expected[name] if grid is None else adaptive_pool(expected[name], grid)
        np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["sample_feature"], expected["flat"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["logits"], expected["logits"], rtol=1e-5, atol=1e-5)


def test_original_outputs_bit_identical(nchw_path):
    model = onnx.load(nchw_path)
    x = np.random.default_rng(1).random((7, 1, 8, 8), dtype=np.float32)
    plain = create_session(model, device="cpu").run(["logits"], {"x": x})[0]
    shapes = {name: (6, 4, 4) if name == "conv2" else (4, 8, 8) for name in LAYERS}
    shapes["pool1"] = (4, 4, 4)
    exposed, _ = rewrite.expose_tensors(model, LAYERS, grid=3, shapes=shapes)
    onnx.checker.check_model(exposed)
    again = create_session(exposed, device="cpu").run(["logits"], {"x": x})[0]
    assert np.array_equal(plain, again)


def test_nhwc_model_is_canonicalised(tmp_path):
    path = tmp_path / "nhwc.onnx"
    model = small_cnn(seed=2, nhwc=True)
    onnx.save(model, path)
    prepared = prepare_model(path)
    info = prepared.info
    assert info.layout == "NHWC" and info.input_shape == (3, 8, 8)
    assert info.layer("relu2_nhwc").layout == "NHWC"
    assert info.layer("relu2_nhwc").channels == 6
    x_nchw = np.random.default_rng(3).random((4, 3, 8, 8), dtype=np.float32)
    x_nhwc = x_nchw.transpose(0, 2, 3, 1).copy()
    expected = reference(model, x_nhwc, ["conv1", "relu2_nhwc"])
    out = FeatureExtractor(prepared, ["conv1", "relu2_nhwc"]).transform(x_nchw)
    np.testing.assert_allclose(out["conv1"], expected["conv1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        out["relu2_nhwc"], expected["relu2_nhwc"].transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(out["logits"], expected["logits"], rtol=1e-5, atol=1e-5)


def test_normalisation_is_prepended(nchw_path):
    model = onnx.load(nchw_path)
    prepared = prepare_model(nchw_path, mean=(0.5,), std=(0.25,))
    x = np.random.default_rng(4).random((3, 1, 8, 8), dtype=np.float32)
    expected = reference(model, (x - 0.5) / 0.25, [])["logits"]
    out = FeatureExtractor(prepared).transform(x)["logits"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_external_data_and_dynamic_batch(tmp_path):
    path = tmp_path / "ext.onnx"
    model = small_cnn(seed=3)
    onnx.save(model, path, save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    model = small_cnn(seed=3)  # saving moved the weights out of `model`
    assert (tmp_path / "ext.onnx.data").exists()
    prepared = prepare_model(path)
    extractor = FeatureExtractor(prepared, ["relu2"], grid=2)
    for batch in (1, 6):
        x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
        expected = reference(model, x, ["relu2"])
        out = extractor.transform(x)
        np.testing.assert_allclose(out["relu2"], adaptive_pool(expected["relu2"], 2), atol=1e-5)


def test_extract_to_npz_streams_everything(nchw_path, tmp_path):
    from onnxaudit.data import Dataset

    rng = np.random.default_rng(5)
    data = Dataset(
        labels=np.arange(11) % 3,
        classes=["a", "b", "c"],
        source="mem",
        array=rng.integers(0, 256, (11, 8, 8, 1), dtype=np.uint8),
    )
    prepared = prepare_model(nchw_path)
    out = tmp_path / "sub" / "feats.npz"
    shapes = FeatureExtractor(prepared, ["pool1"], grid=2, batch_size=4).extract_to_npz(data, out)
    assert shapes["pool1"] == (11, 4, 4)
    with np.load(out) as saved:
        assert set(saved.files) == {"logits", "pool1", "labels"}
        x = data.images((1, 8, 8))
        expected = reference(onnx.load(nchw_path), x, ["pool1"])
        np.testing.assert_allclose(saved["pool1"], adaptive_pool(expected["pool1"], 2), atol=1e-5)
        np.testing.assert_array_equal(saved["labels"], data.labels)
    assert [p.name for p in out.parent.iterdir()] == ["feats.npz"]


def test_shapes_inference_cannot_reach_are_probed(tmp_path):
    """A Reshape whose target shape is computed at run time defeats shape inference."""
    model = small_cnn(seed=4)
    graph = model.graph
    helper = onnx.helper
    idx = [i for i, n in enumerate(graph.node) if n.output[0] == "pool1"][0]
    graph.node[idx].output[0] = "pool1_raw"
    graph.node.insert(idx + 1, helper.make_node("Shape", ["pool1_raw"], ["pool1_shape"]))
    graph.node.insert(
        idx + 2, helper.make_node("Reshape", ["pool1_raw", "pool1_shape"], ["pool1_dyn"])
    )
    graph.node.insert(idx + 3, helper.make_node("Relu", ["pool1_dyn"], ["pool1"]))
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    info = prepare_model(path).info
    layer = info.layer("pool1")
    assert (layer.channels, layer.height, layer.width) == (4, 4, 4)
