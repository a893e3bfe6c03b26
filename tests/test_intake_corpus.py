"""The intake corpus end to end: `layers --json`, `extract --grid 7` of the first and last layer,
a knowledge analysis and a short `attack` on every graph; the extracted logits equal the
pre-Softmax scores (checks in tests/corpus.py; torch exports in test_intake_torch.py).

The hand-built graphs take about 5 s in all; the 224x224 light zoo graphs (tests/light.py
TESTED) are slow (see LIGHT_SCORES for the tensor each one's scores are read from).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from corpus import check_corpus_model
from graphs import small_cnn
from intake_graphs import (
    bgr_255,
    bgr_reference_input,
    binary_cnn,
    light_graph,
    paddle_style,
    tensor_values,
    tf2onnx_style,
    with_final,
)
from light import TESTED as LIGHT_NAMES


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
    attack: bool = True  # the light graphs' PGD is in test_gradients_light (with their FD check)
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
    "zfnet512": "r20",
}
LIGHT = {
    name: Case(
        lambda name=name: light_graph(name, seed=7),
        LIGHT_SCORES[name],
        per_image=True,
        images=4,
        attack=False,
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
    check_corpus_model(
        tmp_path,
        path,
        lambda x: reference_logits(case, model, x),
        case.options,
        case.images,
        case.attack,
    )
