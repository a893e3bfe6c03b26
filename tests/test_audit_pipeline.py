"""The real analyses wired through `run_audit` on a tiny model: numbers checked against
onnx.reference, the report's figures present, and the whole result deterministic for a seed."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from onnx.reference import ReferenceEvaluator

from onnxaudit.audit import AuditConfig, run_audit, write_audit
from onnxaudit.compare import compare_runs
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model
from onnxaudit.results.schema import dumps, load_result


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    onnx.save(small_cnn(seed=3), folder / "cnn.onnx")
    rng = np.random.default_rng(0)
    np.savez(
        folder / "data.npz", x=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8), y=np.arange(24) % 3
    )
    return (
        folder,
        prepare_model(folder / "cnn.onnx"),
        load_dataset(folder / "data.npz").subset(6, 0),
    )


CONFIG = AuditConfig(per_class=6, seed=1, patterns_epochs=1, pgd_steps=3)


def test_clean_accuracy_matches_onnx_reference(inputs):
    _, pm, dataset = inputs
    run = run_audit(pm, dataset, CONFIG)
    x = dataset.images(pm.info.input_shape)
    (logits,) = ReferenceEvaluator(small_cnn(seed=3)).run(None, {"x": x})
    expected = float((logits.argmax(1) == dataset.labels).mean())
    robustness = run.result["robustness"]
    assert robustness["clean_accuracy"] == pytest.approx(expected)
    assert robustness["robust_accuracy"] <= robustness["clean_accuracy"]
    assert (robustness["eps"], robustness["steps"], robustness["n"]) == (0.1, 3, 18)
    patterns = run.result["patterns"]
    assert [c["class"] for c in patterns["classes"]] == [0, 1, 2]
    assert isinstance(patterns["backdoor"]["suspected"], bool)


def test_outputs_roundtrip_and_are_deterministic(inputs):
    folder, pm, dataset = inputs
    first, second = (run_audit(pm, dataset, CONFIG) for _ in range(2))
    assert dumps(first.result) == dumps(second.result)
    paths = write_audit(folder / "out", first)
    doc = load_result(paths["result.json"])
    assert doc == json.loads(dumps(first.result))
    assert doc["model"]["layers"][0]["name"] == "conv1"
    html = paths["report.html"].read_text()
    for title in ("Pattern of each class", "Knowledge points on images", "Sample embedding",
                  "Regional embeddings per layer"):  # fmt: skip
        assert f"<strong>{title}</strong>" in html  # the analyses' own figures are embedded
    assert html.count("data:image/png;base64,") >= 7


def test_knowledge_section_and_self_comparison_is_the_identity(inputs):
    _, pm, dataset = inputs
    run = run_audit(pm, dataset, CONFIG)
    layers = run.result["knowledge"]["layers"]
    assert layers and all(0 <= (entry["reliable_ratio"] or 0) <= 1 for entry in layers)
    for entry in layers:  # reliable points are a subset of the points
        assert entry["reliable_knowledge_points"] <= entry["knowledge_points"] + 1e-9
    compared = compare_runs([run, run_audit(pm, dataset, CONFIG)])
    (same,) = compared.doc["comparison"]["knowledge"]
    assert [row["layer"] for row in same["layers"]] == [entry["name"] for entry in layers]
    for row, entry in zip(same["layers"], layers, strict=True):
        assert row["other"]["knowledge_points"] == pytest.approx(entry["knowledge_points"])
        assert row["mean_one_minus_cos"] < 0.1  # refitted, so aligned but not bit-identical
    assert [f.title for f in compared.figures["comparison"]] == ["cnn in cnn's embedding"]
    deltas = compared.doc["comparison"]["layer_deltas"][0]["layers"]
    assert all(row["knowledge_points"] == 0.0 for row in deltas)


def test_checkpoints_give_an_emergence_table(inputs):
    folder, pm, dataset = inputs
    checkpoints = []
    for seed in (7, 3):  # same architecture; the last one is the audited model itself
        onnx.save(small_cnn(seed=seed), folder / f"ckpt{seed}.onnx")
        checkpoints.append(str(folder / f"ckpt{seed}.onnx"))
    config = AuditConfig(
        per_class=6, seed=1, checkpoints=checkpoints, skip={"patterns", "robustness"}
    )
    knowledge = run_audit(pm, dataset, config).result["knowledge"]
    emergence = knowledge["emergence"]
    assert emergence["checkpoints"] == checkpoints
    names = [entry["name"] for entry in knowledge["layers"]]
    assert emergence["layers"] == names
    assert np.asarray(emergence["knowledge_points"]).shape == (2, len(names))


def test_knowledge_can_use_fewer_images_than_the_audit(inputs):
    _, pm, dataset = inputs
    config = AuditConfig(per_class=6, seed=1, knowledge_per_class=2, skip={"patterns"}, pgd_steps=1)
    result = run_audit(pm, dataset, config).result
    assert result["knowledge"]["n_images"] == 6  # 2 of each of the 3 classes
    assert result["robustness"]["n"] == 18 and result["data"]["n"] == 18
