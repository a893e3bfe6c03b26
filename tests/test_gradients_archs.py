"""Torchvision-family architectures (tests/archs.py, real sizes, random weights, BatchNorm
statistics that matter), exported by both torch exporters: the ONNX input gradient against torch
autograd on the original module, per sample.

The reference is the module in float64. In these random networks float32 itself flips units that
sit within rounding of a ReLU/MaxPool kink, which moves a sample's gradient by up to a few 1e-2:
torch's own float32 autograd misses 1e-4 per sample on most of them (on other samples than
ours). So the bar is torch float32's: each sample within 1e-4 of float64, or the worst sample no
worse than 5x torch float32's worst, or the median sample within 1e-4 and none beyond 1e-2 (a
flip is a random event: either side may have one). Exporter/opset per architecture keeps the time
budget.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxaudit.features.gradients import CrossEntropy, InputGradient  # noqa: E402

CASES = [  # (architecture, exporter, opset); ViT-B/16 is in bench/gradients.py (too slow here)
    ("squeezenet1_1", "torchscript", 13),
    ("mobilenet_v3_small", "torchscript", 17),
    ("squeezenet1_1", "dynamo", 21),
    ("resnet18", "torchscript", 13),
    ("resnet18", "dynamo", 21),
    ("resnet50", "dynamo", 18),
    ("mobilenet_v2", "torchscript", 17),
    ("mobilenet_v3_small", "dynamo", 21),
    ("efficientnet_b0", "torchscript", 17),
    ("densenet121", "torchscript", 17),
    ("convnext_tiny", "torchscript", 17),
    ("convnext_tiny", "dynamo", 21),  # as_strided: a Gather of computed indices
    ("shufflenet_v2_x1_0", "torchscript", 17),
    ("shufflenet_v2_x1_0", "dynamo", 21),
    ("regnet_x_400mf", "dynamo", 21),
    ("vgg11_bn", "torchscript", 13),
]
FAST = {("squeezenet1_1", "torchscript"), ("mobilenet_v3_small", "torchscript")}
PARAMS = [
    pytest.param(
        *case, marks=() if case[:2] in FAST else pytest.mark.slow, id="-".join(map(str, case))
    )
    for case in CASES
]


@pytest.mark.parametrize("name, exporter, opset", PARAMS)
def test_onnx_gradient_matches_torch_autograd(
    name: str, exporter: str, opset: int, torch_export
) -> None:
    torch.set_num_threads(1)
    module, path = torch_export(name, exporter, opset)
    model = onnx.load(str(path))
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([5, 999])  # two samples: the float64 reference dominates the time
    result = InputGradient(model, CrossEntropy(reduction="sum"), "cpu", threads=1)(
        x.numpy(), y.numpy()
    )

    double = module.double()
    xd = x.double().requires_grad_(True)
    logits = double(xd)
    torch.nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    reference = xd.grad.numpy()
    np.testing.assert_allclose(result.logits, logits.detach().numpy(), rtol=1e-3, atol=1e-4)
    single = module.float()
    x32 = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(single(x32), y, reduction="sum").backward()

    def errors(gradient: np.ndarray) -> np.ndarray:
        flat = (gradient - reference).reshape(len(x), -1)
        return np.linalg.norm(flat, axis=1) / np.linalg.norm(reference.reshape(len(x), -1), axis=1)

    ours, theirs = errors(result.input_grad), errors(x32.grad.numpy())
    # per sample: as close to the float64 reference as torch's own float32 is, or (at most one
    # sample) a float32 ReLU flip, a random event that moves the gradient by up to about 1e-2
    as_good_as_torch = ours <= np.maximum(1e-4, 5 * theirs)
    flips = ~as_good_as_torch & (ours <= 1e-2)
    assert (as_good_as_torch | flips).all() and flips.sum() <= 1, (ours, theirs)
