"""analyse_knowledge, compare_models and the CLI verb on a tiny onnx.helper model.

Features are checked against onnx.reference, the result is JSON and deterministic for a seed.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import typer
from graphs import small_cnn
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from typer.testing import CliRunner

from onnxaudit.analyses.knowledge import KnowledgeSettings, analyse_knowledge, compare_models
from onnxaudit.analyses.knowledge.align import procrustes_rotation
from onnxaudit.cli.knowledge import knowledge
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model
from onnxaudit.results.schema import dumps

SETTINGS = KnowledgeSettings(partners=8, sample_max_iter=100, region_max_iter=20)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("knowledge")
    onnx.save(small_cnn(seed=3), folder / "cnn.onnx")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.savez(folder / "data.npz", x=x, y=np.arange(30) % 3)
    return folder, prepare_model(folder / "cnn.onnx"), load_dataset(folder / "data.npz")


@pytest.fixture(scope="module")
def result(inputs):
    _, pm, dataset = inputs
    return analyse_knowledge(pm, dataset.subset(8, 2), seed=2, settings=SETTINGS, device="cpu")


def reference_outputs(x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    model = small_cnn(seed=3)
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return ReferenceEvaluator(model).run(None, {"x": x})


def test_embeddings_use_the_models_own_features(result):
    logits, flat, relu2 = reference_outputs(result.images, ["flat", "relu2"])
    np.testing.assert_array_equal(result.predictions, logits.argmax(1))
    np.testing.assert_allclose(
        result.sample.embedding, result.fitted.sample.transform(flat), rtol=1e-4, atol=1e-5
    )
    names = [layer.name for layer in result.layers]
    assert names == ["relu1", "relu2"]  # the end of each spatial stage
    regions = relu2.reshape(len(relu2), relu2.shape[1], -1).transpose(0, 2, 1)  # 4x4 < grid
    np.testing.assert_allclose(
        result.layers[1].embedding,
        result.fitted.regions["relu2"].transform(regions),
        rtol=1e-4,
        atol=1e-5,
    )
    assert result.layers[0].maps.shape == (24, 8, 8)
    assert result.layers[1].maps.shape == (24, 4, 4)


def test_to_dict_is_json_and_consistent(result):
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["n_images"] == 24 and doc["seed"] == {"entropy": 2, "spawn_key": []}
    assert doc["settings"]["partners"] == 8
    for entry, layer in zip(doc["layers"], result.layers, strict=True):
        assert entry["knowledge_points"] == pytest.approx(layer.maps.sum((1, 2)).mean())
        assert entry["reliable_knowledge_points"] <= entry["knowledge_points"]
    corr = doc["sample_embedding"]["strength_uncertainty_corr"]
    assert -1.0 <= corr <= 1.0


def test_self_comparison_reproduces_the_counts(inputs, result):
    _, pm, _ = inputs
    same = compare_models(result, pm, device="cpu")
    for row, layer in zip(same.layers, result.layers, strict=True):
        assert row.other.knowledge_points == layer.knowledge_points
        assert row.mean_one_minus_cos == pytest.approx(0.0, abs=1e-6)
        assert 0 < row.cos_hist.sum() <= layer.embedding.shape[0] * layer.embedding.shape[1]
    assert json.loads(dumps(same))["layers"][0]["cos_hist"]["counts"]


def test_zero_budget_attack_moves_nothing(inputs):
    _, pm, dataset = inputs
    settings = KnowledgeSettings(partners=8, sample_max_iter=50, region_max_iter=10, attack_eps=0.0)
    res = analyse_knowledge(
        pm, dataset.subset(4, 0), seed=0, attack=True, settings=settings, device="cpu"
    )
    assert res.adversarial.success_rate == 0.0
    for layer in res.adversarial.layers:
        assert layer.delta_orientation == pytest.approx(0.0, abs=1e-5)
        assert layer.delta_strength == pytest.approx(0.0, abs=1e-5)
        assert sum(layer.attack_types.values()) == 0


def test_checkpoints_give_aligned_emergence_curves(inputs):
    folder, pm, dataset = inputs
    paths = []
    for seed in (7, 3):
        onnx.save(small_cnn(seed=seed), folder / f"cnn-iter{seed:03d}.onnx")
        paths.append(folder / f"cnn-iter{seed:03d}.onnx")
    checkpoints = [prepare_model(path) for path in paths]
    res = analyse_knowledge(
        pm, dataset.subset(4, 0), checkpoints=checkpoints, settings=SETTINGS, device="cpu"
    )
    e = res.emergence
    assert e.iterations == [7, 3]
    assert e.knowledge_points.shape == (2, 2)
    assert len(e.embeddings) == 2 and e.embeddings[0].shape == (12, 3)
    # each checkpoint's g is rotated onto the previous one: no further rotation improves the fit
    rotation = procrustes_rotation(e.embeddings[1], e.embeddings[0], SETTINGS.procrustes_trim)
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-6)


def test_cli_writes_a_deterministic_result(inputs, tmp_path):
    folder, _, _ = inputs
    app = typer.Typer()
    app.command()(knowledge)
    app.callback()(lambda: None)
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["knowledge", str(folder / "cnn.onnx"), "--data", str(folder / "data.npz")]
        args += ["--per-class", "5", "--seed", "4", "--device", "cpu", "--out", str(out)]
        outcome = CliRunner().invoke(app, args)
        assert outcome.exit_code == 0, outcome.output
        docs.append((out / "result.json").read_text())
        assert "Knowledge points on images" in (out / "report.html").read_text()
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert doc["schema"] == "onnxaudit/result@1"
    assert doc["model"]["sha256"] and doc["data"]["n"] == 15
    assert doc["patterns"] is None and doc["robustness"] is None  # audit --only knowledge
    section = doc["knowledge"]
    assert {"name", "knowledge_points", "reliable_knowledge_points", "reliable_ratio"} <= set(
        section["layers"][0]
    )
    assert "pca_strength_uncertainty_corr" in section["sample_embedding"]
    assert section["settings"]["tau"] == 0.4
