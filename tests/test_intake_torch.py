"""The intake corpus, part two: torchvision-family architectures (tests/archs.py, real sizes,
random weights) exported by both torch exporters, through the same checks as the hand-built
graphs (tests/corpus.py): `layers --json`, `extract --grid 7` of the first and last layer with
logits equal to torch's, a knowledge analysis and a short `attack`.

Opsets: TorchScript at 13, 17 and 21; dynamo at 18 (its lowest: it cannot convert these graphs
below 18) and 21. Every TorchScript-21 and dynamo-18 export ends in a Softmax, as deployed
classifiers often do: the tool must find the logits behind it, and they must equal torch's
pre-Softmax scores.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corpus import check_corpus_model  # noqa: E402

ARCHS = (
    "squeezenet1_1",
    "mobilenet_v3_small",
    "shufflenet_v2_x1_0",
    "efficientnet_b0",
    "resnet18",
    "densenet121",
    "convnext_tiny",
)
EXPORTS = (("torchscript", 13), ("torchscript", 17), ("torchscript", 21), ("dynamo", 18),
           ("dynamo", 21))  # fmt: skip
WITH_SOFTMAX = {("torchscript", 21), ("dynamo", 18)}  # the others are shared with the
# gradient corpus (tests/test_gradients_archs.py), which exports without one
FAST = {("squeezenet1_1", "torchscript", 13), ("mobilenet_v3_small", "torchscript", 17)}
PARAMS = [
    pytest.param(
        name,
        exporter,
        opset,
        marks=() if (name, exporter, opset) in FAST else pytest.mark.slow,
        id=f"{name}-{exporter}-{opset}",
    )  # fmt: skip
    for name in ARCHS
    for exporter, opset in EXPORTS
]


@pytest.mark.parametrize("name, exporter, opset", PARAMS)
def test_torch_export(tmp_path, name: str, exporter: str, opset: int, torch_export) -> None:
    module, path = torch_export(name, exporter, opset, softmax=(exporter, opset) in WITH_SOFTMAX)

    def torch_logits(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    check_corpus_model(tmp_path, path, torch_logits, images=4)
