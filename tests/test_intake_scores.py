"""Class scores before Softmax: what every analysis reads, and refusal of non-classifiers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from intake_graphs import binary_cnn, not_classifier, tensor_values, with_final
from onnx import numpy_helper

from onnxaudit.analyses.knowledge import KnowledgeSettings, analyse_knowledge
from onnxaudit.data import Dataset
from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor
from onnxaudit.model import prepare_model


def saved(tmp_path, model: onnx.ModelProto, name: str):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    "op, reshape", [("Softmax", False), ("LogSoftmax", False), ("Softmax", True)]
)
def test_logits_are_the_scores_before_the_final_normaliser(tmp_path, op, reshape):
    plain = small_cnn(seed=1)
    ended = with_final(plain, op, reshape=reshape)
    prepared = prepare_model(saved(tmp_path, ended, "ended"))
    assert prepared.info.logits_name == "logits" and prepared.info.num_classes == 3
    assert op in prepared.info.logits_reason
    assert [o.name for o in prepared.proto.graph.output] == ["logits"]
    assert op not in {n.op_type for n in prepared.proto.graph.node}
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    logits = FeatureExtractor(prepared, device="cpu").transform(x)["logits"]
    np.testing.assert_allclose(logits, tensor_values(plain, "logits", x), rtol=1e-5, atol=1e-6)
    probs = tensor_values(ended, "probs", x)
    assert not np.allclose(logits, probs, atol=1e-2)  # the test would see probabilities


def test_sigmoid_binary_model_gets_two_class_scores(tmp_path):
    model = binary_cnn(seed=2)
    prepared = prepare_model(saved(tmp_path, model, "binary"))
    info = prepared.info
    assert info.num_classes == 2 and "Sigmoid" in info.logits_reason
    x = np.random.default_rng(1).random((4, 1, 8, 8), dtype=np.float32)
    logits = FeatureExtractor(prepared, device="cpu").transform(x)["logits"]
    z = tensor_values(model, "logits", x)[:, 0]
    np.testing.assert_allclose(logits[:, 0], 0.0)
    np.testing.assert_allclose(logits[:, 1], z, rtol=1e-5, atol=1e-6)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(softmax[:, 1], tensor_values(model, "probs", x)[:, 0], rtol=1e-5)


@pytest.mark.parametrize(
    "kind, shape", [("detector", "'N', 1, 8, 8"), ("sequence", "'N', 8, 48"), ("single", "'N', 1")]
)
def test_non_classifiers_are_refused_in_one_line(tmp_path, kind, shape):
    with pytest.raises(AuditError, match="not an image classifier") as error:
        prepare_model(saved(tmp_path, not_classifier(kind), kind))
    assert shape in str(error.value) and "\n" not in str(error.value)


def tiny_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(24) % 3
    base = rng.random((3, 8, 8, 1))
    images = np.clip(base[labels] + 0.3 * rng.standard_normal((24, 8, 8, 1)), 0, 1)
    return Dataset(
        labels=labels, classes=["a", "b", "c"], source="tiny", array=images.astype(np.float32)
    )


def confident_cnn(data: Dataset) -> onnx.ModelProto:
    """small_cnn with its Gemm head set to the class centroids of its features, scaled to give
    confident scores: a random head leaves every posterior near 1/K, hence no knowledge points."""
    model = small_cnn(seed=3)
    features = tensor_values(model, "flat", data.images((1, 8, 8)))
    centroids = np.stack([features[data.labels == c].mean(0) for c in range(3)])
    head = centroids - features.mean(0)
    head *= 20.0 / np.abs(head).max()
    for init in model.graph.initializer:
        if init.name == "fc_w":
            init.CopyFrom(numpy_helper.from_array(head.astype(np.float32), "fc_w"))
    return model


def test_knowledge_points_do_not_change_with_a_final_softmax(tmp_path):
    data = tiny_dataset()
    plain = confident_cnn(data)
    settings = KnowledgeSettings(partners=8, sample_max_iter=100, region_max_iter=20)
    results = [
        analyse_knowledge(
            prepare_model(saved(tmp_path, model, name)),
            data,
            layers=["relu1", "relu2"],
            device="cpu",
            settings=settings,
            threads=1,
        )
        for model, name in ((plain, "plain"), (with_final(plain), "softmax"))
    ]
    counts = [[layer.knowledge_points for layer in r.layers] for r in results]
    assert min(counts[0]) > 0  # probabilities taken as logits give 0 points on this model
    assert counts[0] == pytest.approx(counts[1], rel=1e-6)
    np.testing.assert_array_equal(results[0].predictions, results[1].predictions)
