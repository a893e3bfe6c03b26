"""The real analyses through the public API on a tiny model: numbers checked against
onnx.reference, the report's figures present, the result deterministic for a seed, the API and
the CLI writing the same result.json, and model options reaching the training checkpoints."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import cli, make_inputs
from graphs import small_cnn
from onnx.reference import ReferenceEvaluator

import onnxaudit
from onnxaudit.cli.audit import audit as audit_command
from onnxaudit.results.schema import dumps, load_result

FAST = {"per_class": 6, "seed": 1, "patterns_epochs": 1, "pgd_steps": 3}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    model, data = make_inputs(folder, n=24, model_seed=3)
    return folder, model, data


@pytest.fixture(scope="module")
def first_run(inputs):
    _, model, data = inputs
    return onnxaudit.audit(model, data, **FAST)


def test_clean_accuracy_matches_onnx_reference(first_run):
    x = first_run.data.images(first_run.model.info.input_shape)
    (logits,) = ReferenceEvaluator(small_cnn(seed=3)).run(None, {"x": x})
    expected = float((logits.argmax(1) == first_run.data.labels).mean())
    doc = first_run.to_dict()
    robustness = doc["robustness"]
    assert robustness["clean_accuracy"] == pytest.approx(expected)
    assert robustness["robust_accuracy"] <= robustness["clean_accuracy"]
    assert (robustness["eps"], robustness["steps"], robustness["n"]) == (0.1, 3, 18)
    assert doc["data"]["n"] == 18 and doc["settings"]["per_class"] == 6
    assert [c["class"] for c in doc["patterns"]["classes"]] == [0, 1, 2]
    assert isinstance(doc["patterns"]["backdoor"]["suspected"], bool)


def test_outputs_roundtrip_and_are_deterministic(inputs, first_run):
    folder, model, data = inputs
    second = onnxaudit.audit(model, data, **FAST)
    assert dumps(first_run.to_dict()) == dumps(second.to_dict())
    paths = onnxaudit.write_report(first_run, folder / "out")
    doc = load_result(paths["result.json"])
    assert doc == json.loads(dumps(first_run.to_dict()))
    assert doc["model"]["layers"][0]["name"] == "conv1"
    html = paths["report.html"].read_text()
    for title in ("Pattern of each class", "Knowledge points on images", "Sample embedding",
                  "Regional embeddings per layer"):  # fmt: skip
        assert f"<strong>{title}</strong>" in html  # the analyses' own figures are embedded
    assert html.count("data:image/png;base64,") >= 7


def test_seeds_are_spawned_per_purpose_and_recorded(first_run):
    seeds = first_run.to_dict()["settings"]["seeds"]
    assert seeds["entropy"] == 1
    keys = seeds["spawn_keys"]
    assert len({tuple(k) for k in keys.values()}) == len(keys)  # one stream per purpose
    other = onnxaudit.audit(first_run.model, first_run.data, **{**FAST, "seed": 2}).to_dict()
    assert other["settings"]["seeds"]["entropy"] == 2


def test_api_result_equals_the_cli_result_json(inputs, runner, tmp_path):
    _, model, data = inputs
    args = ["--per-class", "6", "--seed", "1", "--pattern-epochs", "1", "--steps", "3"]
    out = tmp_path / "cli"
    done = runner.invoke(
        cli(audit_command), [str(model), "--data", str(data), "-o", str(out), *args]
    )
    assert done.exit_code == 0, done.output
    from_cli = json.loads((out / "result.json").read_text())
    from_api = json.loads(dumps(onnxaudit.audit(str(model), str(data), **FAST).to_dict()))
    assert from_api == from_cli


def test_self_comparison_is_the_identity(first_run):
    compared = onnxaudit.compare([first_run.model, first_run.model], first_run.data, **FAST)
    layers = first_run.to_dict()["knowledge"]["layers"]
    assert layers and all(0 <= (entry["reliable_ratio"] or 0) <= 1 for entry in layers)
    for entry in layers:  # reliable points are a subset of the points
        assert entry["reliable_knowledge_points"] <= entry["knowledge_points"] + 1e-9
    doc = compared.to_dict()
    (same,) = doc["comparison"]["knowledge"]
    assert [row["layer"] for row in same["layers"]] == [entry["name"] for entry in layers]
    for row, entry in zip(same["layers"], layers, strict=True):
        assert row["other"]["knowledge_points"] == pytest.approx(entry["knowledge_points"])
        assert row["mean_one_minus_cos"] < 0.1  # refitted, so aligned but not bit-identical
    deltas = doc["comparison"]["layer_deltas"][0]["layers"]
    assert all(row["knowledge_points"] == 0.0 for row in deltas)


def test_checkpoints_give_an_emergence_table(inputs):
    folder, model, data = inputs
    checkpoints = []
    for seed in (7, 3):  # same architecture; the last one is the audited model itself
        onnx.save(small_cnn(seed=seed), folder / f"ckpt{seed}.onnx")
        checkpoints.append(str(folder / f"ckpt{seed}.onnx"))
    result = onnxaudit.audit(model, data, per_class=6, seed=1, checkpoints=checkpoints,
                             skip=["patterns", "robustness"])  # fmt: skip
    knowledge = result.to_dict()["knowledge"]
    emergence = knowledge["emergence"]
    assert emergence["checkpoints"] == checkpoints
    names = [entry["name"] for entry in knowledge["layers"]]
    assert emergence["layers"] == names
    assert np.asarray(emergence["knowledge_points"]).shape == (2, len(names))


def test_mean_and_std_reach_the_checkpoints(tmp_path):
    """A checkpoint without preprocessing metadata, given --mean/--std, gives the emergence
    numbers of the same checkpoint carrying them as metadata."""
    model, data = make_inputs(tmp_path, n=18, model_seed=3)
    plain, tagged = tmp_path / "plain-iter1.onnx", tmp_path / "tagged-iter1.onnx"
    onnx.save(small_cnn(seed=7), plain)
    with_metadata = small_cnn(seed=7)
    onnx.helper.set_model_props(
        with_metadata, {"preprocessing": json.dumps({"mean": [0.5], "std": [0.25]})}
    )
    onnx.save(with_metadata, tagged)
    common = {"per_class": 6, "skip": ["patterns", "robustness"]}

    def emergence(checkpoint, **options):
        run = onnxaudit.audit(model, data, checkpoints=[str(checkpoint)], **common, **options)
        return run.to_dict()["knowledge"]["emergence"]["knowledge_points"]

    given = emergence(plain, mean=(0.5,), std=(0.25,))
    assert given == emergence(tagged, mean=(0.5,), std=(0.25,))
    assert given != emergence(plain)  # without the options the checkpoint sees other pixels


def test_knowledge_can_use_fewer_images_than_the_audit(inputs):
    _, model, data = inputs
    result = onnxaudit.audit(model, data, per_class=6, seed=1, knowledge_per_class=2,
                             skip=["patterns"], pgd_steps=1).to_dict()  # fmt: skip
    assert result["knowledge"]["n_images"] == 6  # 2 of each of the 3 classes
    assert result["robustness"]["n"] == 18 and result["data"]["n"] == 18


def test_settings_are_validated_before_any_work(inputs):
    _, model, data = inputs
    for bad, message in (({"eps": -0.5}, "--eps"), ({"pgd_steps": 0}, "--steps"),
                         ({"threads": -1}, "--threads"), ({"skip": ["everything"]}, "cannot skip"),
                         ({"colour": 1}, "unknown settings")):  # fmt: skip
        with pytest.raises(onnxaudit.AuditError, match=message):
            onnxaudit.audit(model, data, **bad)
