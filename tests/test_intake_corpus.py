"""The intake corpus end to end: `layers --json`, `extract --grid 7` of the first and last layer,
and a knowledge analysis on every graph; the extracted logits equal the pre-Softmax scores.

The hand-built graphs take about 5 s in all; the nine 224x224 light zoo graphs are slow (see
LIGHT_SCORES for the tensor each one's scores are read from).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from graphs import small_cnn
from intake_graphs import (
    LIGHT_NAMES,
    bgr_255,
    bgr_reference_input,
    binary_cnn,
    light_graph,
    paddle_style,
    tensor_values,
    tf2onnx_style,
    with_final,
)
from typer.testing import CliRunner

from onnxaudit.analyses.knowledge import KnowledgeSettings, analyse_knowledge
from onnxaudit.cli import app
from onnxaudit.data import load_dataset
from onnxaudit.model import prepare_model

runner = CliRunner()
SETTINGS = KnowledgeSettings(partners=2, sample_max_iter=20, region_max_iter=5)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _two_class(z: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros_like(z), z], axis=1)


@dataclass
class Case:
    """A corpus graph, the tensor holding its class scores, and how to feed the original."""

    build: Callable[[], onnx.ModelProto]
    scores: str
    options: list[str] = field(default_factory=list)
    model_input: Callable[[np.ndarray], np.ndarray] = _same
    expected_logits: Callable[[np.ndarray], np.ndarray] = _same
    per_image: bool = False  # the original has a fixed batch of 1
    images: int = 6


FAST = {
    "paddle": Case(lambda: paddle_style(seed=1), "linear_0.tmp_1", ["--input-shape", "3,20,24"]),
    "tf2onnx": Case(lambda: tf2onnx_style(seed=2), "dense/BiasAdd:0", model_input=_nhwc),
    "bgr_255": Case(
        lambda: bgr_255(seed=3, metadata=True), "scores", model_input=bgr_reference_input
    ),
    "softmax": Case(lambda: with_final(small_cnn(seed=4)), "logits"),
    "logsoftmax_reshape": Case(
        lambda: with_final(small_cnn(seed=5), "LogSoftmax", reshape=True), "logits"
    ),
    "sigmoid": Case(lambda: binary_cnn(seed=6), "logits", expected_logits=_two_class),
}
LIGHT_SCORES = {  # the final Softmax's input; DenseNet-121 has no Softmax: its output
    "bvlc_alexnet": "r24",
    "densenet121": "fc6_1",
    "inception_v1": "r143",
    "inception_v2": "r507",
    "resnet50": "r174",
    "shufflenet": "r201",
    "squeezenet": "r65",
    "vgg19": "r46",
    "zfnet512": "r20",
}
LIGHT = {
    name: Case(
        lambda name=name: light_graph(name, seed=7), LIGHT_SCORES[name], per_image=True, images=4
    )
    for name in LIGHT_NAMES
}
CASES = [pytest.param(name, case, id=name) for name, case in FAST.items()] + [
    pytest.param(name, case, id=name, marks=pytest.mark.slow) for name, case in LIGHT.items()
]


def reference_logits(case: Case, model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The pre-Softmax scores of the original graph, flattened to (N, K)."""
    raw = tensor_values(model, case.scores, case.model_input(x), per_image=case.per_image)
    return case.expected_logits(raw.reshape(len(x), -1))


@pytest.mark.parametrize("name, case", CASES)
def test_corpus_graph(tmp_path, name, case):
    model = case.build()
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    described = runner.invoke(app, ["layers", str(path), "--json", *case.options])
    assert described.exit_code == 0, described.output
    info = json.loads(described.output)
    layers = info["layers"]
    assert info["num_classes"] >= 2 and layers and info["logits_reason"]
    c, h, w = info["input_shape"]

    rng = np.random.default_rng(0)
    classes = 2
    x = rng.integers(0, 256, (case.images, h, w, c), dtype=np.uint8)
    labels = np.arange(case.images) % classes
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=labels)
    out = tmp_path / "features.npz"
    chosen = f"0,{layers[-1]['index']}"
    args = ["extract", str(path), "-d", str(data), "-l", chosen, "--grid", "7", "-o", str(out)]
    result = runner.invoke(app, [*args, *case.options, "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    images = load_dataset(data).images((c, h, w))
    with np.load(out) as features:
        for layer in (layers[0], layers[-1]):
            regions = min(7, layer["height"]) * min(7, layer["width"])
            assert features[layer["name"]].shape == (case.images, regions, layer["channels"])
        expected = reference_logits(case, model, images)
        scale = max(1.0, float(np.abs(expected).max()))  # random deep graphs reach 1e5
        np.testing.assert_allclose(features["logits"], expected, rtol=1e-4, atol=1e-5 * scale)

    shape = tuple(int(v) for v in case.options[1].split(",")) if case.options else None
    prepared = prepare_model(path, input_shape=shape)
    result = analyse_knowledge(
        prepared,
        load_dataset(data),
        layers=[layers[0]["name"], layers[-1]["name"]],
        device="cpu",
        settings=SETTINGS,
        threads=1,
    )
    assert [layer.name for layer in result.layers] == [layers[0]["name"], layers[-1]["name"]]
    assert all(np.isfinite(layer.knowledge_points) for layer in result.layers)
