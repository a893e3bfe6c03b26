"""The intake corpus, part two: torchvision-family architectures (tests/archs.py, real sizes,
random weights) exported by both torch exporters, through the same checks as the hand-built
graphs (tests/corpus.py): `layers --json`, `extract --grid 7` of the first and last layer with
logits equal to torch's, a knowledge analysis and a short `attack`.

Opsets: TorchScript at 13, 17 and 21; dynamo at 18 (its lowest: it cannot convert these graphs
below 18) and 21. Every TorchScript-17 and dynamo-21 export ends in a Softmax, as deployed
classifiers often do: the tool must find the logits behind it, and they must equal torch's
pre-Softmax scores.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from archs import ARCHITECTURES, export, randomised  # noqa: E402
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
WITH_SOFTMAX = {("torchscript", 17), ("dynamo", 21)}
FAST = {("squeezenet1_1", "torchscript", 17), ("mobilenet_v3_small", "dynamo", 21)}
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


@functools.cache
def _module(name: str) -> torch.nn.Module:
    return randomised(ARCHITECTURES[name](), seed=3)


@pytest.mark.parametrize("name, exporter, opset", PARAMS)
def test_torch_export(tmp_path, name: str, exporter: str, opset: int) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    torch.set_num_threads(1)
    module = _module(name)
    exported = module
    if (exporter, opset) in WITH_SOFTMAX:
        exported = torch.nn.Sequential(module, torch.nn.Softmax(dim=1)).eval()
    path = export(exported, tmp_path / f"{name}.onnx", exporter, opset, (3, 224, 224))

    def torch_logits(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    check_corpus_model(tmp_path, path, torch_logits, images=4)
