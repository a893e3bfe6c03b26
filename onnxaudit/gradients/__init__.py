"""Input gradients for any ONNX classifier, as an ONNX -> ONNX reverse-mode rewrite.

`build_gradient_model` is the graph pass, `RULES` its per-op backward table, `InputGradient`
the batched runner. See `objectives` for the sign convention of `loss` and `input_grad`.
"""

from onnxaudit.gradients.builder import build_gradient_model
from onnxaudit.gradients.objectives import CrossEntropy, LogitMargin, Objective, VectorJacobian
from onnxaudit.gradients.rules import RULES, BackwardRule
from onnxaudit.gradients.runner import GradientResult, InputGradient

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
