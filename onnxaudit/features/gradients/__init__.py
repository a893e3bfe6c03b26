"""Input gradients for any ONNX classifier, as an ONNX -> ONNX reverse-mode rewrite.

`build_gradient_model` is the graph pass, `RULES` its per-op backward table, `InputGradient`
the batched runner. See `objectives` for the sign convention of `loss` and `input_grad`.

    grad = InputGradient(prepared.proto, CrossEntropy(), device="auto")
    result = grad(images, labels)  # .loss, .logits, .input_grad (same shape as images)

Adding an op: a `@rule("Op", inputs=...)` function in the `rules/` module of its family that maps
output gradients to input gradients with standard ONNX ops, plus a `Case` in
tests/test_gradients_rules.py (the coverage test fails until the new rule has one).
"""

from onnxaudit.features.gradients.builder import build_gradient_model
from onnxaudit.features.gradients.objectives import (
    CrossEntropy,
    LogitMargin,
    Objective,
    VectorJacobian,
)
from onnxaudit.features.gradients.rules import RULES, BackwardRule
from onnxaudit.features.gradients.runner import GradientResult, InputGradient

__all__ = [
    "RULES",
    "BackwardRule",
    "CrossEntropy",
    "GradientResult",
    "InputGradient",
    "LogitMargin",
    "Objective",
    "VectorJacobian",
    "build_gradient_model",
]
