"""The intake corpus, part two: torchvision-family architectures (tests/archs.py, real sizes,
random weights) exported by both torch exporters, through the same checks as the hand-built
graphs (tests/corpus.py): `layers --json`, `extract --grid 7` of the first and last layer with
logits equal to torch's, a knowledge analysis and a short `attack`.

Opsets: TorchScript at 13, 17 and 21; dynamo at 18 (its lowest: it cannot convert these graphs
below 18) and 21; each architecture by both exporters. Every TorchScript-21 and dynamo-18
export ends in a Softmax, as deployed classifiers often do: the tool must find the logits behind it, and they must equal torch's
pre-Softmax scores.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corpus import check_corpus_model  # noqa: E402

# Every architecture through both exporters, every (exporter, opset) on two to four of them: a
# covering design, not the full 7 x 5 product (which took 6 minutes of CI for the same ops).
# Exports without a Softmax are shared with the gradient corpus (tests/test_gradients_archs.py).
CASES = (
    ("squeezenet1_1", "torchscript", 13),
    ("squeezenet1_1", "dynamo", 18),
    ("mobilenet_v3_small", "torchscript", 17),
    ("mobilenet_v3_small", "dynamo", 21),
    ("shufflenet_v2_x1_0", "torchscript", 21),
    ("shufflenet_v2_x1_0", "dynamo", 21),
    ("efficientnet_b0", "torchscript", 17),
    ("efficientnet_b0", "dynamo", 18),
    ("resnet18", "torchscript", 13),
    ("resnet18", "torchscript", 21),
    ("resnet18", "dynamo", 21),
    ("densenet121", "torchscript", 17),
    ("densenet121", "dynamo", 18),
    ("convnext_tiny", "torchscript", 21),
    ("convnext_tiny", "dynamo", 21),
)
WITH_SOFTMAX = {("torchscript", 21), ("dynamo", 18)}
FAST = {("squeezenet1_1", "torchscript", 13), ("mobilenet_v3_small", "torchscript", 17)}
PARAMS = [
    pytest.param(*case, marks=() if case in FAST else pytest.mark.slow, id="-".join(map(str, case)))
    for case in CASES
]


@pytest.mark.parametrize("name, exporter, opset", PARAMS)
def test_torch_export(tmp_path, name: str, exporter: str, opset: int, torch_export) -> None:
    module, path = torch_export(name, exporter, opset, softmax=(exporter, opset) in WITH_SOFTMAX)

    def torch_logits(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    check_corpus_model(tmp_path, path, torch_logits, images=4)
